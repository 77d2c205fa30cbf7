"""A SQLite database read without opening it as a store: no migration, no write, read-only
(for `serve --check`, which must change nothing)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def schema_version(path: Path) -> int:
    """The schema version of the database at `path` (0: none applied yet)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        made = db.execute("SELECT name FROM sqlite_master WHERE name = 'schema_migrations'")
        if made.fetchone() is None:
            return 0
        row = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0) if row else 0


def meta(path: Path, key: str) -> str | None:
    """A value of the `meta` table (None: no such table or key)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        made = db.execute("SELECT name FROM sqlite_master WHERE name = 'meta'")
        if made.fetchone() is None:
            return None
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row else None
