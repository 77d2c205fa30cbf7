"""The one database: every durable fact (devices, people and their logins, alerts,
sessions, segments, positions, the city, session keys, legal holds, the register).

`Store` (`base`) is the interface every backend implements, and the only way to reach it:
`await store.run(store.query, ...)` from the event loop, `store.call(store.query, ...)`
from any other thread; a query called any other way fails at once. SQL is kept in one place
per backend: `sqlite/` (the embedded default).

May import: the foundations (`config`, `models`, `errors`, `clock`). Nothing above.
"""

from __future__ import annotations

from ..config import Config
from .base import Checkpoint, Destruction, Store, StoreThreadError
from .sqlite import SqliteStore


def open_store(config: Config) -> Store:
    """The database the configuration names (SQLite under `data_dir`)."""
    return SqliteStore(config.database_path)


__all__ = ["Checkpoint", "Destruction", "SqliteStore", "Store", "StoreThreadError", "open_store"]
