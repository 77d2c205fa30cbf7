"""The PostgreSQL connections: a psycopg 3 pool, used by the store's own threads only.

The store has as many threads as the pool has connections (`store.pool_size`); a query
takes a connection for its statement or transaction and gives it back. `snapshot()` keeps
one connection for the thread, in a repeatable-read transaction, so that the queries inside
see one state of the database. Connections are in autocommit mode: every write that needs
more than one statement says so with `_transaction()`.

A server that cannot be reached is a `StoreUnavailable` naming it (password left out),
never a psycopg error.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from ...config import redacted
from ...errors import BodycamError
from ..base import Store
from . import schema

Connection = psycopg.Connection[dict[str, Any]]
CONNECT_SECONDS = 10.0
# While the server is known to be down (the last wait for a connection timed out), a query
# waits this long, not CONNECT_SECONDS: else each takes a store thread for 10 s, the
# queries of live sessions (a position a second each) queue faster than they fail, and
# every request, even after the server is back, waits behind that queue for minutes.
DOWN_WAIT_SECONDS = 0.5


class StoreUnavailable(BodycamError):
    """The database server cannot be reached."""

    status = 503


class PostgresConnection(Store):
    """What the query mixins share: the pool, transactions, snapshots."""

    shared = True

    def __init__(self, url: str, pool_size: int = 4) -> None:
        super().__init__("store", threads=pool_size)
        self.url = url
        self.where = redacted(url)
        self._local = threading.local()
        self._unreachable = False  # the last wait for a connection timed out
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            # A connection is checked (one empty round trip) before each use: after the
            # server restarts, the pool's connections are all dead, and without the check
            # the first query on each fails at once (a segment left unsealed, a register
            # entry refused) instead of waiting, up to CONNECT_SECONDS, for a new one.
            check=ConnectionPool.check_connection,
            open=False,
            name="bodycam",
        )
        try:
            self._executor.submit(self._open).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    def _open(self) -> None:
        # One connection of its own first: a server that refuses or is missing is named with
        # libpq's own reason at once (the pool would only time out, "initialization
        # incomplete", after CONNECT_SECONDS), and the migrations run on it.
        try:
            first = psycopg.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=int(CONNECT_SECONDS),
            )
        except psycopg.OperationalError as err:
            raise StoreUnavailable(f"PostgreSQL at {self.where} cannot be reached: {err}") from None
        with first:
            schema.migrate(first, self.where)
        try:
            self._pool.open(wait=True, timeout=CONNECT_SECONDS)
        except (PoolTimeout, psycopg.OperationalError) as err:
            self._pool.close()
            raise StoreUnavailable(f"PostgreSQL at {self.where} cannot be reached: {err}") from None

    def grant(self, role: str, register_days: int) -> None:
        """Give a gateway's role its rights, the register's being append-only (`schema`)."""
        with self._connection() as conn:
            schema.grant(conn, role, register_days)

    def _close(self) -> None:
        self._pool.close()

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """This thread's snapshot connection, or one from the pool for this query."""
        self._check_thread()
        held: Connection | None = getattr(self._local, "conn", None)
        if held is not None:
            yield held
            return
        wait = DOWN_WAIT_SECONDS if self._unreachable else CONNECT_SECONDS
        try:
            with self._pool.connection(timeout=wait) as conn:
                self._unreachable = False
                yield conn
        except PoolTimeout as err:
            self._unreachable = True
            raise StoreUnavailable(f"PostgreSQL at {self.where}: {err}") from None
        except psycopg.OperationalError as err:
            raise StoreUnavailable(f"PostgreSQL at {self.where}: {err}") from None

    def _one(self, query: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        with self._connection() as conn:
            return conn.execute(query.encode(), params).fetchone()

    def _all(self, query: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._connection() as conn:
            return conn.execute(query.encode(), params).fetchall()

    def _run(self, query: str, params: tuple[Any, ...] = ()) -> int:
        """A statement on its own; how many rows it touched."""
        with self._connection() as conn:
            return conn.execute(query.encode(), params).rowcount

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self._connection() as conn, conn.transaction():
            yield conn

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        # a session-level advisory lock on a connection of its own, outside the pool: the
        # server releases it when that connection ends, whether closed or cut by a death
        key = schema.LOCK_KEYS[name]
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=int(CONNECT_SECONDS),
            )
        except psycopg.OperationalError as err:
            raise StoreUnavailable(f"PostgreSQL at {self.where}: {err}") from None
        with conn:
            # a killed process closes its socket, which the server notices at once; these
            # make it notice a vanished machine too, within 10 + 3 × 5 s
            for setting, value in (("idle", 10), ("interval", 5), ("count", 3)):
                conn.execute(f"SET tcp_keepalives_{setting} = {value}".encode())
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            held = bool(row and row[0])
            try:
                yield held
            finally:
                if held and not conn.closed:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        if getattr(self._local, "conn", None) is not None:  # inside another snapshot
            yield
            return
        with self._connection() as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None
                conn.execute("COMMIT")
