"""A PostgreSQL database read without opening it as a store: no pool, no migration, no
write (for `serve --check`, which must change nothing). A server that cannot be reached
raises `StoreUnavailable` with psycopg's reason."""

from __future__ import annotations

import psycopg

from .connection import StoreUnavailable


def _connect(url: str, timeout: float) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(url, connect_timeout=int(timeout))
    except psycopg.OperationalError as err:
        raise StoreUnavailable(str(err).strip()) from None


def schema_version(url: str, timeout: float) -> int:
    """The schema version of the database at `url` (0: none applied yet)."""
    with _connect(url, timeout) as conn:
        if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
            return 0
        row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(str(row[0] or 0)) if row else 0


def meta(url: str, key: str, timeout: float) -> str | None:
    """A value of the `meta` table (None: no such table or key)."""
    with _connect(url, timeout) as conn:
        if conn.execute("SELECT to_regclass('meta')").fetchone() == (None,):
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
    return str(row[0]) if row else None
