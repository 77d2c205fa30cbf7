"""The purge: expired sessions not on legal hold are destroyed irrecoverably.

Order matters. The session's key goes first (after that, no copy of its files anywhere can
be decrypted), then the files, then the positions and segment rows together with the
destruction's register entry. Each step is recorded before the next starts, so a crash
anywhere leaves a session either untouched, or "shredded" (key gone, files perhaps still
there), which the next purge finishes. The register entry and the session's final state are
written in one transaction.

The gateway (every `evidence.purge_interval_seconds`, on a worker thread) and the command
line (`bodycam purge`) run the same `purge` and `prune_register`; both reach the store with
`store.call`, so they never run on the event loop or the store's thread. One of them purges
at a time across every node (`store.exclusive("purge")`, which a dead node's process lets
go of): the others skip their round, and the next round of whoever comes next finishes
what a node killed in the middle left "shredded".
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..clock import iso
from ..logs import ids
from ..models import SYSTEM, Action, Actor, Entry, Retention
from ..store import Store
from .retention import expires_at, years_before

logger = logging.getLogger(__name__)


@dataclass
class PurgeReport:
    """What a purge did (or, dry, would do)."""

    destroyed: list[str] = field(default_factory=list)
    due: list[str] = field(default_factory=list)  # dry run: what would go
    held: list[str] = field(default_factory=list)  # expired, kept by a legal hold
    busy: bool = False  # another node (or the command line) was purging: nothing done


def purge(
    store: Store,
    recordings_dir: Path,
    retention: Retention,
    now: datetime,
    actor: Actor = SYSTEM,
    dry_run: bool = False,
) -> PurgeReport:
    """Destroy every expired session not on hold; finish destructions a crash cut short."""
    if dry_run:
        return _purge(store, recordings_dir, retention, now, actor, dry_run)
    with store.exclusive("purge") as mine:
        if not mine:
            logger.info("purge: another node is purging; this round is skipped")
            return PurgeReport(busy=True)
        return _purge(store, recordings_dir, retention, now, actor, dry_run)


def _purge(
    store: Store,
    recordings_dir: Path,
    retention: Retention,
    now: datetime,
    actor: Actor,
    dry_run: bool,
) -> PurgeReport:
    report = PurgeReport()
    if not dry_run:
        store.call(store.forget_deleted)  # in case a reader kept the last round's back
    shredded = _shred_expired(store, retention, now, dry_run, report)
    if not shredded:
        return report
    if not store.call(store.forget_deleted):
        logger.warning("purge: the database is being read: destroyed keys leave the WAL later")
    for session_id, until in shredded:
        try:
            if _finish(store, recordings_dir, retention, session_id, until, actor, now):
                report.destroyed.append(session_id)
        except (OSError, ValueError) as err:  # the others go on; this one is retried
            logger.error(
                "session %s: key destroyed, files not removed: %s",
                session_id,
                err,
                extra=ids(session_id=session_id),
            )
    return report


def _shred_expired(
    store: Store, retention: Retention, now: datetime, dry_run: bool, report: PurgeReport
) -> list[tuple[str, datetime]]:
    """Destroy the key of each expired session not on hold (the first, decisive step);
    returns those whose destruction is to be finished, with a crash's leftovers."""
    held = store.call(store.held_sessions)
    shredded: list[tuple[str, datetime]] = []
    for pending in store.call(store.pending_destructions):
        session_id, until = pending.session_id, pending.recorded_until
        if pending.state == "shredded" and dry_run:
            report.due.append(session_id)
        elif pending.state == "shredded":  # a purge stopped after the key: finish it
            shredded.append((session_id, until))
        elif expires_at(until, retention) > now:
            continue
        elif session_id in held:
            report.held.append(session_id)
        elif dry_run:
            report.due.append(session_id)
        elif store.call(store.shred_key, session_id, now):
            shredded.append((session_id, until))
        elif session_id in store.call(store.held_sessions):
            report.held.append(session_id)  # a hold placed while we were looking
        # else another purge (the gateway's, the command line's) is destroying it
    return shredded


def prune_register(store: Store, years: int, now: datetime) -> int:
    """Remove register entries older than `years` (behind a checkpoint); returns how many
    (none while another node purges: it prunes too)."""
    with store.exclusive("purge") as mine:
        return store.call(store.prune_register, years_before(now, years), now) if mine else 0


def _finish(
    store: Store,
    recordings_dir: Path,
    retention: Retention,
    session_id: str,
    until: datetime,
    actor: Actor,
    now: datetime,
) -> bool:
    """Remove a shredded session's files, then register its destruction."""
    _destroy_files(recordings_dir, session_id)
    session = store.call(store.get_session, session_id)
    segments, size = store.call(store.recording_totals, session_id)
    how = "automatic" if actor == SYSTEM else f"by {actor.user}"
    entry = Entry(
        Action.DESTRUCTION,
        actor,
        now,
        session_id=session_id,
        time_from=session.started_at if session else None,
        time_to=until,
        detail=(
            f"{how}; retention {retention}; device {session.device_id if session else '?'};"
            f" key destroyed; {segments} segments, {size} bytes removed"
        ),
    )
    if not store.call(store.finish_destruction, session_id, entry):
        return False  # another purge registered it
    logger.info(
        "session %s: destroyed (recorded until %s, retention %s, %s)",
        session_id,
        iso(until),
        retention,
        how,
        extra=ids(session_id=session_id),
    )
    return True


def _destroy_files(recordings_dir: Path, session_id: str) -> None:
    """Remove a session's folder; already gone is fine (a purge finishing another)."""
    folder = recordings_dir / session_id
    if recordings_dir.resolve() not in folder.resolve().parents:
        raise ValueError(f"session id {session_id!r} is not a folder name")
    if folder.exists():
        shutil.rmtree(folder)
