"""The access register: append-only entries, each chained to the previous one by SHA-256.

Every entry's hash covers its canonical encoding (`models.canonical`: its fields, its number
and the previous entry's hash), so changing, removing or inserting one entry breaks the
chain from there on, and `verify` names the first entry that does not hold. Entries older
than the keeping period (3 years) are pruned behind a checkpoint that records the last
pruned entry's number and hash: the rest of the chain still verifies from it. The store
appends (inside the transaction of the fact recorded) and prunes; this module checks, and
writes the register out as CSV. Its head hash goes into every signed export bundle, so a
register rewritten wholesale no longer matches what was handed over.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from ..models import CSV_FIELDS, GENESIS_HASH, entry_hash
from ..store import Store
from ..store.base import paged

PAGE = 2000  # entries read at a time


@dataclass(frozen=True)
class Verdict:
    """What `verify` found: OK with the head, or the first entry that does not hold."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    problem: str = ""
    since: str = ""  # "entry 1", or the checkpoint the chain starts from

    def text(self) -> str:
        if self.ok:
            return (
                f"register OK: {self.checked} entries from {self.since} chained, "
                f"head {self.head_seq} {self.head_hash}"
            )
        return f"register BROKEN at entry {self.broken_seq}: {self.problem}"


def row_hash(row: dict[str, str]) -> str:
    """What an entry's hash should be, from its row (the store's, or an exported one)."""
    fields = {k: row[k] for k in CSV_FIELDS if k not in ("seq", "prev_hash", "hash")}
    return entry_hash(int(row["seq"]), fields, row["prev_hash"])


def verify(store: Store) -> Verdict:
    """Recompute the chain from the start (or the last checkpoint) to the head.

    Runs on the store's thread (`store.run(verify, store)`), in one snapshot: writers go on.
    """
    with store.snapshot():
        mark = store.register_checkpoint()
        if mark is None:
            seq, prev, since = 0, GENESIS_HASH, "entry 1"
        else:
            seq, prev = mark.last_seq, mark.last_hash
            since = f"checkpoint after entry {mark.last_seq} ({mark.pruned} pruned on {mark.at})"
        checked = 0
        rows = paged(lambda after: store.register_entries(after_seq=after, limit=PAGE), seq)
        for row in rows:
            number = int(row["seq"])
            label = f"{row['action']} by {row['user']} at {row['at']}"
            if number != seq + 1:
                return _broken(checked, seq + 1, f"missing (the next entry is {number}, {label})")
            if row["prev_hash"] != prev:
                return _broken(
                    checked,
                    number,
                    f"{label}: its link to entry {seq} does not match: an entry before it was"
                    " altered, removed or inserted",
                )
            if row_hash(row) != row["hash"]:
                return _broken(checked, number, f"{label}: its content does not match its hash")
            seq, prev = number, row["hash"]
            checked += 1
    return Verdict(True, checked, seq, prev, since=since)


def _broken(checked: int, seq: int, problem: str) -> Verdict:
    return Verdict(False, checked, 0, "", broken_seq=seq, problem=problem)


def entries(
    store: Store, since: datetime | None = None, until: datetime | None = None
) -> Iterator[dict[str, str]]:
    """Every entry between two moments, read a page at a time through `store.call` (from a
    thread that is not the event loop's: the command line)."""
    return paged(lambda after: store.call(store.register_entries, since, until, None, after, PAGE))


def write_csv(rows: Iterable[dict[str, str]], out: IO[str]) -> int:
    """The register as CSV (one header line, then one line per entry); returns the count."""
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count
