"""SQLite queries of the evidence: session keys, legal holds, destruction, the register and
statistics (the interface and its docstrings: `store.base.Store`).

The register's hash chain is appended here, inside the transaction of the fact it records
(a hold, a destruction): both land or neither does. Triggers (`schema.REGISTER`) refuse
updates, and deletes not behind a checkpoint; they guard against mistakes, the chain is
what proves integrity (`evidence.register.verify`).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from ...clock import iso, parse_iso
from ...errors import Conflict
from ...models import CSV_FIELDS, GENESIS_HASH, SYSTEM, Action, Entry, Hold, entry_hash
from .. import rows
from ..base import Checkpoint, Destruction
from .connection import SqliteConnection

_ENTRY_FIELDS = [f for f in CSV_FIELDS if f not in ("seq", "prev_hash", "hash")]


class EvidenceQueries(SqliteConnection):
    """Keys, holds, destruction, the register, statistics."""

    # meta values

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def meta_default(self, key: str, value: str) -> str:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING", (key, value)
        )
        found = self.meta(key)
        assert found is not None, "meta rows are never deleted"
        return found

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # session keys

    def wrapped_key(self, session_id: str) -> bytes | None:
        row = self._db.execute(
            "SELECT wrapped FROM session_keys WHERE session_id = ?", (session_id,)
        ).fetchone()
        return bytes(row[0]) if row else None

    def add_wrapped_key(self, session_id: str, wrapped: bytes) -> None:
        """Keep a session's wrapped key; the first one made wins a race."""
        self._db.execute(
            "INSERT OR IGNORE INTO session_keys (session_id, wrapped) VALUES (?, ?)",
            (session_id, wrapped),
        )

    def destroyed_at(self, session_id: str) -> datetime | None:
        row = self._db.execute(
            "SELECT destroyed_at FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        return parse_iso(row[0]) if row and row[0] else None

    # legal holds

    def place_hold(self, hold: Hold, entry: Entry) -> int:
        """Put a session on hold and register it, together; never a destroyed session."""
        with self._transaction() as db:
            gone = db.execute(
                "SELECT 1 FROM sessions WHERE id = ? AND destroy_state != ''", (hold.session_id,)
            ).fetchone()
            if gone is not None:
                raise Conflict(
                    f"session {hold.session_id} was destroyed at the end of its retention"
                )
            cur = db.execute(
                "INSERT INTO holds (session_id, reference, reason, placed_by, placed_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (hold.session_id, hold.reference, hold.reason, hold.placed_by, iso(hold.placed_at)),
            )
            _append(db, entry)
        assert cur.lastrowid is not None
        return cur.lastrowid

    def lift_hold(self, hold_id: int, by: str, reference: str, entry: Entry) -> bool:
        """Lift one hold and register it; False if it was not in force."""
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE holds SET lifted_by = ?, lifted_at = ?, lift_reference = ?"
                " WHERE id = ? AND lifted_at IS NULL",
                (by, iso(entry.at), reference, hold_id),
            )
            if cur.rowcount != 1:
                return False
            _append(db, entry)
            return True

    def holds_of(self, session_id: str) -> list[Hold]:
        found = self._db.execute(
            "SELECT * FROM holds WHERE session_id = ? ORDER BY id", (session_id,)
        )
        return [rows.hold(r) for r in found]

    def held_sessions(self) -> set[str]:
        found = self._db.execute("SELECT DISTINCT session_id FROM holds WHERE lifted_at IS NULL")
        return {r[0] for r in found}

    # destruction, in steps a crash may separate

    def pending_destructions(self) -> list[Destruction]:
        ended = self._db.execute(
            "SELECT s.id, s.started_at, s.ended_at, s.destroy_state,"
            " (SELECT MAX(ended_at) FROM segments WHERE session_id = s.id) AS last"
            " FROM sessions s WHERE s.state = 'ended' AND s.destroy_state != 'done'"
            " ORDER BY s.started_at"
        )
        return [rows.destruction(r) for r in ended]

    def shred_key(self, session_id: str, now: datetime) -> bool:
        """Destroy a session's key unless a hold came in meanwhile; True if it is gone.

        With `secure_delete` on, SQLite overwrites the deleted row; the WAL checkpoint that
        follows (`forget_deleted`) removes the last copy of the page that held it.
        """
        with self._transaction() as db:
            held = db.execute(
                "SELECT 1 FROM holds WHERE session_id = ? AND lifted_at IS NULL", (session_id,)
            ).fetchone()
            if held is not None:
                return False
            # only from the first state: a purge running beside this one already has it
            cur = db.execute(
                "UPDATE sessions SET destroyed_at = ?, destroy_state = 'shredded'"
                " WHERE id = ? AND destroy_state = ''",
                (iso(now), session_id),
            )
            if cur.rowcount != 1:
                return False
            db.execute("DELETE FROM session_keys WHERE session_id = ?", (session_id,))
            return True

    def forget_deleted(self) -> bool:
        """Write the WAL back and truncate it, so deleted keys leave no copy in it.

        False when a reader kept it from completing (another process reading the
        database): every purge tries again, and the WAL holds the old page until then.
        """
        busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        return not busy

    def finish_destruction(self, session_id: str, entry: Entry) -> bool:
        """The files are gone: drop the session's positions and segments, and register it.

        False (and nothing written) when another purge finished it first.
        """
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE sessions SET destroy_state = 'done'"
                " WHERE id = ? AND destroy_state = 'shredded'",
                (session_id,),
            )
            if cur.rowcount != 1:
                return False
            db.execute("DELETE FROM positions WHERE session_id = ?", (session_id,))
            db.execute("DELETE FROM segments WHERE session_id = ?", (session_id,))
            _append(db, entry)
            return True

    # the register

    def record(self, entry: Entry) -> int:
        with self._transaction() as db:
            return _append(db, entry)[0]

    def record_all(self, entries: list[Entry]) -> None:
        with self._transaction() as db:
            for entry in entries:
                _append(db, entry)

    def register_head(self) -> tuple[int, str]:
        return _head(self._db)

    def register_checkpoint(self) -> Checkpoint | None:
        return _checkpoint(self._db)

    def register_entries(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        session_id: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, str]]:
        query, args = "SELECT * FROM register WHERE seq > ?", [str(after_seq)]
        if since is not None:
            query += " AND at >= ?"
            args.append(iso(since))
        if until is not None:
            query += " AND at <= ?"
            args.append(iso(until))
        if session_id is not None:
            query += " AND session_id = ?"
            args.append(session_id)
        query += " ORDER BY seq"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [rows.register_entry(row, _ENTRY_FIELDS) for row in self._db.execute(query, args)]

    def prune_register(self, before: datetime, now: datetime) -> int:
        with self._transaction() as db:
            row = db.execute(
                "SELECT seq, hash FROM register WHERE at < ? ORDER BY seq DESC LIMIT 1",
                (iso(before),),
            ).fetchone()
            if row is None:
                return 0
            last_seq, last_hash = int(row[0]), str(row[1])
            mark = _checkpoint(db)
            count = last_seq - (mark.last_seq if mark else 0)
            db.execute(
                "INSERT INTO register_checkpoints (at, last_seq, last_hash, pruned)"
                " VALUES (?, ?, ?, ?)",
                (iso(now), last_seq, last_hash, count),
            )
            db.execute("DELETE FROM register WHERE seq <= ?", (last_seq,))
            _append(
                db,
                Entry(
                    Action.REGISTER_PRUNED,
                    SYSTEM,
                    now,
                    detail=f"entries up to {last_seq} ({count}) older than {iso(before)} removed",
                ),
            )
            return count

    # statistics

    def monthly_stats(self, year: int) -> dict[str, dict[str, int]]:
        """Per month of `year` ("2026-03"): sessions, live views, recording views, exports,
        requisitions (distinct references of exports and holds)."""
        months = {f"{year:04d}-{m:02d}": rows.empty_month() for m in range(1, 13)}
        for month, count in self._db.execute(
            "SELECT substr(started_at, 1, 7), COUNT(*) FROM sessions"
            " WHERE substr(started_at, 1, 4) = ? GROUP BY 1",
            (f"{year:04d}",),
        ):
            months[month]["sessions"] = count
        for month, action, count in self._db.execute(
            "SELECT substr(at, 1, 7), action, COUNT(*)"
            " FROM register WHERE substr(at, 1, 4) = ? AND outcome = 'ok' GROUP BY 1, 2",
            (f"{year:04d}",),
        ):
            key = rows.STATS_OF_ACTION.get(action)
            if key:
                months[month][key] += count
        for month, references in self._db.execute(
            "SELECT substr(at, 1, 7), COUNT(DISTINCT reference) FROM register"
            " WHERE substr(at, 1, 4) = ? AND outcome = 'ok' AND reference != ''"
            " AND action IN ('export', 'hold_placed') GROUP BY 1",
            (f"{year:04d}",),
        ):
            months[month]["requisitions"] = references
        return months

    def yearly_requisitions(self, year: int) -> int:
        """Distinct references over the year (one used in two months counts once)."""
        row = self._db.execute(
            "SELECT COUNT(DISTINCT reference) FROM register WHERE substr(at, 1, 4) = ?"
            " AND outcome = 'ok' AND reference != '' AND action IN ('export', 'hold_placed')",
            (f"{year:04d}",),
        ).fetchone()
        return int(row[0])


def _append(db: sqlite3.Connection, entry: Entry) -> tuple[int, str]:
    """Add an entry at the end of the chain; the caller holds a write transaction (which,
    taken IMMEDIATE, is what serialises appends). Returns (number, hash)."""
    seq, prev = _head(db)
    fields = entry.fields()
    digest = entry_hash(seq + 1, fields, prev)
    columns = [rows.REGISTER_COLUMNS.get(name, name) for name in fields]
    db.execute(
        f"INSERT INTO register (seq, {', '.join(columns)}, prev_hash, hash)"
        f" VALUES ({', '.join('?' * (len(columns) + 3))})",
        (seq + 1, *fields.values(), prev, digest),
    )
    return seq + 1, digest


def _head(db: sqlite3.Connection) -> tuple[int, str]:
    row = db.execute("SELECT seq, hash FROM register ORDER BY seq DESC LIMIT 1").fetchone()
    if row is not None:
        return int(row[0]), str(row[1])
    mark = _checkpoint(db)
    return (mark.last_seq, mark.last_hash) if mark else (0, GENESIS_HASH)


def _checkpoint(db: sqlite3.Connection) -> Checkpoint | None:
    row = db.execute(
        "SELECT last_seq, last_hash, at, pruned FROM register_checkpoints"
        " ORDER BY last_seq DESC LIMIT 1"
    ).fetchone()
    return Checkpoint(int(row[0]), str(row[1]), str(row[2]), int(row[3])) if row else None
