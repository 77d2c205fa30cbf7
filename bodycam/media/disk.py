"""The free-space floor of the recordings' filesystem.

Below `recording.min_free_bytes` no segment opens and the open ones are sealed: what is
left is the database's reserve (the register, logins, the catalogue go on writing) and
nothing already written is touched. Live viewing does not need the disk and goes on.
Recording resumes by itself at the next keyframe once the free space is back above the
floor by a margin (so that a disk hovering at the floor does not flap).

The filesystem is asked every `CHECK_SECONDS` off the event loop (a statvfs is quick on a
local disk, not on a hung network share). Each change is logged, counted in /metrics
(`bodycam_disk_free_bytes`, `bodycam_recording_stopped`) and published as a `recording`
event, which every console shows ("Enregistrement impossible : disque plein").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..metrics import Metrics

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
RESUME_MARGIN = 0.2  # of the floor, above it, before recording resumes

Publish = Callable[[str, dict[str, Any]], None]


class FreeSpace(Protocol):
    """What a recorder reads of the floor, on every frame: a `DiskGuard`, or in a media
    worker the main process's guard as last told."""

    full: bool


class DiskGuard:
    """Whether recording may write; read by every recorder on every frame (`full`)."""

    def __init__(
        self, path: Path, floor: int, metrics: Metrics, publish: Publish, node: str = ""
    ) -> None:
        self.path = path
        self.floor = floor
        self.full = False
        self.listeners: list[Callable[[bool], None]] = []  # told each change of `full`
        self.free: int | None = None
        self._metrics = metrics
        self._publish = publish
        self._node = node
        self._task: asyncio.Task[None] | None = None

    def status(self) -> dict[str, Any]:
        """What a console shows, and what the `recording` event carries."""
        return {
            "state": "stopped" if self.full else "recording",
            "reason": "disk_full" if self.full else None,
            "free_bytes": self.free,
            "floor_bytes": self.floor,
            "node": self._node,
        }

    def observe(self, free: int) -> None:
        """Take a reading of the free space (the watch calls it; tests may too)."""
        self.free = free
        self._metrics.disk_free.set(free)
        if not self.full and free < self.floor:
            self.full = True
            logger.error(
                "recording stopped: %d bytes free on %s, under the floor of %d"
                " (recording.min_free_bytes); live viewing goes on",
                free,
                self.path,
                self.floor,
            )
        elif self.full and free >= self.floor * (1 + RESUME_MARGIN):
            self.full = False
            logger.warning("recording resumes: %d bytes free on %s", free, self.path)
        else:
            return
        self._metrics.recording_stopped.set(1 if self.full else 0)
        self._publish("recording", self.status())
        for listener in self.listeners:
            listener(self.full)

    async def check(self) -> None:
        try:
            usage = await asyncio.to_thread(shutil.disk_usage, self.path)
        except OSError as err:
            logger.warning("free space of %s unknown: %s", self.path, err)
            return
        self.observe(usage.free)

    async def start(self) -> None:
        await self.check()  # a gateway started on a full disk says so at once
        self._task = asyncio.create_task(self._watch(), name="disk-guard")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            await self.check()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
