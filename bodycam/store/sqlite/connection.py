"""The SQLite connection: opened, used and closed on the store's thread only.

WAL journal (readers never wait for the writer), foreign keys on, and `secure_delete` so
that a deleted row (a destroyed session key) is overwritten, not left in a free page. The
connection is made on the store's thread with sqlite3's own `check_same_thread`, and every
query goes through `_db`, which checks the thread first: a query from anywhere else fails
loudly rather than start a transaction beside another.
"""

from __future__ import annotations

import fcntl
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..base import LOCK_NAMES, Store
from . import schema


class SqliteConnection(Store):
    """What the query mixins share: the connection, transactions, snapshots."""

    def __init__(self, path: Path) -> None:
        super().__init__("store")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connection: sqlite3.Connection | None = None
        try:
            self._executor.submit(self._open).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    def _open(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA secure_delete=ON")
            schema.migrate(db, str(self.path))
        except BaseException:
            db.close()
            raise
        self._connection = db

    @property
    def _db(self) -> sqlite3.Connection:
        self._check_thread()
        assert self._connection is not None, "the store is closed"
        return self._connection

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        # one machine: a lock file beside the database, which the kernel frees with its
        # holder's process
        if name not in LOCK_NAMES:
            raise KeyError(name)
        with open(self.path.with_name(f"{self.path.name}.{name}.lock"), "a") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        db = self._db
        if db.in_transaction:  # inside another snapshot: it already sees one state
            yield
            return
        db.execute("BEGIN")
        try:
            yield
        finally:
            db.execute("COMMIT")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; taken at once (IMMEDIATE) so it never fails half way for
        a lock another process holds."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
