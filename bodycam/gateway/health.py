"""Camera health: every camera asked for its device info on an interval, state kept.

The answer to "how many of our cameras work right now" (the CSU's KPI: "579 cameras,
6 down"), and each camera's availability over its recent polls. A camera changing state is
logged and published as a `camera_health` event.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..clock import Clock, iso
from ..live.base import EventStream
from ..logs import ids
from ..metrics import Metrics
from ..models import Camera
from .vapix import CameraAuthFailed, CameraError, CameraNotConfigured, Vapix

logger = logging.getLogger(__name__)

WINDOW_POLLS = 288  # availability over the last 288 polls (a day at the 5-minute interval)


class Health(enum.StrEnum):
    UNKNOWN = "unknown"  # not polled yet
    UP = "up"
    DOWN = "down"
    AUTH_FAILED = "auth_failed"
    NOT_CONFIGURED = "not_configured"


@dataclass
class CameraHealth:
    camera_id: str
    state: Health = Health.UNKNOWN
    since: datetime | None = None
    checked_at: datetime | None = None
    error: str = ""
    serial: str = ""
    model: str = ""
    firmware: str = ""
    polls: deque[bool] = field(default_factory=lambda: deque(maxlen=WINDOW_POLLS))

    def to_json(self) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            "state": self.state.value,
            "since": iso(self.since) if self.since else None,
            "checked_at": iso(self.checked_at) if self.checked_at else None,
            "error": self.error,
            "serial": self.serial,
            "model": self.model,
            "firmware": self.firmware,
            "availability": round(sum(self.polls) / len(self.polls), 4) if self.polls else None,
        }


class HealthMonitor:
    """Polls every camera of the registry; `report()` is the health table."""

    def __init__(
        self,
        vapix: Vapix,
        clock: Clock,
        events: EventStream,
        metrics: Metrics,
        cameras: Callable[[], Sequence[Camera]],
        concurrency: int,
    ) -> None:
        self._vapix = vapix
        self._clock = clock
        self._events = events
        self._metrics = metrics
        self._cameras = cameras
        self._limit = asyncio.Semaphore(concurrency)
        self._health: dict[str, CameraHealth] = {}

    async def poll_all(self) -> None:
        """One round over every camera, at most `concurrency` requests at a time."""
        cameras = list(self._cameras())
        current = {c.id for c in cameras}
        for gone in set(self._health) - current:
            del self._health[gone]
        await asyncio.gather(*(self._poll(c) for c in cameras))
        for state, count in self.report()["counts"].items():
            self._metrics.cameras.labels(state).set(count)

    async def _poll(self, camera: Camera) -> None:
        health = self._health.setdefault(camera.id, CameraHealth(camera.id))
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
                self._record(health, state, str(err))
                return
        health.serial, health.model, health.firmware = info.serial, info.model, info.firmware
        self._record(health, Health.UP, "")

    def _record(self, health: CameraHealth, state: Health, error: str) -> None:
        now = self._clock.now()
        health.checked_at = now
        health.error = error
        if state != Health.NOT_CONFIGURED:
            health.polls.append(state == Health.UP)
        if state == health.state:
            return
        was, health.state, health.since = health.state, state, now
        if state == Health.UP:
            logger.info(
                "camera %s: up (was %s)",
                health.camera_id,
                was,
                extra=ids(camera_id=health.camera_id),
            )
        else:
            logger.warning(
                "camera %s: %s: %s",
                health.camera_id,
                state,
                error,
                extra=ids(camera_id=health.camera_id),
            )
        self._events.publish(
            "camera_health",
            {"camera_id": health.camera_id, "state": state.value, "was": was.value, "error": error},
        )

    def is_down(self, camera_id: str) -> bool:
        """Whether the last poll found the camera unreachable or refusing our credentials."""
        health = self._health.get(camera_id)
        return health is not None and health.state in (Health.DOWN, Health.AUTH_FAILED)

    def report(self) -> dict[str, Any]:
        """Each camera's health, and the counts the CSU reports ("579 cameras, 6 down")."""
        registry = self._cameras()
        cameras = [self._health.get(c.id) or CameraHealth(c.id) for c in registry]
        counts = {h.value: 0 for h in Health}
        for health in cameras:
            counts[health.state.value] += 1
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
            "cameras": [h.to_json() for h in cameras],
        }
