"""The one database: every durable fact (devices, people and their logins, alerts,
sessions, segments, positions, the city, session keys, legal holds, the register).

`Store` (`base`) is the interface every backend implements, and the only way to reach it:
`await store.run(store.query, ...)` from the event loop, `store.call(store.query, ...)`
from any other thread; a query called any other way fails at once. SQL is kept in one place
per backend: `sqlite/` (the embedded default: one node, the demo) and `postgres/` (a server
several nodes share). `rows` turns rows into models for both; `migrations` versions both
schemas.

May import: the foundations (`config`, `models`, `errors`, `clock`). Nothing above.
"""

from __future__ import annotations

from ..config import Config
from .base import Checkpoint, Destruction, Store, StoreThreadError
from .migrations import SchemaTooNew
from .postgres import PostgresStore, StoreUnavailable
from .sqlite import SqliteStore


def open_store(config: Config) -> Store:
    """The database the configuration names: PostgreSQL at `store.url`, or SQLite under
    `data_dir`. Opening it brings its schema up to date (or refuses a newer one)."""
    if config.store.url:
        return PostgresStore(config.store.url, config.store.pool_size)
    return SqliteStore(config.database_path)


__all__ = [
    "Checkpoint",
    "Destruction",
    "PostgresStore",
    "SchemaTooNew",
    "SqliteStore",
    "Store",
    "StoreThreadError",
    "StoreUnavailable",
    "open_store",
]
