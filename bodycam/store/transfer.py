"""One node grows into a cluster: its SQLite database copied into an empty PostgreSQL one.

Every row goes across as it is, in one PostgreSQL transaction (all or nothing): the
register with its numbers and hashes (so its chain verifies as it did, and goes on from its
head), sessions, segments and their chain, session keys still wrapped by the same master
key, holds, exports, alerts, accounts, devices and their token hashes, the city. Identity
columns go on from the highest id copied. The runs of the old node are known gone, so the
first node of the cluster takes care of any session that was not over. Failed-login
counters, which only slow a guesser for minutes, are not copied.

The recordings are files: they stay where they are, and the cluster's nodes must see them
at the same paths under their `data_dir` (docs/deploy.md), with the same master key.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from ..config import redacted
from ..errors import BodycamError, Conflict
from .postgres import PostgresStore
from .sqlite import SqliteStore

SKIPPED = frozenset({"schema_migrations", "login_failures"})
MUST_BE_EMPTY = ("register", "sessions", "devices", "users")
BATCH = 1000
RUNNING_SECONDS = 60  # a node heard from this recently, not stopped, is running


class TransferError(BodycamError):
    """The databases cannot be copied one into the other as they are."""

    status = 400


@dataclass
class Transfer:
    """What was copied: rows per table."""

    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)

    def text(self) -> str:
        lines = [f"copied {self.source} into {self.target}:"]
        lines += [f"  {table:22} {count:>8} rows" for table, count in self.rows.items()]
        return "\n".join(lines)


def sqlite_to_postgres(
    source: Path, target_url: str, progress: Callable[[str, int], None] | None = None
) -> Transfer:
    """Copy the SQLite database at `source` into the empty PostgreSQL at `target_url`;
    `progress(table, rows)` after each table (a large register takes a while)."""
    if not source.is_file():
        raise TransferError(f"no SQLite database at {source}")
    # both brought to the code's schema first (the same version on both sides)
    SqliteStore(source).close()
    PostgresStore(target_url, 1).close()
    transfer = Transfer(str(source), redacted(target_url))
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        reader.execute("BEGIN")  # one state of the source, read from start to end
        running = reader.execute(
            "SELECT id FROM nodes WHERE dead_at IS NULL AND seen_at > ?",
            (time.time() - RUNNING_SECONDS,),
        ).fetchone()
        if running:
            raise Conflict(
                f"a gateway ({running[0]}) is running on {source}: stop it first, so that"
                " nothing it writes is left behind"
            )
        with psycopg.connect(target_url) as target, target.transaction():
            tables = _tables(target)
            _check_empty(target, tables)
            names = {r[0] for r in reader.execute("SELECT name FROM sqlite_master")}
            for table in tables:
                if table in SKIPPED or table not in names:
                    continue
                transfer.rows[table] = _copy(reader, target, table)
                if progress is not None:
                    progress(table, transfer.rows[table])
            target.execute("UPDATE nodes SET dead_at = 0")  # the single node's runs: gone
    finally:
        reader.close()
    return transfer


def _tables(target: psycopg.Connection[Any]) -> list[str]:
    """The target's tables in the order they were made: a referenced one first."""
    found = target.execute(
        "SELECT c.relname FROM pg_class c WHERE c.relkind = 'r'"
        " AND c.relnamespace = current_schema()::regnamespace ORDER BY c.oid"
    ).fetchall()
    return [str(r[0]) for r in found]


def _check_empty(target: psycopg.Connection[Any], tables: list[str]) -> None:
    for table in MUST_BE_EMPTY:
        if table not in tables:
            continue
        row = target.execute(f"SELECT EXISTS (SELECT 1 FROM {table})".encode()).fetchone()
        if row and row[0]:
            raise Conflict(
                f"the PostgreSQL database already holds {table}: a node's database is only"
                " copied into an empty one (nothing is merged)"
            )


def _copy(reader: sqlite3.Connection, target: psycopg.Connection[Any], table: str) -> int:
    columns = [
        str(r[0])
        for r in target.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema ="
            " current_schema() AND table_name = %s ORDER BY ordinal_position",
            (table,),
        )
    ]
    present = {r[1] for r in reader.execute(f"PRAGMA table_info({table})")}
    columns = [c for c in columns if c in present]
    listed = ", ".join(columns)
    insert = (
        f"INSERT INTO {table} ({listed}) OVERRIDING SYSTEM VALUE"
        f" VALUES ({', '.join(['%s'] * len(columns))})"
    ).encode()
    cursor = reader.execute(f"SELECT {listed} FROM {table} ORDER BY rowid")
    copied = 0
    with target.cursor() as out:
        while batch := cursor.fetchmany(BATCH):
            out.executemany(insert, batch)
            copied += len(batch)
    if "id" not in columns:
        return copied
    row = target.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,)).fetchone()
    if row and row[0]:
        # an identity column goes on after the ids copied
        target.execute(
            f"SELECT setval(%s, COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)".encode(),
            (row[0],),
        )
    return copied
