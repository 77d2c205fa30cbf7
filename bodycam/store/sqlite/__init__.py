"""The SQLite backend: one file under the data directory, the embedded default (one node,
the demo, the tests). Every line of SQL for SQLite is in this package: the schema
(`schema`), the connection and its thread (`connection`), the queries (`catalogue`,
`evidence`).

May import: the store's interface (`store.base`) and the foundations.
"""

from __future__ import annotations

from .catalogue import CatalogueQueries
from .evidence import EvidenceQueries


class SqliteStore(CatalogueQueries, EvidenceQueries):
    """The `Store` on SQLite (WAL, foreign keys on, secure delete)."""


__all__ = ["SqliteStore"]
