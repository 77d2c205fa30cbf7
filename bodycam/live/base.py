"""The interface of the live, shared state: the event stream, officers' live positions,
which node holds a session (`LiveState`: `events`, `positions`, `sessions`). Implemented in
process (`memory`) and in Redis (`redis`); `open_live` in the package chooses.

- Events: `publish` is synchronous and never waits (it is called from GPS handling and
  camera polling); every node's subscribers see every node's events, in one order. Ids are
  ``"<milliseconds>-<sequence>"`` strings (Redis stream ids; the in-process ones are made
  the same way) and compare as that pair of integers, never as text (`event_key`). A
  subscription started `after` an id gets the retained events that follow it, then the
  live ones; a subscriber that falls `SUBSCRIBER_QUEUE` events behind is dropped (its
  `get` returns None, `dropped` is set) and resumes with ``subscribe(after=sub.last_id)``.
- Positions: an officer's last kept fix per live session, with radius search. An entry not
  refreshed within its TTL is gone ("geolocation only while active").
- Sessions: which node (id and base URL) holds a live session. A node's claims are
  refreshed by the node itself while it runs; a node that stops lets them expire.
- PTZ holds: who moves each PTZ camera, one holder across every node: a person under
  manual control until a moment, else the live session that took it first (a claim its
  fixes renew). Each check-and-take is one atomic step; a node that cannot reach the shared
  state gets `LiveStateUnavailable` and moves nothing rather than fight over a camera.

Writes (`publish`, `positions.set`, `positions.remove`) are synchronous and queued in order;
reads are awaited and see the same node's earlier writes; `flush` waits for this node's
writes to reach the shared state.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import secrets
import socket
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..clock import iso
from ..config import Config
from ..errors import BadRequest, BodycamError
from ..logs import ids

logger = logging.getLogger(__name__)

REPLAY_EVENTS = 10_000  # kept in process for subscribers that resume
SUBSCRIBER_QUEUE = 1_000
REPLAY_PAGE = 500
BEGINNING = "0-0"  # subscribe(after=BEGINNING): every retained event
EARTH_RADIUS_M = 6372797.560856  # the radius Redis's GEO commands use: same distances
_EVENT_ID = re.compile(r"(\d{1,20})-(\d{1,20})")


class LiveStateUnavailable(BodycamError):
    """The shared live state (Redis) cannot be reached."""

    status = 503


def event_key(event_id: str) -> tuple[int, int]:
    """An event id as the pair it sorts by: "1732262400000-10" comes after "…-9"."""
    match = _EVENT_ID.fullmatch(event_id)
    if match is None:
        raise BadRequest(f"event id: expected <milliseconds>-<sequence>, got {event_id!r}")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    time: datetime
    data: dict[str, Any]
    node: str = ""  # the id of the node that published it

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "time": iso(self.time),
            "node": self.node,
            "data": self.data,
        }


@dataclass(frozen=True)
class Node:
    """A gateway process: its id, and the base URL other nodes send viewers to."""

    id: str
    url: str
    # this process's run of the node (`<id>~<random>`): what holds sessions and segments
    # in the store, so that a restarted node knows what its previous run left
    run: str = field(default="", compare=False)


def this_node(config: Config) -> Node:
    """This process's node, from `node.id` and `node.url` or their defaults."""
    node_id = config.node.id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
    run = f"{node_id}~{secrets.token_hex(3)}"
    if config.node.url:
        return Node(node_id, config.node.url.rstrip("/"), run)
    host = config.server.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.server.tls_cert else "http"
    return Node(node_id, f"{scheme}://{host}:{config.server.port}", run)


@dataclass(frozen=True)
class LivePosition:
    """An officer's last kept fix during a live session."""

    session_id: str
    device_id: str
    lat: float
    lon: float
    accuracy_m: float
    time: datetime  # of the fix
    address: str | None = None


# Events


class Subscription:
    """Events in order: the retained ones after `last_id` first, then the live ones.

    `get` returns None when the subscription ends: dropped for falling behind (`dropped`),
    or closed. `last_id` is the id of the last event returned (or where it started), so
    ``stream.subscribe(after=sub.last_id)`` continues without a gap or a repeat.
    """

    def __init__(
        self, stream: EventStream, after: str | None, queue_size: int = SUBSCRIBER_QUEUE
    ) -> None:
        self._stream = stream
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(queue_size)
        self._replaying = after is not None
        self._replay: deque[Event] = deque()
        self._ended = False
        self.last_id = stream.newest_id() if after is None else after
        self._last = event_key(self.last_id)
        self.dropped = False

    async def get(self) -> Event | None:
        while not self._ended:
            if self._replay:
                return self._take(self._replay.popleft())
            if self._replaying:
                page = await self._stream._after(self.last_id, REPLAY_PAGE)
                if page:
                    self._replay.extend(page)
                    continue
                self._replaying = False  # caught up: the queue has everything since
            event = await self._queue.get()
            if event is None:
                self._ended = True
            elif event_key(event.id) > self._last:  # (not already replayed)
                return self._take(event)
        return None

    def _take(self, event: Event) -> Event:
        self.last_id, self._last = event.id, event_key(event.id)
        return event

    def _offer(self, event: Event) -> bool:
        """Queue a live event; False (and the subscription ends) if the queue is full."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped = True
            self._end()
            return False
        return True

    def _end(self) -> None:
        while not self._queue.empty():  # what was queued will be replayed on resuming
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    def close(self) -> None:
        self._stream._subscribers.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        event = await self.get()
        if event is None:
            raise StopAsyncIteration
        return event


class EventStream(ABC):
    """Publish events; subscribe to every node's events, live or from an id."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._subscribers: set[Subscription] = set()

    @abstractmethod
    def publish(self, type_: str, data: dict[str, Any]) -> None:
        """Queue an event (`data` must be JSON: subscribers get what JSON carries)."""

    @abstractmethod
    def newest_id(self) -> str:
        """The id of the newest event this node has seen (BEGINNING if none)."""

    @abstractmethod
    async def _after(self, event_id: str, count: int) -> list[Event]:
        """Up to `count` retained events with ids greater than `event_id`, oldest first."""

    def subscribe(
        self, after: str | None = None, *, queue_size: int = SUBSCRIBER_QUEUE
    ) -> Subscription:
        """Events from now on, or (`after` an id) the retained events that follow it first."""
        sub = Subscription(self, after, queue_size)
        self._subscribers.add(sub)
        return sub

    def _dispatch(self, event: Event) -> None:
        for sub in list(self._subscribers):
            if not sub._offer(event):
                logger.warning(
                    "event subscriber too slow: dropped at event %s (resumes after %s)",
                    event.id,
                    sub.last_id,
                )
                self._subscribers.discard(sub)

    def _end_subscriptions(self) -> None:
        for sub in list(self._subscribers):
            sub._end()
        self._subscribers.clear()


# Positions


class Positions(ABC):
    """Officers' last kept fixes, per live session; entries not refreshed expire."""

    @abstractmethod
    def set(self, position: LivePosition) -> None:
        """Record (or refresh) a session's position: queued, never waits."""

    @abstractmethod
    def remove(self, session_id: str) -> None:
        """The session is over: forget its position at once."""

    @abstractmethod
    async def get(self, session_id: str) -> LivePosition | None: ...

    @abstractmethod
    async def all(self) -> list[LivePosition]:
        """Every live position, by session id."""

    @abstractmethod
    async def within(
        self, lat: float, lon: float, radius_m: float
    ) -> list[tuple[LivePosition, float]]:
        """Live positions within `radius_m` of a point, with their distance, nearest first."""


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance, as Redis computes it (haversine, the same radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


# Sessions


class SessionRegistry(ABC):
    """Which node holds which live session. This node's claims are refreshed every third of
    `ttl` while it runs; a node that stops (or dies) lets them expire."""

    def __init__(self, node: Node, ttl: float) -> None:
        self.node = node
        self.ttl = ttl
        self._claimed: set[str] = set()
        self._refresher = asyncio.create_task(self._refresh_loop())

    async def claim(self, session_id: str) -> None:
        """This node holds the session now (taking it over from any other)."""
        await self._claim(session_id)
        self._claimed.add(session_id)

    async def release(self, session_id: str) -> None:
        """This node no longer holds the session (a claim taken over since is kept)."""
        self._claimed.discard(session_id)
        await self._release(session_id)

    @abstractmethod
    async def holder(self, session_id: str) -> Node | None:
        """The node holding a session, or None (no node, or its claim expired)."""

    @abstractmethod
    async def _claim(self, session_id: str) -> None: ...

    @abstractmethod
    async def _release(self, session_id: str) -> None: ...

    @abstractmethod
    async def _refresh(self, session_ids: list[str]) -> list[str]:
        """Extend this node's claims; returns the sessions another node has taken over."""

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                lost = await self._refresh(sorted(self._claimed))
            except BodycamError as err:
                logger.warning("session claims not refreshed: %s", err)
                continue
            for session_id in lost:
                logger.info(
                    "session %s: now held by another node",
                    session_id,
                    extra=ids(session_id=session_id),
                )
                self._claimed.discard(session_id)

    async def close(self) -> None:
        """Stop refreshing: this node's claims expire unless released."""
        self._refresher.cancel()
        await asyncio.gather(self._refresher, return_exceptions=True)


# PTZ cameras


@dataclass(frozen=True)
class Control:
    """Manual control of a PTZ camera: automatic aiming leaves it alone until `until`."""

    camera_id: str
    holder: str  # the person (their login name)
    until: datetime
    node: str = ""  # the node that granted it: it announces the end
    since: datetime | None = None  # when this holder's event began (renewals keep it)
    notice: str = ""  # what the national police said when it took the camera

    def to_json(self) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            "holder": self.holder,
            "until": iso(self.until),
            "since": iso(self.since) if self.since else None,
            "notice": self.notice,
        }


@dataclass(frozen=True)
class Follow:
    """What `PtzHolds.follow` found: the camera is the session's to move (`granted`), or
    another session follows it (`session_id`), or a person holds it (`control`)."""

    granted: bool
    session_id: str | None = None
    control: Control | None = None


# A control's record outlives its end by this, so that the node that granted it can still
# tell "ended on time" (it announces that) from "released" or "renewed" (others did).
CONTROL_KEPT = timedelta(seconds=60)


class PtzHolds(ABC):
    """Who moves each PTZ camera, for every node at once.

    A person's manual control comes first: taking it ends any session's claim at once, and
    while it lasts no session gets one. Otherwise the first live session to `follow` a
    camera keeps it while it renews the claim (each fix does) and `ttl` seconds after, or
    until it lets go (`unfollow`, at its end). Manual control ends with `release_control`
    or at its `until`: then `end_expired`, run by the node that granted it, removes it (and
    says so once, whichever node looks).
    """

    @abstractmethod
    async def control(self, camera_id: str, now: datetime) -> Control | None:
        """The manual control in force on a camera, if any."""

    @abstractmethod
    async def take_control(self, control: Control, now: datetime) -> Control:
        """Hold the camera for `control.holder` (renewing one's own hold too) and end any
        session's claim; returns the control in force: `control` when granted, the other
        person's when not."""

    @abstractmethod
    async def release_control(
        self, camera_id: str, holder: str, now: datetime
    ) -> tuple[Control | None, Control | None]:
        """End `holder`'s control; returns (the control ended, the one still in force:
        another person's), either or both None."""

    @abstractmethod
    async def end_expired(self, control: Control, now: datetime) -> bool:
        """Remove `control` if it is still the camera's and its time is up; True if this
        call removed it (so exactly one caller announces the end)."""

    @abstractmethod
    async def follow(self, camera_id: str, session_id: str, now: datetime, ttl: float) -> Follow:
        """Claim (or renew) the camera for a live session, unless a person holds it or
        another session follows it."""

    @abstractmethod
    async def unfollow(self, camera_id: str, session_id: str) -> None:
        """The session lets go of the camera (a claim another session has is kept)."""


class LiveState:
    """One node's handle on the live, shared state."""

    def __init__(
        self,
        node: Node,
        events: EventStream,
        positions: Positions,
        sessions: SessionRegistry,
        ptz: PtzHolds,
    ) -> None:
        self.node = node
        self.events = events
        self.positions = positions
        self.sessions = sessions
        self.ptz = ptz

    async def flush(self) -> None:
        """Wait until this node's queued writes have reached the shared state."""

    async def close(self) -> None:
        await self.sessions.close()
        self.events._end_subscriptions()
