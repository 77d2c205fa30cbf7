"""Camera health: every camera asked for its device info on an interval, state kept.

The answer to "how many of our cameras work right now" (the CSU's KPI: "579 cameras,
6 down"), and each camera's availability over its recent polls. A camera changing state is
logged and published as a `camera_health` event.

Across nodes: each round, a node claims in the store the cameras no other node's claim
covers (`store.claim_cameras`, for two intervals), polls those, and writes what it found;
then it reads every camera's last result, its own and the others'. One node polls a camera
at a time, a dead node's cameras are taken over when its claims lapse, and the results
(with the recent polls behind availability) outlive a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import math
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from ..clock import Clock, iso
from ..live.base import EventStream
from ..logs import ids
from ..metrics import Metrics
from ..models import Camera, CameraCheck
from ..store import Store
from .vapix import CameraAuthFailed, CameraError, CameraNotConfigured, Vapix

logger = logging.getLogger(__name__)

WINDOW_POLLS = 288  # availability over the last 288 polls (a day at the 5-minute interval)


class Health(enum.StrEnum):
    UNKNOWN = "unknown"  # not polled yet
    UP = "up"
    DOWN = "down"
    AUTH_FAILED = "auth_failed"
    NOT_CONFIGURED = "not_configured"


def check_json(check: CameraCheck) -> dict[str, Any]:
    polls = check.polls
    return {
        "camera_id": check.camera_id,
        "state": check.state,
        "since": iso(check.since) if check.since else None,
        "checked_at": iso(check.checked_at) if check.checked_at else None,
        "error": check.error,
        "serial": check.serial,
        "model": check.model,
        "firmware": check.firmware,
        "availability": round(polls.count("1") / len(polls), 4) if polls else None,
    }


class HealthMonitor:
    """Polls the cameras of the registry this node has claimed; `report()` is the health
    table of every camera, whichever node polled it."""

    def __init__(
        self,
        vapix: Vapix,
        clock: Clock,
        events: EventStream,
        metrics: Metrics,
        cameras: Callable[[], Sequence[Camera]],
        concurrency: int,
        store: Store,
        interval: float,
        timeout: float,
    ) -> None:
        self._vapix = vapix
        self._clock = clock
        self._events = events
        self._metrics = metrics
        self._cameras = cameras
        self._limit = asyncio.Semaphore(concurrency)
        self._store = store
        self._node = events.node.id
        self._concurrency, self._interval, self._timeout = concurrency, interval, timeout
        self._health: dict[str, CameraCheck] = {}

    async def load(self) -> None:
        """What the last polls found, before this node polls anything (after a restart)."""
        checks = await self._store.run(self._store.camera_checks)
        self._health = {c.camera_id: c for c in checks}

    async def poll_all(self) -> None:
        """One round over the cameras this node claims, `concurrency` requests at a time."""
        store, cameras = self._store, list(self._cameras())
        # a claim covers two rounds and the longest a round can take (every camera timing
        # out): a node that misses one round keeps its cameras, a dead one loses them
        rounds = math.ceil(len(cameras) / self._concurrency)
        now = self._clock.now()
        until = now + timedelta(seconds=2 * self._interval + rounds * self._timeout)
        ids_ = [c.id for c in cameras]
        mine = set(await store.run(store.claim_cameras, ids_, self._node, now, until))
        known = {c.camera_id: c for c in await store.run(store.camera_checks)}
        checks = await asyncio.gather(
            *(self._poll(c, known.get(c.id) or CameraCheck(c.id)) for c in cameras if c.id in mine)
        )
        await store.run(store.record_camera_checks, list(checks), self._node)
        known.update((c.camera_id, c) for c in checks)
        self._health = known
        for state, count in self.report()["counts"].items():
            self._metrics.cameras.labels(state).set(count)

    async def _poll(self, camera: Camera, last: CameraCheck) -> CameraCheck:
        async with self._limit:
            try:
                info = await self._vapix.device_info(camera)
            except CameraError as err:
                state = (
                    Health.NOT_CONFIGURED
                    if isinstance(err, CameraNotConfigured)
                    else Health.AUTH_FAILED
                    if isinstance(err, CameraAuthFailed)
                    else Health.DOWN
                )
                return self._record(last, state, str(err))
        found = dataclasses.replace(
            last, serial=info.serial, model=info.model, firmware=info.firmware
        )
        return self._record(found, Health.UP, "")

    def _record(self, last: CameraCheck, state: Health, error: str) -> CameraCheck:
        now = self._clock.now()
        polls = last.polls
        if state != Health.NOT_CONFIGURED:
            polls = (polls + ("1" if state == Health.UP else "0"))[-WINDOW_POLLS:]
        check = dataclasses.replace(last, checked_at=now, error=error, polls=polls)
        if state == last.state:
            return check
        was = last.state
        if state == Health.UP:
            logger.info(
                "camera %s: up (was %s)", last.camera_id, was, extra=ids(camera_id=last.camera_id)
            )
        else:
            logger.warning(
                "camera %s: %s: %s",
                last.camera_id,
                state,
                error,
                extra=ids(camera_id=last.camera_id),
            )
        self._events.publish(
            "camera_health",
            {"camera_id": last.camera_id, "state": state.value, "was": was, "error": error},
        )
        return dataclasses.replace(check, state=state.value, since=now)

    def is_down(self, camera_id: str) -> bool:
        """Whether the last poll found the camera unreachable or refusing our credentials."""
        check = self._health.get(camera_id)
        return check is not None and check.state in (Health.DOWN, Health.AUTH_FAILED)

    def report(self) -> dict[str, Any]:
        """Each camera's health, and the counts the CSU reports ("579 cameras, 6 down")."""
        registry = self._cameras()
        cameras = [self._health.get(c.id) or CameraCheck(c.id) for c in registry]
        counts = {h.value: 0 for h in Health}
        for check in cameras:
            counts[Health(check.state).value] += 1
        down = counts[Health.DOWN] + counts[Health.AUTH_FAILED]
        polled = counts[Health.UP] + down
        return {
            "total": len(cameras),
            "up": counts[Health.UP],
            "down": down,
            "counts": counts,
            "availability": round(counts[Health.UP] / polled, 4) if polled else None,
            "not_monitored": counts[Health.NOT_CONFIGURED],
            "summary": f"{len(cameras)} cameras, {down} down"
            + (
                f", {counts[Health.NOT_CONFIGURED]} not monitored (no VAPIX URL or credentials)"
                if counts[Health.NOT_CONFIGURED]
                else ""
            ),
            "cameras": [check_json(c) for c in cameras],
        }
