"""The PostgreSQL backend: one server that every gateway node shares (`store.url =
"postgresql://…"`). Every line of SQL for PostgreSQL is in this package: the schema and its
migrations (`schema`), the pool and its threads (`connection`), the queries (`catalogue`,
`evidence`).

May import: the store's interface (`store.base`, `store.rows`, `store.migrations`) and the
foundations.
"""

from __future__ import annotations

from .catalogue import CatalogueQueries
from .connection import StoreUnavailable
from .evidence import EvidenceQueries


class PostgresStore(CatalogueQueries, EvidenceQueries):
    """The `Store` on PostgreSQL (psycopg 3, a connection pool, advisory locks)."""


__all__ = ["PostgresStore", "StoreUnavailable"]
