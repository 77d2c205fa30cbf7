"""Live state in this process: for one gateway node (the default), the demo, and tests.

Several `MemoryLive` nodes made on one `MemoryHub` share it as nodes on one Redis do (the
test suite runs the same cases on both). Expiry uses the injected clock's monotonic time.
"""

from __future__ import annotations

import bisect
import json
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from ..clock import Clock
from .base import (
    BEGINNING,
    REPLAY_EVENTS,
    Control,
    Event,
    EventStream,
    Follow,
    LivePosition,
    LiveState,
    Node,
    Positions,
    PtzHolds,
    SessionRegistry,
    distance_m,
    event_key,
)


class MemoryHub:
    """The state that in-process nodes share (one per process; tests make several nodes)."""

    def __init__(self, clock: Clock, max_events: int = REPLAY_EVENTS) -> None:
        self.clock = clock
        self.events: deque[Event] = deque(maxlen=max_events)
        self.streams: set[MemoryEvents] = set()
        self.positions: dict[str, tuple[LivePosition, float]] = {}  # and expiry (monotonic)
        self.claims: dict[str, tuple[Node, float]] = {}
        self.controls: dict[str, Control] = {}  # PTZ camera id -> manual control
        self.follows: dict[str, tuple[str, datetime]] = {}  # -> session id, claim's end
        self._last = (0, 0)

    def next_id(self) -> str:
        """Ids made as Redis makes them: milliseconds, then a sequence within the same one."""
        ms = int(self.clock.now().timestamp() * 1000)
        last_ms, seq = self._last
        self._last = (ms, 0) if ms > last_ms else (last_ms, seq + 1)
        return f"{self._last[0]}-{self._last[1]}"


class MemoryEvents(EventStream):
    def __init__(self, hub: MemoryHub, node: Node) -> None:
        super().__init__(node)
        self._hub = hub
        hub.streams.add(self)

    def publish(self, type_: str, data: dict[str, Any]) -> None:
        hub = self._hub
        copy = json.loads(json.dumps(data))  # what Redis would carry, and safe from later edits
        event = Event(hub.next_id(), type_, hub.clock.now(), copy, self.node.id)
        hub.events.append(event)
        for stream in list(hub.streams):
            stream._dispatch(event)

    def newest_id(self) -> str:
        return self._hub.events[-1].id if self._hub.events else BEGINNING

    async def _after(self, event_id: str, count: int) -> list[Event]:
        events = self._hub.events
        start = bisect.bisect_right(events, event_key(event_id), key=lambda e: event_key(e.id))
        return [events[i] for i in range(start, min(start + count, len(events)))]


class MemoryPositions(Positions):
    def __init__(self, hub: MemoryHub, ttl: float) -> None:
        self._hub = hub
        self._ttl = ttl

    def set(self, position: LivePosition) -> None:
        expires = self._hub.clock.monotonic() + self._ttl
        self._hub.positions[position.session_id] = (position, expires)

    def remove(self, session_id: str) -> None:
        self._hub.positions.pop(session_id, None)

    def _live(self) -> list[LivePosition]:
        now = self._hub.clock.monotonic()
        stale = [sid for sid, (_, expires) in self._hub.positions.items() if expires <= now]
        for session_id in stale:
            del self._hub.positions[session_id]
        return [p for _, (p, _) in sorted(self._hub.positions.items())]

    async def get(self, session_id: str) -> LivePosition | None:
        return next((p for p in self._live() if p.session_id == session_id), None)

    async def all(self) -> list[LivePosition]:
        return self._live()

    async def within(
        self, lat: float, lon: float, radius_m: float
    ) -> list[tuple[LivePosition, float]]:
        found = [(p, distance_m(lat, lon, p.lat, p.lon)) for p in self._live()]
        return sorted([f for f in found if f[1] <= radius_m], key=lambda f: f[1])


class MemorySessions(SessionRegistry):
    def __init__(self, hub: MemoryHub, node: Node, ttl: float) -> None:
        super().__init__(node, ttl)
        self._hub = hub

    async def holder(self, session_id: str) -> Node | None:
        claim = self._hub.claims.get(session_id)
        if claim is None or claim[1] <= self._hub.clock.monotonic():
            return None
        return claim[0]

    async def _claim(self, session_id: str) -> None:
        self._hub.claims[session_id] = (self.node, self._hub.clock.monotonic() + self.ttl)

    async def _release(self, session_id: str) -> None:
        if await self.holder(session_id) == self.node:
            del self._hub.claims[session_id]

    async def _refresh(self, session_ids: list[str]) -> list[str]:
        lost = []
        for session_id in session_ids:
            holder = await self.holder(session_id)
            if holder is None or holder == self.node:
                await self._claim(session_id)
            else:
                lost.append(session_id)
        return lost


class MemoryPtz(PtzHolds):
    def __init__(self, hub: MemoryHub) -> None:
        self._hub = hub

    async def control(self, camera_id: str, now: datetime) -> Control | None:
        control = self._hub.controls.get(camera_id)
        return control if control is not None and control.until > now else None

    async def take_control(self, control: Control, now: datetime) -> Control:
        current = await self.control(control.camera_id, now)
        if current is not None and current.holder != control.holder:
            return current
        self._hub.controls[control.camera_id] = control
        self._hub.follows.pop(control.camera_id, None)
        return control

    async def release_control(
        self, camera_id: str, holder: str, now: datetime
    ) -> tuple[Control | None, Control | None]:
        current = await self.control(camera_id, now)
        if current is None:
            return None, None
        if current.holder != holder:
            return None, current
        del self._hub.controls[camera_id]
        return current, None

    async def end_expired(self, control: Control, now: datetime) -> bool:
        if self._hub.controls.get(control.camera_id) != control or control.until > now:
            return False
        del self._hub.controls[control.camera_id]
        return True

    async def follow(self, camera_id: str, session_id: str, now: datetime, ttl: float) -> Follow:
        control = await self.control(camera_id, now)
        if control is not None:
            return Follow(False, control=control)
        follower = self._hub.follows.get(camera_id)
        if follower is not None and follower[1] > now and follower[0] != session_id:
            return Follow(False, session_id=follower[0])
        self._hub.follows[camera_id] = (session_id, now + timedelta(seconds=ttl))
        return Follow(True, session_id=session_id)

    async def unfollow(self, camera_id: str, session_id: str) -> None:
        follower = self._hub.follows.get(camera_id)
        if follower is not None and follower[0] == session_id:
            del self._hub.follows[camera_id]


class MemoryLive(LiveState):
    """Live state in this process: for one gateway node, the demo, and tests."""

    def __init__(
        self,
        node: Node,
        clock: Clock,
        *,
        position_ttl: float,
        claim_ttl: float,
        hub: MemoryHub | None = None,
    ) -> None:
        self.hub = hub or MemoryHub(clock)
        self._events = MemoryEvents(self.hub, node)
        super().__init__(
            node,
            self._events,
            MemoryPositions(self.hub, position_ttl),
            MemorySessions(self.hub, node, claim_ttl),
            MemoryPtz(self.hub),
        )

    async def close(self) -> None:
        self.hub.streams.discard(self._events)
        await super().close()
