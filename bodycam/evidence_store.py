"""The evidence side of the database: session keys, legal holds, destruction, the register.

A mixin of `Store`: the same connection and thread, kept apart from the catalogue queries
because it changes for other reasons (the law, not the media). The steps of a destruction
are separate methods so that a crash between two of them leaves a state the next purge
recognises and finishes (see `bodycam.gateway.retention`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime

from .clock import iso, parse_iso
from .errors import Conflict
from .evidence import register
from .models import Hold

SCHEMA = (
    register.SCHEMA
    + """
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
)

SESSION_COLUMNS = {
    "destroyed_at": "TEXT",
    "destroy_state": "TEXT NOT NULL DEFAULT ''",  # '', 'shredded' (key gone), 'done'
}


class EvidenceStore:
    """Queries about keys, holds, destruction and the register (mixed into `Store`)."""

    _db: sqlite3.Connection

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _migrate_evidence(self) -> None:
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(sessions)")}
        for name, kind in SESSION_COLUMNS.items():
            if name not in columns:
                self._db.execute(f"ALTER TABLE sessions ADD COLUMN {name} {kind}")

    # meta values

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

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

    def place_hold(self, hold: Hold, entry: register.Entry) -> int:
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
            register.append(db, entry)
        assert cur.lastrowid is not None
        return cur.lastrowid

    def lift_hold(self, hold_id: int, by: str, reference: str, entry: register.Entry) -> bool:
        """Lift one hold and register it; False if it was not in force."""
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE holds SET lifted_by = ?, lifted_at = ?, lift_reference = ?"
                " WHERE id = ? AND lifted_at IS NULL",
                (by, iso(entry.at), reference, hold_id),
            )
            if cur.rowcount != 1:
                return False
            register.append(db, entry)
            return True

    def holds_of(self, session_id: str) -> list[Hold]:
        rows = self._db.execute(
            "SELECT * FROM holds WHERE session_id = ? ORDER BY id", (session_id,)
        )
        return [_hold(r) for r in rows]

    def held_sessions(self) -> set[str]:
        rows = self._db.execute("SELECT DISTINCT session_id FROM holds WHERE lifted_at IS NULL")
        return {r[0] for r in rows}

    # destruction, in steps a crash may separate

    def recorded_until(self) -> list[tuple[str, datetime, str]]:
        """Ended sessions not yet fully destroyed: (id, last recorded moment, destroy state)."""
        rows = self._db.execute(
            "SELECT s.id, s.started_at, s.ended_at, s.destroy_state,"
            " (SELECT MAX(ended_at) FROM segments WHERE session_id = s.id) AS last"
            " FROM sessions s WHERE s.state = 'ended' AND s.destroy_state != 'done'"
            " ORDER BY s.started_at"
        )
        found = []
        for r in rows:
            moments = [parse_iso(v) for v in (r["started_at"], r["ended_at"], r["last"]) if v]
            found.append((r["id"], max(moments), r["destroy_state"]))
        return found

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

    def finish_destruction(self, session_id: str, entry: register.Entry) -> bool:
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
            register.append(db, entry)
            return True

    # the register

    def record(self, entry: register.Entry) -> int:
        """Append one entry to the register; returns its number."""
        with self._transaction() as db:
            return register.append(db, entry)[0]

    def record_all(self, entries: list[register.Entry]) -> None:
        """Append several entries at once: all of them, or none."""
        with self._transaction() as db:
            for entry in entries:
                register.append(db, entry)

    def verify_register(self) -> register.Verdict:
        with self.snapshot():  # one state of the chain, without holding writers back
            return register.verify(self._db)

    def snapshot(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def register_head(self) -> tuple[int, str]:
        return register.head(self._db)

    def register_entries(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        session_id: str | None = None,
    ) -> list[dict[str, str]]:
        return list(register.entries(self._db, since, until, session_id))

    def iter_register(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> Iterator[dict[str, str]]:
        return register.entries(self._db, since, until)

    def prune_register(self, before: datetime, now: datetime) -> int:
        with self._transaction() as db:
            return register.prune(db, before, now)

    # statistics

    def monthly_stats(self, year: int) -> dict[str, dict[str, int]]:
        """Per month of `year` ("2026-03"): sessions, live views, recording views, exports,
        requisitions (distinct references of exports and holds)."""
        months = {f"{year:04d}-{m:02d}": _zero() for m in range(1, 13)}
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
            key = _STAT_OF.get(action)
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


_STAT_OF = {
    register.Action.LIVE_VIEW_START.value: "live_views",
    register.Action.RECORDING_VIEW.value: "recording_views",
    register.Action.EXPORT.value: "exports",
}


def _zero() -> dict[str, int]:
    return {"sessions": 0, "live_views": 0, "recording_views": 0, "exports": 0, "requisitions": 0}


def _hold(row: sqlite3.Row) -> Hold:
    return Hold(
        id=row["id"],
        session_id=row["session_id"],
        reference=row["reference"],
        reason=row["reason"],
        placed_by=row["placed_by"],
        placed_at=parse_iso(row["placed_at"]),
        lifted_by=row["lifted_by"],
        lifted_at=parse_iso(row["lifted_at"]) if row["lifted_at"] else None,
        lift_reference=row["lift_reference"],
    )
