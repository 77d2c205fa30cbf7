"""The purge: expired sessions not on legal hold are destroyed irrecoverably.

Order matters. The session's key goes first (after that, no copy of its files anywhere can
be decrypted), then the files, then the positions and segment rows together with the
destruction's register entry. Each step is recorded before the next starts, so a crash
anywhere leaves a session either untouched, or "shredded" (key gone, files perhaps still
there), which the next purge finishes. The register entry and the session's final state are
written in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from ..clock import iso
from ..gateway.appkeys import clock_key, config_key, store_key
from ..store import Store
from .register import SYSTEM, Action, Actor, Entry
from .retention import Retention, expires_at, years_before

logger = logging.getLogger(__name__)

T = TypeVar("T")
Call = Callable[..., Any]


@dataclass
class PurgeReport:
    """What a purge did (or, dry, would do)."""

    destroyed: list[str] = field(default_factory=list)
    due: list[str] = field(default_factory=list)  # dry run: what would go
    held: list[str] = field(default_factory=list)  # expired, kept by a legal hold
    pruned_entries: int = 0


def purge(
    store: Store,
    recordings_dir: Path,
    retention: Retention,
    now: datetime,
    actor: Actor = SYSTEM,
    dry_run: bool = False,
    call: Call | None = None,
) -> PurgeReport:
    """Destroy every expired session not on hold; finish destructions a crash cut short.

    `call` runs a store method where the store allows it (`store.call` from a worker
    thread); the command line leaves it out and calls directly.
    """
    run: Call = call or (lambda fn, *args: fn(*args))
    report = PurgeReport()
    if not dry_run:
        run(store.forget_deleted)  # in case a reader kept the last round's from completing
    held = run(store.held_sessions)
    shredded: list[tuple[str, datetime]] = []
    for session_id, until, state in run(store.recorded_until):
        if state == "shredded":  # a purge stopped after the key: finish it
            if not dry_run:
                shredded.append((session_id, until))
            else:
                report.due.append(session_id)
            continue
        if expires_at(until, retention) > now:
            continue
        if session_id in held:
            report.held.append(session_id)
        elif dry_run:
            report.due.append(session_id)
        elif run(store.shred_key, session_id, now):
            shredded.append((session_id, until))
        elif session_id in run(store.held_sessions):
            report.held.append(session_id)  # a hold placed while we were looking
        # else another purge (the gateway's, the command line's) is destroying it
    if not shredded:
        return report
    if not run(store.forget_deleted):
        logger.warning("purge: the database is being read: destroyed keys leave the WAL later")
    for session_id, until in shredded:
        try:
            if _finish(store, run, recordings_dir, retention, session_id, until, actor, now):
                report.destroyed.append(session_id)
        except (OSError, ValueError) as err:  # the others go on; this one is retried
            logger.error("session %s: key destroyed, files not removed: %s", session_id, err)
    return report


def _finish(
    store: Store,
    run: Call,
    recordings_dir: Path,
    retention: Retention,
    session_id: str,
    until: datetime,
    actor: Actor,
    now: datetime,
) -> bool:
    """Remove a shredded session's files, then register its destruction."""
    _destroy_files(recordings_dir, session_id)
    session = run(store.get_session, session_id)
    segments, size = run(store.recording_totals, session_id)
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
    if not run(store.finish_destruction, session_id, entry):
        return False  # another purge registered it
    logger.info(
        "session %s: destroyed (recorded until %s, retention %s, %s)",
        session_id,
        iso(until),
        retention,
        how,
    )
    return True


def _destroy_files(recordings_dir: Path, session_id: str) -> None:
    """Remove a session's folder; already gone is fine (a purge finishing another)."""
    folder = recordings_dir / session_id
    if recordings_dir.resolve() not in folder.resolve().parents:
        raise ValueError(f"session id {session_id!r} is not a folder name")
    if folder.exists():
        shutil.rmtree(folder)


async def purge_ctx(app: web.Application) -> AsyncIterator[None]:
    """The periodic purge and register pruning, every `evidence.purge_interval_seconds`."""
    task = asyncio.create_task(_purge_loop(app))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _purge_loop(app: web.Application) -> None:
    config, store, clock = app[config_key], app[store_key], app[clock_key]
    while True:
        try:
            await run_once(
                store,
                config.recordings_dir,
                config.retention,
                clock.now(),
                config.evidence.register_years,
            )
        except Exception:  # the next round tries again; a stuck purge shows in the logs
            logger.exception("purge failed")
        await asyncio.sleep(config.evidence.purge_interval_seconds)


async def run_once(
    store: Store, recordings_dir: Path, retention: Retention, now: datetime, years: int
) -> PurgeReport:
    """One round of the gateway's purge, off the event loop."""
    report = await asyncio.to_thread(
        purge, store, recordings_dir, retention, now, SYSTEM, False, store.call
    )
    report.pruned_entries = await store.run(store.prune_register, years_before(now, years), now)
    return report
