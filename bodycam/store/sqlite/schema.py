"""The SQLite schema, as versioned migrations (`store.migrations`).

Version 1 is the schema of bodycam 0.1; it is written with IF NOT EXISTS, and brings a
database made before versions existed up to it (the columns added since). A migration after
it runs in one transaction with its `schema_migrations` row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ...clock import SystemClock, iso
from ..migrations import Migration, pending

CATALOGUE = """
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    officer TEXT NOT NULL DEFAULT '',
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    serial TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    firmware TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices(id),
    officer TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    interrupted_at TEXT,
    end_reason TEXT,
    video_codec TEXT NOT NULL DEFAULT '',
    audio_codec TEXT NOT NULL DEFAULT '',
    connections INTEGER NOT NULL DEFAULT 1,
    battery_percent REAL,
    invalid_telemetry INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_device ON sessions(device_id, started_at);
CREATE TABLE IF NOT EXISTS whip_resources (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL,
    path TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    bytes INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL DEFAULT '',
    prev_sha256 TEXT NOT NULL DEFAULT '',
    video_codec TEXT NOT NULL DEFAULT '',
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    UNIQUE (session_id, seq)
);
CREATE TABLE IF NOT EXISTS positions (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    time TEXT NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    accuracy_m REAL NOT NULL,
    heading_deg REAL,
    speed_mps REAL,
    verdict TEXT NOT NULL DEFAULT 'kept'
);
CREATE INDEX IF NOT EXISTS positions_session ON positions(session_id, time);
CREATE TABLE IF NOT EXISTS cameras (
    id TEXT PRIMARY KEY,
    feature TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS places (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    geometry TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    service TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    disabled_at TEXT
);
CREATE TABLE IF NOT EXISTS logins (
    token_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id),
    state TEXT NOT NULL,
    raised_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_actions (
    session_id TEXT NOT NULL REFERENCES alerts(session_id),
    state TEXT NOT NULL,
    user_name TEXT NOT NULL,
    role TEXT NOT NULL,
    service TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_actions_session ON alert_actions(session_id);
"""

REGISTER = """
CREATE TABLE IF NOT EXISTS register (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    user_name TEXT NOT NULL,
    role TEXT NOT NULL,
    service TEXT NOT NULL,
    session_id TEXT NOT NULL,
    camera_id TEXT NOT NULL,
    time_from TEXT NOT NULL,
    time_to TEXT NOT NULL,
    reason TEXT NOT NULL,
    reference TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS register_at ON register(at);
CREATE INDEX IF NOT EXISTS register_session ON register(session_id);
CREATE TABLE IF NOT EXISTS register_checkpoints (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    last_hash TEXT NOT NULL,
    pruned INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS register_append_only BEFORE UPDATE ON register
BEGIN SELECT RAISE(ABORT, 'the register is append-only'); END;
CREATE TRIGGER IF NOT EXISTS register_prune_only BEFORE DELETE ON register
WHEN OLD.seq > COALESCE((SELECT MAX(last_seq) FROM register_checkpoints), 0)
BEGIN SELECT RAISE(ABORT, 'register entries are removed only behind a checkpoint'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_fixed BEFORE UPDATE ON register_checkpoints
BEGIN SELECT RAISE(ABORT, 'register checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_kept BEFORE DELETE ON register_checkpoints
BEGIN SELECT RAISE(ABORT, 'register checkpoints are append-only'); END;
"""

EVIDENCE = """
CREATE TABLE IF NOT EXISTS session_keys (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id),
    wrapped BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    reference TEXT NOT NULL,
    reason TEXT NOT NULL,
    placed_by TEXT NOT NULL,
    placed_at TEXT NOT NULL,
    lifted_by TEXT,
    lifted_at TEXT,
    lift_reference TEXT
);
CREATE INDEX IF NOT EXISTS holds_session ON holds(session_id);
"""

# columns added after databases were made: table -> [(column, definition)]
ADDED_COLUMNS = {
    # before the GPS filter, every fix was kept
    "positions": [("verdict", "TEXT NOT NULL DEFAULT 'kept'")],
    "sessions": [
        ("destroyed_at", "TEXT"),
        ("destroy_state", "TEXT NOT NULL DEFAULT ''"),  # '', 'shredded' (key gone), 'done'
    ],
}


def _version_1(db: sqlite3.Connection) -> None:
    # executescript commits as it goes: idempotent statements, safe to run again after a crash
    db.executescript(CATALOGUE)
    for table, columns in ADDED_COLUMNS.items():
        present = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        for name, definition in columns:
            if name not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
    db.executescript(REGISTER + EVIDENCE)


CAMERA_HEALTH = """
CREATE TABLE camera_health (
    camera_id TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'unknown',
    since TEXT,
    checked_at TEXT,
    error TEXT NOT NULL DEFAULT '',
    serial TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    firmware TEXT NOT NULL DEFAULT '',
    polls TEXT NOT NULL DEFAULT '',
    polled_by TEXT NOT NULL DEFAULT '',
    claimed_until TEXT NOT NULL DEFAULT ''
)
"""


NODES = (
    "ALTER TABLE sessions ADD COLUMN node TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE segments ADD COLUMN node TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE segments ADD COLUMN chain_index INTEGER NOT NULL DEFAULT 0",
    # until now segments were sealed in the order of their files
    "UPDATE segments SET chain_index = seq WHERE sha256 != ''",
    "CREATE INDEX segments_open ON segments(state, node)",
    # seen_at, dead_at: Unix seconds of the database's clock (PostgreSQL's), or of the one
    # machine's (SQLite): liveness never reads a node's injected clock
    "CREATE TABLE nodes (id TEXT PRIMARY KEY, name TEXT NOT NULL, url TEXT NOT NULL,"
    " started_at TEXT NOT NULL, seen_at REAL NOT NULL, dead_at REAL)",
)


def _statements(*statements: str) -> Callable[[sqlite3.Connection], None]:
    def apply(db: sqlite3.Connection) -> None:
        for statement in statements:
            db.execute(statement)

    return apply


MIGRATIONS: list[Migration[sqlite3.Connection]] = [
    Migration(1, "the schema of bodycam 0.1", _version_1),
    Migration(
        2,
        "failed logins counted in the database",
        _statements(
            "CREATE TABLE login_failures (key TEXT NOT NULL, at TEXT NOT NULL)",
            "CREATE INDEX login_failures_key ON login_failures(key, at)",
        ),
    ),
    Migration(3, "camera health shared by the nodes", _statements(CAMERA_HEALTH)),
    Migration(
        4, "sessions and segments held by a node; the chain in sealing order", _statements(*NODES)
    ),
    # PostgreSQL's register_prune function (the versions stay the same on both backends):
    # one file has one owner, whose triggers already guard the register
    Migration(5, "the register pruned through a function of its owner", _statements()),
]


def migrate(db: sqlite3.Connection, where: str) -> int:
    """Bring the database up to the code's schema; returns the version it is at."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
        " description TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    current = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
    for migration in pending(MIGRATIONS, int(current), where):
        # version 1 is idempotent and commits as it goes; every later one is atomic with
        # its schema_migrations row, so a crash half-way leaves it to be applied again
        if migration.version > 1:
            db.execute("BEGIN IMMEDIATE")
        try:
            migration.apply(db)
            db.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.description, iso(SystemClock().now())),
            )
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if db.in_transaction:
            db.execute("COMMIT")
        current = migration.version
    return int(current)
