"""PostgreSQL queries of the evidence: session keys, legal holds, destruction, the register
and statistics (the interface and its docstrings: `store.base.Store`).

The register is one chain whichever node appends: an append takes a transaction-scoped
advisory lock (`schema.REGISTER_LOCK`) before it reads the head, so two nodes appending at
once are serialised by the database, never by a node's memory. The entry lands in the
transaction of the fact it records (a hold, a destruction), or not at all. Triggers
(`schema.REGISTER`) refuse updates, deletes not behind a checkpoint, and truncation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...clock import iso, parse_iso
from ...errors import Conflict
from ...models import CSV_FIELDS, GENESIS_HASH, SYSTEM, Action, Entry, Hold, entry_hash
from .. import rows
from ..base import Checkpoint, Destruction
from .connection import Connection, PostgresConnection
from .schema import REGISTER_LOCK

_ENTRY_FIELDS = [f for f in CSV_FIELDS if f not in ("seq", "prev_hash", "hash")]
_YEAR_REFERENCES = (
    " WHERE substr(at, 1, 4) = %s AND outcome = 'ok' AND reference != ''"
    " AND action IN ('export', 'hold_placed')"
)


class EvidenceQueries(PostgresConnection):
    """Keys, holds, destruction, the register, statistics."""

    # meta values

    def meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = %s", (key,))
        return str(row["value"]) if row else None

    def meta_default(self, key: str, value: str) -> str:
        self._run(
            "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
            (key, value),
        )
        found = self.meta(key)
        assert found is not None, "meta rows are never deleted"
        return found

    def set_meta(self, key: str, value: str) -> None:
        self._run(
            "INSERT INTO meta (key, value) VALUES (%s, %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # session keys

    def wrapped_key(self, session_id: str) -> bytes | None:
        row = self._one("SELECT wrapped FROM session_keys WHERE session_id = %s", (session_id,))
        return bytes(row["wrapped"]) if row else None

    def add_wrapped_key(self, session_id: str, wrapped: bytes) -> None:
        self._run(
            "INSERT INTO session_keys (session_id, wrapped) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (session_id, wrapped),
        )

    def destroyed_at(self, session_id: str) -> datetime | None:
        row = self._one("SELECT destroyed_at FROM sessions WHERE id = %s", (session_id,))
        return parse_iso(row["destroyed_at"]) if row and row["destroyed_at"] else None

    # legal holds

    def place_hold(self, hold: Hold, entry: Entry) -> int:
        with self._transaction() as tx:
            gone = tx.execute(
                "SELECT 1 FROM sessions WHERE id = %s AND destroy_state != '' FOR SHARE",
                (hold.session_id,),
            ).fetchone()
            if gone is not None:
                raise Conflict(
                    f"session {hold.session_id} was destroyed at the end of its retention"
                )
            made = tx.execute(
                "INSERT INTO holds (session_id, reference, reason, placed_by, placed_at)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (hold.session_id, hold.reference, hold.reason, hold.placed_by, iso(hold.placed_at)),
            ).fetchone()
            assert made is not None
            _append(tx, entry)
            return int(made["id"])

    def lift_hold(self, hold_id: int, by: str, reference: str, entry: Entry) -> bool:
        with self._transaction() as tx:
            cur = tx.execute(
                "UPDATE holds SET lifted_by = %s, lifted_at = %s, lift_reference = %s"
                " WHERE id = %s AND lifted_at IS NULL",
                (by, iso(entry.at), reference, hold_id),
            )
            if cur.rowcount != 1:
                return False
            _append(tx, entry)
            return True

    def holds_of(self, session_id: str) -> list[Hold]:
        found = self._all("SELECT * FROM holds WHERE session_id = %s ORDER BY id", (session_id,))
        return [rows.hold(r) for r in found]

    def held_sessions(self) -> set[str]:
        found = self._all("SELECT DISTINCT session_id FROM holds WHERE lifted_at IS NULL")
        return {str(r["session_id"]) for r in found}

    # destruction, in steps a crash may separate

    def pending_destructions(self) -> list[Destruction]:
        ended = self._all(
            "SELECT s.id, s.started_at, s.ended_at, s.destroy_state,"
            " (SELECT MAX(ended_at) FROM segments WHERE session_id = s.id) AS last"
            " FROM sessions s WHERE s.state = 'ended' AND s.destroy_state != 'done'"
            " ORDER BY s.started_at, s.id"
        )
        return [rows.destruction(r) for r in ended]

    def shred_key(self, session_id: str, now: datetime) -> bool:
        """The row lock on the session orders this against a hold placed at the same time
        on another node: one of them sees the other's work."""
        with self._transaction() as tx:
            tx.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (session_id,))
            held = tx.execute(
                "SELECT 1 FROM holds WHERE session_id = %s AND lifted_at IS NULL", (session_id,)
            ).fetchone()
            if held is not None:
                return False
            cur = tx.execute(
                "UPDATE sessions SET destroyed_at = %s, destroy_state = 'shredded'"
                " WHERE id = %s AND destroy_state = ''",
                (iso(now), session_id),
            )
            if cur.rowcount != 1:
                return False
            tx.execute("DELETE FROM session_keys WHERE session_id = %s", (session_id,))
            return True

    def forget_deleted(self) -> bool:
        """Rewrite the keys' table so a destroyed key's bytes are in no page of it: a plain
        delete leaves the old row version until vacuum reuses its space. (The server's WAL
        archive, when there is one, still holds it: the master key, kept apart, is what
        keeps it unreadable.)"""
        with self._connection() as conn:
            conn.execute("VACUUM FULL session_keys")
        return True

    def finish_destruction(self, session_id: str, entry: Entry) -> bool:
        with self._transaction() as tx:
            cur = tx.execute(
                "UPDATE sessions SET destroy_state = 'done'"
                " WHERE id = %s AND destroy_state = 'shredded'",
                (session_id,),
            )
            if cur.rowcount != 1:
                return False
            tx.execute("DELETE FROM positions WHERE session_id = %s", (session_id,))
            tx.execute("DELETE FROM segments WHERE session_id = %s", (session_id,))
            _append(tx, entry)
            return True

    # the register

    def record(self, entry: Entry) -> int:
        with self._transaction() as tx:
            return _append(tx, entry)[0]

    def record_all(self, entries: list[Entry]) -> None:
        with self._transaction() as tx:
            for entry in entries:
                _append(tx, entry)

    def register_head(self) -> tuple[int, str]:
        with self._connection() as conn:
            return _head(conn)

    def register_checkpoint(self) -> Checkpoint | None:
        with self._connection() as conn:
            return _checkpoint(conn)

    def register_entries(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        session_id: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, str]]:
        query = "SELECT * FROM register WHERE seq > %s"
        args: list[int | str] = [after_seq]
        if since is not None:
            query += " AND at >= %s"
            args.append(iso(since))
        if until is not None:
            query += " AND at <= %s"
            args.append(iso(until))
        if session_id is not None:
            query += " AND session_id = %s"
            args.append(session_id)
        query += " ORDER BY seq"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [rows.register_entry(row, _ENTRY_FIELDS) for row in self._all(query, tuple(args))]

    def prune_register(self, before: datetime, now: datetime) -> int:
        with self._transaction() as tx:
            # the owner's function writes the checkpoint and removes what is behind it
            row = tx.execute(
                "SELECT register_prune(%s, %s) AS n", (iso(before), iso(now))
            ).fetchone()
            count = int(row["n"]) if row else 0
            if count == 0:
                return 0
            mark = _checkpoint(tx)
            assert mark is not None
            detail = f"entries up to {mark.last_seq} ({count}) older than {iso(before)} removed"
            _append(tx, Entry(Action.REGISTER_PRUNED, SYSTEM, now, detail=detail))
            return count

    # statistics

    def monthly_stats(self, year: int) -> dict[str, dict[str, int]]:
        months = {f"{year:04d}-{m:02d}": rows.empty_month() for m in range(1, 13)}
        text = f"{year:04d}"
        for r in self._all(
            "SELECT substr(started_at, 1, 7) AS month, COUNT(*) AS n FROM sessions"
            " WHERE substr(started_at, 1, 4) = %s GROUP BY 1",
            (text,),
        ):
            months[r["month"]]["sessions"] = int(r["n"])
        for r in self._all(
            "SELECT substr(at, 1, 7) AS month, action, COUNT(*) AS n FROM register"
            " WHERE substr(at, 1, 4) = %s AND outcome = 'ok' GROUP BY 1, 2",
            (text,),
        ):
            key = rows.STATS_OF_ACTION.get(r["action"])
            if key:
                months[r["month"]][key] += int(r["n"])
        for r in self._all(
            "SELECT substr(at, 1, 7) AS month, COUNT(DISTINCT reference) AS n FROM register"
            + _YEAR_REFERENCES
            + " GROUP BY 1",
            (text,),
        ):
            months[r["month"]]["requisitions"] = int(r["n"])
        return months

    def yearly_requisitions(self, year: int) -> int:
        row = self._one(
            "SELECT COUNT(DISTINCT reference) AS n FROM register" + _YEAR_REFERENCES,
            (f"{year:04d}",),
        )
        return int(row["n"]) if row else 0


def _append(tx: Connection, entry: Entry) -> tuple[int, str]:
    """Add an entry at the end of the chain, inside the caller's transaction; the advisory
    lock serialises appends across every node (held until the transaction ends)."""
    tx.execute("SELECT pg_advisory_xact_lock(%s)", (REGISTER_LOCK,))
    seq, prev = _head(tx)
    fields = entry.fields()
    digest = entry_hash(seq + 1, fields, prev)
    columns = [rows.REGISTER_COLUMNS.get(name, name) for name in fields]
    tx.execute(
        f"INSERT INTO register (seq, {', '.join(columns)}, prev_hash, hash)"
        f" VALUES ({', '.join(['%s'] * (len(columns) + 3))})".encode(),
        (seq + 1, *fields.values(), prev, digest),
    )
    return seq + 1, digest


def _head(conn: Connection) -> tuple[int, str]:
    row = conn.execute("SELECT seq, hash FROM register ORDER BY seq DESC LIMIT 1").fetchone()
    if row is not None:
        return int(row["seq"]), str(row["hash"])
    mark = _checkpoint(conn)
    return (mark.last_seq, mark.last_hash) if mark else (0, GENESIS_HASH)


def _checkpoint(conn: Connection) -> Checkpoint | None:
    row: dict[str, Any] | None = conn.execute(
        "SELECT last_seq, last_hash, at, pruned FROM register_checkpoints"
        " ORDER BY last_seq DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return Checkpoint(
        int(row["last_seq"]), str(row["last_hash"]), str(row["at"]), int(row["pruned"])
    )
