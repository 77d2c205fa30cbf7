"""The access register: append-only entries, each chained to the previous one by SHA-256.

Every entry's hash covers a canonical encoding of its fields and the previous entry's hash
(JSON, keys sorted, no spaces, UTF-8), so changing, removing or inserting one entry breaks
the chain from there on, and `verify` names the first entry that does not hold. Entries
older than the keeping period (3 years) are pruned behind a checkpoint that records the
last pruned entry's number and hash: the rest of the chain still verifies from it.

SQLite triggers refuse updates, and deletes not covered by a checkpoint. They guard against
mistakes; the chain is what proves integrity, and its head hash goes into every signed
export bundle, so a register rewritten wholesale no longer matches what was handed over.
"""

from __future__ import annotations

import csv
import enum
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from ..clock import iso

GENESIS_HASH = "0" * 64  # what every chain starts from: the register's, each session's segments

SCHEMA = """
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

KEEP_YEARS = 3
CSV_FIELDS = (
    "seq",
    "at",
    "action",
    "outcome",
    "user",
    "role",
    "service",
    "session",
    "camera",
    "from",
    "to",
    "reason",
    "reference",
    "detail",
    "prev_hash",
    "hash",
)


class Action(enum.StrEnum):
    """What an entry is about."""

    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    LIVE_VIEW_START = "live_view_start"
    LIVE_VIEW_END = "live_view_end"
    CAMERA_VIEW = "camera_view"
    PTZ_CONTROL = "ptz_control"
    RECORDING_VIEW = "recording_view"
    EXPORT = "export"
    EXPORT_DOWNLOAD = "export_download"
    HOLD_PLACED = "hold_placed"
    HOLD_LIFTED = "hold_lifted"
    DESTRUCTION = "destruction"
    ACCESS_REFUSED = "access_refused"
    USER_ADDED = "user_added"
    PASSWORD_CHANGED = "password_changed"
    DEVICE_ADDED = "device_added"
    DEVICE_TOKEN_ROTATED = "device_token_rotated"
    DEVICE_REVOKED = "device_revoked"
    REGISTER_PRUNED = "register_pruned"


@dataclass(frozen=True)
class Actor:
    """Who acted: a person (name, role, service) or the gateway itself."""

    user: str
    role: str
    service: str = ""


SYSTEM = Actor("bodycam", "system", "gateway")


@dataclass(frozen=True)
class Entry:
    """One fact for the register: who, when, what, why, and how it ended."""

    action: Action
    actor: Actor
    at: datetime
    outcome: str = "ok"
    session_id: str = ""
    camera_id: str = ""
    time_from: datetime | None = None
    time_to: datetime | None = None
    reason: str = ""
    reference: str = ""
    detail: str = ""

    def fields(self) -> dict[str, str]:
        """The entry as the register stores it, every value text."""
        return {
            "at": iso(self.at),
            "action": self.action.value,
            "outcome": self.outcome,
            "user": self.actor.user,
            "role": self.actor.role,
            "service": self.actor.service,
            "session": self.session_id,
            "camera": self.camera_id,
            "from": iso(self.time_from) if self.time_from else "",
            "to": iso(self.time_to) if self.time_to else "",
            "reason": self.reason,
            "reference": self.reference,
            "detail": self.detail,
        }


_COLUMNS = {
    "user": "user_name",
    "session": "session_id",
    "camera": "camera_id",
    "from": "time_from",
    "to": "time_to",
}


def canonical(seq: int, fields: dict[str, str], prev_hash: str) -> bytes:
    """The bytes an entry's hash covers (this encoding is part of the register's format)."""
    body: dict[str, Any] = dict(fields, seq=seq, prev_hash=prev_hash)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(seq: int, fields: dict[str, str], prev_hash: str) -> str:
    return hashlib.sha256(canonical(seq, fields, prev_hash)).hexdigest()


def append(db: sqlite3.Connection, entry: Entry) -> tuple[int, str]:
    """Add an entry at the end of the chain; the caller holds a write transaction.

    Returns (number, hash). Writing it in the caller's transaction makes the entry and the
    fact it records (a hold, a destruction) land together or not at all.
    """
    seq, prev = head(db)
    fields = entry.fields()
    digest = entry_hash(seq + 1, fields, prev)
    columns = [_COLUMNS.get(name, name) for name in fields]
    db.execute(
        f"INSERT INTO register (seq, {', '.join(columns)}, prev_hash, hash)"
        f" VALUES ({', '.join('?' * (len(columns) + 3))})",
        (seq + 1, *fields.values(), prev, digest),
    )
    return seq + 1, digest


def head(db: sqlite3.Connection) -> tuple[int, str]:
    """(number, hash) of the last entry, or of the last checkpoint when all are pruned."""
    row = db.execute("SELECT seq, hash FROM register ORDER BY seq DESC LIMIT 1").fetchone()
    if row is not None:
        return int(row[0]), str(row[1])
    mark = _checkpoint(db)
    return (mark[0], mark[1]) if mark else (0, GENESIS_HASH)


def _checkpoint(db: sqlite3.Connection) -> tuple[int, str, str, int] | None:
    row = db.execute(
        "SELECT last_seq, last_hash, at, pruned FROM register_checkpoints"
        " ORDER BY last_seq DESC LIMIT 1"
    ).fetchone()
    return (int(row[0]), str(row[1]), str(row[2]), int(row[3])) if row else None


def row_fields(row: sqlite3.Row) -> dict[str, str]:
    columns = row.keys()
    return {
        name: str(row[_COLUMNS.get(name, name)])
        for name in CSV_FIELDS
        if name not in ("seq", "prev_hash", "hash") and _COLUMNS.get(name, name) in columns
    }


@dataclass(frozen=True)
class Verdict:
    """What `verify` found: OK with the head, or the first entry that does not hold."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    problem: str = ""
    since: str = ""  # "entry 1", or the checkpoint the chain starts from

    def text(self) -> str:
        if self.ok:
            return (
                f"register OK: {self.checked} entries from {self.since} chained, "
                f"head {self.head_seq} {self.head_hash}"
            )
        return f"register BROKEN at entry {self.broken_seq}: {self.problem}"


def verify(db: sqlite3.Connection) -> Verdict:
    """Recompute the chain from the start (or the last checkpoint) to the head."""
    mark = _checkpoint(db)
    if mark is None:
        seq, prev, since = 0, GENESIS_HASH, "entry 1"
    else:
        seq, prev = mark[0], mark[1]
        since = f"checkpoint after entry {mark[0]} ({mark[3]} pruned on {mark[2]})"
    checked = 0
    for row in db.execute("SELECT * FROM register WHERE seq > ? ORDER BY seq", (seq,)):
        number = int(row["seq"])
        label = f"{row['action']} by {row['user_name']} at {row['at']}"
        if number != seq + 1:
            return _broken(checked, seq + 1, f"missing (the next entry is {number}, {label})")
        if row["prev_hash"] != prev:
            return _broken(
                checked,
                number,
                f"{label}: its link to entry {seq} does not match: an entry before it was"
                " altered, removed or inserted",
            )
        if entry_hash(number, row_fields(row), prev) != row["hash"]:
            return _broken(checked, number, f"{label}: its content does not match its hash")
        seq, prev = number, row["hash"]
        checked += 1
    return Verdict(True, checked, seq, prev, since=since)


def _broken(checked: int, seq: int, problem: str) -> Verdict:
    return Verdict(False, checked, 0, "", broken_seq=seq, problem=problem)


def entries(
    db: sqlite3.Connection,
    since: datetime | None = None,
    until: datetime | None = None,
    session_id: str | None = None,
) -> Iterator[dict[str, str]]:
    """Entries in order (from/to inclusive), as CSV rows with their numbers and hashes."""
    query, args = "SELECT * FROM register WHERE 1=1", []
    if since is not None:
        query += " AND at >= ?"
        args.append(iso(since))
    if until is not None:
        query += " AND at <= ?"
        args.append(iso(until))
    if session_id is not None:
        query += " AND session_id = ?"
        args.append(session_id)
    for row in db.execute(query + " ORDER BY seq", args):
        yield dict(
            seq=str(row["seq"]), **row_fields(row), prev_hash=row["prev_hash"], hash=row["hash"]
        )


def write_csv(rows: Iterator[dict[str, str]], out: IO[str]) -> int:
    """The register as CSV (one header line, then one line per entry); returns the count."""
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def prune(db: sqlite3.Connection, before: datetime, now: datetime) -> int:
    """Remove entries older than `before` behind a checkpoint; the caller holds a transaction.

    Returns how many went. The checkpoint keeps the last removed entry's number and hash,
    which the first kept entry links to, so `verify` still checks everything that is left.
    """
    row = db.execute(
        "SELECT seq, hash FROM register WHERE at < ? ORDER BY seq DESC LIMIT 1", (iso(before),)
    ).fetchone()
    if row is None:
        return 0
    last_seq, last_hash = int(row[0]), str(row[1])
    mark = _checkpoint(db)
    count = last_seq - (mark[0] if mark else 0)
    db.execute(
        "INSERT INTO register_checkpoints (at, last_seq, last_hash, pruned) VALUES (?, ?, ?, ?)",
        (iso(now), last_seq, last_hash, count),
    )
    db.execute("DELETE FROM register WHERE seq <= ?", (last_seq,))
    append(
        db,
        Entry(
            Action.REGISTER_PRUNED,
            SYSTEM,
            now,
            detail=f"entries up to {last_seq} ({count}) older than {iso(before)} removed",
        ),
    )
    return count
