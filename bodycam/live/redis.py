"""Live state in Redis, shared by several gateway nodes (chosen by `redis.url`).

The Redis implementation of `events.LiveState` (DESIGN, "State"): a console on one node sees
what another node published, any node finds where an officer is and which node holds a
session. Key layout, under `redis.key_prefix` (default ``bodycam:``):

``{prefix}events``
    Stream, one entry per event; the entry id is the event id. Fields: ``type``, ``time``
    (ISO 8601, the publisher's clock), ``node`` (the publisher's id), ``data`` (JSON).
    Trimmed by ``XADD … MAXLEN ~ redis.max_events``.
``{prefix}positions``
    GEO set: one member per live session (the session id), at the officer's last kept fix.
``{prefix}position:{session id}``
    Hash: ``device_id``, ``lat``, ``lon``, ``accuracy_m``, ``time`` (of the fix),
    ``address`` ("" for none); expires ``geo.position_ttl_seconds`` after the last fix. A
    member of ``{prefix}positions`` whose hash has expired is stale: reads leave it out and
    remove it (Redis 7.0 has no expiry per set member).
``{prefix}session:{session id}``
    String: JSON ``{"id": …, "url": …}`` of the node holding the session; expires
    ``sessions.claim_ttl_seconds`` after the holder last refreshed it.
``{prefix}ptz-control:{camera id}``
    String: JSON ``{"camera_id", "holder", "until", "until_ms", "node"}``, a person's manual
    control of a PTZ camera. In force until ``until_ms`` (epoch milliseconds, the granting
    node's clock); the key itself lasts `CONTROL_KEPT` longer, for `end_expired`.
``{prefix}ptz-follow:{camera id}``
    String: the id of the live session whose officer the camera follows; expires the claim's
    ``ttl`` after its last renewal. Taking manual control deletes it.

Each node runs one writer task (events and positions, in order, each batch in MULTI/EXEC so
no node sees half a position) and one reader task (XREAD BLOCK on the stream, fanned out to
this node's subscribers). While Redis is unreachable both retry with backoff: the writer
keeps at most `MAX_PENDING` writes (the oldest dropped) and may repeat a batch whose answer
was lost; the reader resumes from the last id it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry  # the asyncio one: redis 8.2 warns at a sync Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT

from ..clock import Clock, iso, parse_iso
from ..errors import ConfigError
from .base import (
    BEGINNING,
    CONTROL_KEPT,
    Control,
    Event,
    EventStream,
    Follow,
    LivePosition,
    LiveState,
    LiveStateUnavailable,
    Node,
    Positions,
    PtzHolds,
    SessionRegistry,
)

logger = logging.getLogger(__name__)

MAX_PENDING = 10_000  # queued writes kept while Redis is unreachable
BATCH = 500  # writes per round trip
READ_COUNT = 500
BLOCK_MS = 5_000
FLUSH_SECONDS = 5.0
CONNECT_SECONDS = 5.0
# A try a second at most while Redis is away: a console must have its live updates back
# within about a second of Redis returning (with a cap of 5 s, a 4 s outage cost 7 s more
# of silence), and a refused connection a second costs a down server nothing.
RETRY_CAP_SECONDS = 1.0

# Stale members (their hash expired) leave the GEO set, unless refreshed meanwhile.
CLEAN = """
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then redis.call('ZREM', KEYS[1], ARGV[i - 1]) end
end
"""
# Extend this node's claims (ARGV[1]: its claim, ARGV[2]: ttl ms); a claim that expired
# meanwhile is made again. Returns the indexes of the keys another node holds now.
REFRESH = """
local lost = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2])
  elseif not holder then redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else table.insert(lost, i) end
end
return lost
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
"""
# PTZ holds. KEYS[1]: the camera's control key, KEYS[2]: its follow key. A control whose
# until_ms has passed is not in force, though its key is still there.
IN_FORCE = """
local function in_force(value, now_ms)
  return value and cjson.decode(value).until_ms > tonumber(now_ms)
end
"""
# ARGV: holder, the control's JSON, ms the key lasts, now ms. Returns the control in force.
TAKE_CONTROL = (
    IN_FORCE
    + """
local current = redis.call('GET', KEYS[1])
if in_force(current, ARGV[4]) and cjson.decode(current).holder ~= ARGV[1] then
  return current
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return ARGV[2]
"""
)
# ARGV: holder, now ms. Returns {'released' | 'other' | 'none', the control's JSON}.
RELEASE_CONTROL = (
    IN_FORCE
    + """
local current = redis.call('GET', KEYS[1])
if not in_force(current, ARGV[2]) then return {'none', ''} end
if cjson.decode(current).holder ~= ARGV[1] then return {'other', current} end
redis.call('DEL', KEYS[1])
return {'released', current}
"""
)
# ARGV: the control's JSON, now ms. 1 if this call removed the control, its time being up.
END_EXPIRED = """
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] or cjson.decode(current).until_ms > tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""
# ARGV: session id, claim ms, now ms. Returns {'granted' | 'other' | 'control', detail}.
FOLLOW = (
    IN_FORCE
    + """
local control = redis.call('GET', KEYS[1])
if in_force(control, ARGV[3]) then return {'control', control} end
local follower = redis.call('GET', KEYS[2])
if follower and follower ~= ARGV[1] then return {'other', follower} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {'granted', ARGV[1]}
"""
)

Write = Callable[[Pipeline], object]
# The client decodes replies to str (decode_responses=True), which redis-py's types cannot
# say: hence the casts on replies.
Entries = list[tuple[str, dict[str, str]]]
Ttls = tuple[float, float]  # positions, claims (seconds)


def _backoff(failures: int) -> float:
    """Seconds to wait after `failures` failed tries in a row."""
    return min(RETRY_CAP_SECONDS, 0.1 * 2.0**failures)


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


class Server:
    """The Redis server as this node uses it: one client, and one task writing the queued
    commands in order (`flush` waits for those queued before it)."""

    def __init__(self, client: redis.Redis, where: str, node: Node) -> None:
        self.client, self.where, self.node = client, where, node
        self._writes: deque[Write] = deque()
        self._queued = 0
        self._done = 0  # written, refused or dropped
        self._dropped = 0
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task = asyncio.create_task(self._run())

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Redis errors become the project's, once, naming the server."""
        try:
            yield
        except RedisError as err:
            raise LiveStateUnavailable(f"Redis at {self.where}: {err}") from err

    def put(self, write: Write) -> None:
        if len(self._writes) >= MAX_PENDING:
            self._writes.popleft()
            self._done += 1
            self._dropped += 1
            if self._dropped % 1000 == 1:
                logger.warning("Redis at %s: write queue full, oldest writes dropped", self.where)
        self._writes.append(write)
        self._queued += 1
        self._wake.set()

    async def flush(self) -> None:
        target = self._queued
        try:
            async with asyncio.timeout(FLUSH_SECONDS), self._progress:
                await self._progress.wait_for(lambda: self._done >= target)
        except TimeoutError:
            raise LiveStateUnavailable(
                f"Redis at {self.where}: writes not acknowledged within {FLUSH_SECONDS:.0f} s"
            ) from None

    async def _run(self) -> None:
        failures = 0
        while True:
            if not self._writes:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._writes.popleft() for _ in range(min(len(self._writes), BATCH))]
            pipe = self.client.pipeline(transaction=True)
            for write in batch:
                write(pipe)
            try:
                results = await pipe.execute(raise_on_error=False)
            except (RedisConnectionError, RedisTimeoutError, OSError) as err:
                self._writes.extendleft(reversed(batch))
                failures += 1
                if failures == 1:
                    logger.warning("Redis at %s: writes waiting: %s", self.where, err)
                await asyncio.sleep(_backoff(failures))
                continue
            except RedisError as err:  # the whole batch refused: retrying cannot help
                results = [err]
            if failures:
                logger.info("Redis at %s: writes resumed after %d tries", self.where, failures)
                failures = 0
            for result in results:
                if isinstance(result, Exception):
                    logger.error("Redis at %s refused a write: %s", self.where, result)
            self._done += len(batch)
            async with self._progress:
                self._progress.notify_all()

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class RedisEvents(EventStream):
    """Events in a Stream; one XREAD BLOCK per node feeds all its subscribers."""

    def __init__(
        self, server: Server, clock: Clock, key: str, max_events: int, newest: str
    ) -> None:
        super().__init__(server.node)
        self._server, self._clock = server, clock
        self._key, self._max_events, self._newest = key, max_events, newest
        self._reader = asyncio.create_task(self._read())

    def publish(self, type_: str, data: dict[str, Any]) -> None:
        fields: dict[FieldT, EncodableT] = {
            "type": type_,
            "time": iso(self._clock.now()),
            "node": self.node.id,
            "data": json.dumps(data, ensure_ascii=False),
        }
        key, max_events = self._key, self._max_events
        self._server.put(lambda pipe: pipe.xadd(key, fields, maxlen=max_events))  # ~ MAXLEN

    def newest_id(self) -> str:
        return self._newest

    async def _after(self, event_id: str, count: int) -> list[Event]:
        with self._server.errors():
            entries = await self._server.client.xrange(self._key, min=f"({event_id}", count=count)
        decoded = (self._decode(i, f) for i, f in cast(Entries, entries or []))
        return [e for e in decoded if e is not None]

    async def _read(self) -> None:
        failures = 0
        while True:
            try:
                reply = await self._server.client.xread(
                    {self._key: self._newest}, count=READ_COUNT, block=BLOCK_MS
                )
            except (RedisError, OSError) as err:
                failures += 1
                if failures == 1:
                    logger.warning("Redis at %s: events not received: %s", self._server.where, err)
                await asyncio.sleep(_backoff(failures))
                continue
            if failures:
                logger.info("Redis at %s: events received again", self._server.where)
                failures = 0
            for _, entries in cast(list[tuple[str, Entries]], reply or []):
                for entry_id, fields in entries:
                    self._newest = entry_id
                    if (event := self._decode(entry_id, fields)) is not None:
                        self._dispatch(event)

    def _decode(self, entry_id: str, fields: dict[str, str]) -> Event | None:
        try:
            return Event(
                entry_id,
                fields["type"],
                parse_iso(fields["time"]),
                json.loads(fields["data"]),
                fields.get("node", ""),
            )
        except (KeyError, ValueError) as err:
            logger.warning(
                "event %s in %s is not bodycam's (%r): skipped", entry_id, self._key, err
            )
            return None

    async def stop(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


class RedisPositions(Positions):
    """A GEO set of live sessions, and one expiring hash per session."""

    def __init__(self, server: Server, prefix: str, ttl: float) -> None:
        self._server = server
        self._geo, self._prefix = f"{prefix}positions", f"{prefix}position:"
        self._ttl_ms = max(1, round(ttl * 1000))
        self._clean = server.client.register_script(CLEAN)

    def set(self, position: LivePosition) -> None:
        key, geo, ttl_ms = self._prefix + position.session_id, self._geo, self._ttl_ms
        fields: dict[FieldT, EncodableT] = {
            "device_id": position.device_id,
            "lat": repr(position.lat),
            "lon": repr(position.lon),
            "accuracy_m": repr(position.accuracy_m),
            "time": iso(position.time),
            "address": position.address or "",
        }

        def write(pipe: Pipeline) -> None:
            pipe.hset(key, mapping=fields)
            pipe.pexpire(key, ttl_ms)
            pipe.geoadd(geo, (position.lon, position.lat, position.session_id))

        self._server.put(write)

    def remove(self, session_id: str) -> None:
        key, geo = self._prefix + session_id, self._geo

        def write(pipe: Pipeline) -> None:
            pipe.delete(key)
            pipe.zrem(geo, session_id)

        self._server.put(write)

    async def get(self, session_id: str) -> LivePosition | None:
        await self._server.flush()
        with self._server.errors():
            fields = cast(
                dict[str, str], await self._server.client.hgetall(self._prefix + session_id)
            )
        return _position(session_id, fields) if fields else None

    async def all(self) -> list[LivePosition]:
        await self._server.flush()
        with self._server.errors():
            members = cast(list[str], await self._server.client.zrange(self._geo, 0, -1))
        found = await self._load(members)
        return sorted((p for p in found if p is not None), key=lambda p: p.session_id)

    async def within(
        self, lat: float, lon: float, radius_m: float
    ) -> list[tuple[LivePosition, float]]:
        await self._server.flush()
        with self._server.errors():
            reply = await self._server.client.geosearch(
                self._geo, longitude=lon, latitude=lat, radius=radius_m, sort="ASC", withdist=True
            )
        near = cast(list[tuple[str, float]], reply)
        found = await self._load([member for member, _ in near])
        return [(p, d) for p, (_, d) in zip(found, near, strict=True) if p is not None]

    async def _load(self, members: list[str]) -> list[LivePosition | None]:
        """The positions of GEO set members, None for the stale ones (removed on the way)."""
        if not members:
            return []
        with self._server.errors():
            async with self._server.client.pipeline(transaction=False) as pipe:
                for member in members:
                    pipe.hgetall(self._prefix + member)
                replies = cast(list[dict[str, str]], await pipe.execute())
            stale = [m for m, fields in zip(members, replies, strict=True) if not fields]
            if stale:
                await self._clean(keys=[self._geo, *(self._prefix + m for m in stale)], args=stale)
        return [
            _position(m, fields) if fields else None
            for m, fields in zip(members, replies, strict=True)
        ]


def _position(session_id: str, fields: dict[str, str]) -> LivePosition:
    return LivePosition(
        session_id,
        fields["device_id"],
        float(fields["lat"]),
        float(fields["lon"]),
        float(fields["accuracy_m"]),
        parse_iso(fields["time"]),
        fields["address"] or None,
    )


class RedisSessions(SessionRegistry):
    """One expiring string per session: the node holding it."""

    def __init__(self, server: Server, prefix: str, ttl: float) -> None:
        super().__init__(server.node, ttl)
        self._server, self._prefix = server, f"{prefix}session:"
        self._value = json.dumps({"id": server.node.id, "url": server.node.url})
        self._ttl_ms = max(1, round(ttl * 1000))
        self._refresh_script = server.client.register_script(REFRESH)
        self._release_script = server.client.register_script(RELEASE)

    async def holder(self, session_id: str) -> Node | None:
        with self._server.errors():
            value = await self._server.client.get(self._prefix + session_id)
        if value is None:
            return None
        node = json.loads(value)
        return Node(node["id"], node["url"])

    async def _claim(self, session_id: str) -> None:
        with self._server.errors():
            await self._server.client.set(self._prefix + session_id, self._value, px=self._ttl_ms)

    async def _release(self, session_id: str) -> None:
        with self._server.errors():
            await self._release_script(keys=[self._prefix + session_id], args=[self._value])

    async def _refresh(self, session_ids: list[str]) -> list[str]:
        if not session_ids:
            return []
        keys = [self._prefix + s for s in session_ids]
        with self._server.errors():
            lost = await self._refresh_script(keys=keys, args=[self._value, self._ttl_ms])
        return [session_ids[int(i) - 1] for i in lost]


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _control_json(control: Control) -> str:
    return json.dumps(
        {
            "camera_id": control.camera_id,
            "holder": control.holder,
            "until": iso(control.until),
            "until_ms": _ms(control.until),
            "node": control.node,
            "since": iso(control.since) if control.since else None,
            "notice": control.notice,
        }
    )


def _control(value: str) -> Control:
    data = json.loads(value)
    since = data.get("since")
    return Control(
        data["camera_id"],
        data["holder"],
        parse_iso(data["until"]),
        data["node"],
        parse_iso(since) if since else None,
        data.get("notice", ""),
    )


class RedisPtz(PtzHolds):
    """Two keys per PTZ camera (its manual control, the session following it), each check
    and take one Lua script."""

    def __init__(self, server: Server, prefix: str) -> None:
        self._server, self._prefix = server, prefix
        client = server.client
        self._take = client.register_script(TAKE_CONTROL)
        self._release = client.register_script(RELEASE_CONTROL)
        self._end = client.register_script(END_EXPIRED)
        self._follow = client.register_script(FOLLOW)
        self._unfollow = client.register_script(RELEASE)

    def _keys(self, camera_id: str) -> list[str]:
        return [f"{self._prefix}ptz-control:{camera_id}", f"{self._prefix}ptz-follow:{camera_id}"]

    async def control(self, camera_id: str, now: datetime) -> Control | None:
        with self._server.errors():
            value = cast(str | None, await self._server.client.get(self._keys(camera_id)[0]))
        if value is None:
            return None
        control = _control(value)
        return control if control.until > now else None

    async def take_control(self, control: Control, now: datetime) -> Control:
        value = _control_json(control)
        lasts = max(1, _ms(control.until + CONTROL_KEPT) - _ms(now))
        args: list[EncodableT] = [control.holder, value, lasts, _ms(now)]
        with self._server.errors():
            current = await self._take(keys=self._keys(control.camera_id), args=args)
        return control if current == value else _control(current)

    async def release_control(
        self, camera_id: str, holder: str, now: datetime
    ) -> tuple[Control | None, Control | None]:
        with self._server.errors():
            what, value = await self._release(keys=self._keys(camera_id), args=[holder, _ms(now)])
        if what == "released":
            return _control(value), None
        return None, _control(value) if what == "other" else None

    async def end_expired(self, control: Control, now: datetime) -> bool:
        keys = self._keys(control.camera_id)[:1]
        with self._server.errors():
            return bool(await self._end(keys=keys, args=[_control_json(control), _ms(now)]))

    async def follow(self, camera_id: str, session_id: str, now: datetime, ttl: float) -> Follow:
        args: list[EncodableT] = [session_id, max(1, round(ttl * 1000)), _ms(now)]
        with self._server.errors():
            what, detail = await self._follow(keys=self._keys(camera_id), args=args)
        if what == "granted":
            return Follow(True, session_id=session_id)
        if what == "control":
            return Follow(False, control=_control(detail))
        return Follow(False, session_id=detail)

    async def unfollow(self, camera_id: str, session_id: str) -> None:
        with self._server.errors():
            await self._unfollow(keys=self._keys(camera_id)[1:], args=[session_id])


class RedisLive(LiveState):
    """Live state on a Redis server, shared with every node configured with the same one."""

    def __init__(self, server: Server, events: RedisEvents, prefix: str, ttls: Ttls) -> None:
        super().__init__(
            server.node,
            events,
            RedisPositions(server, prefix, ttls[0]),
            RedisSessions(server, prefix, ttls[1]),
            RedisPtz(server, prefix),
        )
        self._server, self._events = server, events
        self._closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        node: Node,
        clock: Clock,
        *,
        prefix: str,
        max_events: int,
        position_ttl: float,
        claim_ttl: float,
    ) -> RedisLive:
        """Connect, or say which server could not be reached and how to choose another."""
        where = redacted(url)
        try:
            client = redis.from_url(
                url,
                decode_responses=True,
                socket_connect_timeout=CONNECT_SECONDS,
                retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 2),
            )
        except ValueError as err:
            raise ConfigError(f"redis.url: {err}, got {where!r}") from None
        key = f"{prefix}events"
        try:
            await client.ping()
            newest = cast(Entries, await client.xrevrange(key, count=1))
        except (RedisError, OSError) as err:
            await client.aclose()
            raise LiveStateUnavailable(
                f"Redis at {where} is unreachable ({err}): start it, or choose another with"
                " redis.url (BODYCAM_REDIS_URL, --redis), or leave that empty to keep the live"
                " state in this process"
            ) from None
        server = Server(client, where, node)
        newest_id = newest[0][0] if newest else BEGINNING
        events = RedisEvents(server, clock, key, max_events, newest_id)
        logger.info("live state in Redis at %s (keys %s*), node %s", where, prefix, node.id)
        return cls(server, events, prefix, (position_ttl, claim_ttl))

    async def flush(self) -> None:
        await self._server.flush()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await super().close()
        await self._events.stop()
        try:
            await self._server.flush()
        except LiveStateUnavailable as err:
            logger.warning("%s: the last events and positions are lost", err)
        await self._server.stop()
        await self._server.client.aclose()
