"""Versioned schema migrations, the same rule for every backend.

A backend lists its migrations in order (`Migration(version, description, apply)`, where
`apply` takes the backend's connection). At start the store applies those its database has
not had yet, each recorded in its `schema_migrations` table, and refuses a database whose
version is newer than the code knows (it was upgraded by a later bodycam: running this one
on it could lose data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..errors import BodycamError

C = TypeVar("C")


class SchemaTooNew(BodycamError):
    """The database was migrated by a newer bodycam than this one."""


@dataclass(frozen=True)
class Migration(Generic[C]):
    version: int
    description: str
    apply: Callable[[C], None]


def pending(migrations: list[Migration[C]], current: int, where: str) -> list[Migration[C]]:
    """The migrations a database at version `current` still needs, in order."""
    known = max((m.version for m in migrations), default=0)
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise AssertionError(f"migrations must be numbered 1, 2, 3…: {versions}")
    if current > known:
        raise SchemaTooNew(
            f"the database {where} is at schema version {current}, newer than this bodycam"
            f" knows ({known}): run the bodycam that upgraded it, or restore a backup"
        )
    return [m for m in migrations if m.version > current]
