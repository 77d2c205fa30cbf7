"""The live event stream: what happened (selection changed, camera down…), for consoles.

Events are numbered in order; the last `REPLAY_EVENTS` are kept so a console that lost its
connection can ask for everything after the last id it saw. Each subscriber has a bounded
queue: a subscriber that does not keep up is dropped (its queue gets a None), never the
publisher slowed. This is the in-process implementation, for one gateway node.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .clock import Clock, iso

logger = logging.getLogger(__name__)

REPLAY_EVENTS = 10_000
SUBSCRIBER_QUEUE = 1_000


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    time: datetime
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "time": iso(self.time), "data": self.data}


class Subscription:
    """Events as they are published; `get` returns None once the subscription is dropped."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(SUBSCRIBER_QUEUE)

    async def get(self) -> Event | None:
        return await self.queue.get()

    def close(self) -> None:
        self._bus._subscribers.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class EventBus:
    """Publish events; subscribe to them; replay the recent ones."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._next_id = 1
        self._recent: deque[Event] = deque(maxlen=REPLAY_EVENTS)
        self._subscribers: set[Subscription] = set()

    def publish(self, type_: str, data: dict[str, Any]) -> Event:
        event = Event(self._next_id, type_, self._clock.now(), data)
        self._next_id += 1
        self._recent.append(event)
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                logger.warning("event subscriber too slow: dropped after event %d", event.id)
                sub.close()
                sub.queue.get_nowait()  # make room for the end marker
                sub.queue.put_nowait(None)
        return event

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        self._subscribers.add(sub)
        return sub

    def since(self, after_id: int) -> list[Event]:
        """Kept events with an id greater than `after_id`, oldest first."""
        return [e for e in self._recent if e.id > after_id]
