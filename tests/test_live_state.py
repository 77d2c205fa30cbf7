"""Live, shared state: one suite, run in process and against the real Redis.

Each case makes one or two nodes on the same shared state (one `MemoryHub`, or one Redis
key prefix) and checks what a console or another gateway node relies on: events in order
everywhere, replay after an id, slow subscribers dropped and resumed, live positions with
radius search and expiry, which node holds which session. Redis runs need a server at
127.0.0.1:6379 (`TEST_REDIS_URL` names another: not a BODYCAM_ variable, which bodycam
would read as configuration); without one they are skipped, except in CI, where they fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import redis.asyncio
from aiohttp.test_utils import TestServer

from bodycam.cli import build_parser, load_config
from bodycam.clock import SystemClock
from bodycam.config import Config
from bodycam.errors import BadRequest, ConfigError
from bodycam.gateway.app import create_app
from bodycam.gateway.appkeys import live_key, tracker_key
from bodycam.live.base import (
    BEGINNING,
    Control,
    Event,
    Follow,
    LivePosition,
    LiveState,
    LiveStateUnavailable,
    Node,
    Subscription,
    distance_m,
    event_key,
    this_node,
)
from bodycam.live.memory import MemoryHub, MemoryLive
from bodycam.live.redis import RedisLive
from bodycam.models import Device, Position

from .helpers import REDIS_URL, delete_keys, make_config, require_redis

WHEN = datetime(2026, 11, 22, 5, 0, 0, 123_000, tzinfo=UTC)  # ms: what ISO 8601 keeps

MakeNode = Callable[..., Awaitable[LiveState]]


@pytest.fixture(params=["memory", "redis"])
async def make_node(request: pytest.FixtureRequest) -> AsyncIterator[MakeNode]:
    """Make nodes sharing one live state: `await make_node("node-a", claim_ttl=…)`."""
    kind = request.param
    clock = SystemClock()
    hub = MemoryHub(clock)
    prefix = f"bodycam-test:{uuid.uuid4().hex}:"
    nodes: list[LiveState] = []
    if kind == "redis":
        require_redis()

    async def make(name: str, position_ttl: float = 60.0, claim_ttl: float = 30.0) -> LiveState:
        node = Node(name, f"http://{name}.test:8080")
        live: LiveState
        if kind == "memory":
            live = MemoryLive(node, clock, position_ttl=position_ttl, claim_ttl=claim_ttl, hub=hub)
        else:
            live = await RedisLive.connect(
                REDIS_URL,
                node,
                clock,
                prefix=prefix,
                max_events=10_000,
                position_ttl=position_ttl,
                claim_ttl=claim_ttl,
            )
        nodes.append(live)
        return live

    yield make
    for live in nodes:
        await live.close()
    if kind == "redis":
        await delete_keys(prefix)


async def take(subscription: Subscription, count: int) -> list[Event]:
    async with asyncio.timeout(5):
        events = [await subscription.get() for _ in range(count)]
    assert None not in events, "the subscription ended early"
    return [e for e in events if e is not None]


async def nothing_more(subscription: Subscription) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await subscription.get()


def numbers(events: list[Event]) -> list[int]:
    return [e.data["n"] for e in events]


# events


async def test_events_reach_two_subscribers_in_order(make_node: MakeNode) -> None:
    a = await make_node("node-a")
    first, second = a.events.subscribe(), a.events.subscribe()
    for n in range(50):
        a.events.publish("tick", {"n": n, "nested": {"list": [n, "é"]}})
    one, two = await take(first, 50), await take(second, 50)
    assert numbers(one) == numbers(two) == list(range(50))
    assert [e.id for e in one] == [e.id for e in two]
    keys = [event_key(e.id) for e in one]
    assert keys == sorted(keys)
    assert len(set(keys)) == 50
    assert {(e.type, e.node) for e in one} == {("tick", "node-a")}
    assert one[7].data == {"n": 7, "nested": {"list": [7, "é"]}}
    assert one[0].to_json()["node"] == "node-a"
    assert one[0].to_json()["id"] == one[0].id


async def test_resuming_after_an_id_replays_exactly_what_followed(make_node: MakeNode) -> None:
    a = await make_node("node-a")
    live = a.events.subscribe()
    for n in range(10):
        a.events.publish("tick", {"n": n})
    seen = await take(live, 10)
    resumed = a.events.subscribe(after=seen[3].id)
    assert numbers(await take(resumed, 6)) == [4, 5, 6, 7, 8, 9]
    a.events.publish("tick", {"n": 10})
    await a.flush()
    await take(live, 1)  # delivered: in the resumed queue, and in what it replays
    assert numbers(await take(resumed, 1)) == [10]  # then live, without repeats
    await nothing_more(resumed)
    everything = a.events.subscribe(after=BEGINNING)
    assert numbers(await take(everything, 11)) == list(range(11))
    assert everything.last_id == live.last_id


async def test_a_malformed_event_id_is_refused(make_node: MakeNode) -> None:
    a = await make_node("node-a")
    with pytest.raises(BadRequest, match="expected <milliseconds>-<sequence>, got 'yesterday'"):
        a.events.subscribe(after="yesterday")


async def test_events_of_another_node_reach_this_nodes_subscribers(make_node: MakeNode) -> None:
    a, b = await make_node("node-a"), await make_node("node-b")
    on_a, on_b = a.events.subscribe(), b.events.subscribe()
    b.events.publish("alert", {"n": 1})
    a.events.publish("alert", {"n": 2})
    b.events.publish("alert", {"n": 3})
    seen_on_a, seen_on_b = await take(on_a, 3), await take(on_b, 3)
    assert {(e.node, e.data["n"]) for e in seen_on_a} == {
        ("node-b", 1),
        ("node-a", 2),
        ("node-b", 3),
    }
    assert [e.id for e in seen_on_a] == [e.id for e in seen_on_b]  # one order for all
    assert numbers([e for e in seen_on_a if e.node == "node-b"]) == [1, 3]


async def test_a_slow_subscriber_is_dropped_and_resumes_without_loss(
    make_node: MakeNode,
) -> None:
    a = await make_node("node-a")
    fast = a.events.subscribe()
    slow = a.events.subscribe(queue_size=10)
    for n in range(5):
        a.events.publish("tick", {"n": n})
    read = await take(slow, 5)  # then it stops reading
    started = time.perf_counter()
    for n in range(5, 105):
        a.events.publish("tick", {"n": n})
    assert time.perf_counter() - started < 0.1  # the publisher never waited
    assert numbers(await take(fast, 105)) == list(range(105))
    async with asyncio.timeout(5):
        assert await slow.get() is None
    assert slow.dropped
    assert slow.last_id == read[-1].id
    assert not fast.dropped
    resumed = a.events.subscribe(after=slow.last_id)
    assert numbers(await take(resumed, 100)) == list(range(5, 105))
    await nothing_more(resumed)


# positions


def position(session_id: str, lat: float, lon: float) -> LivePosition:
    return LivePosition(
        session_id, f"cam-{session_id}", lat, lon, 8.5, WHEN, "Rue Serpenoise, 12 m"
    )


async def test_positions_set_get_list_and_remove(make_node: MakeNode) -> None:
    a, b = await make_node("node-a"), await make_node("node-b")
    one = position("s1", 49.119612345678, 6.175712345678)
    two = dataclasses.replace(position("s2", 49.1210, 6.1780), address=None, accuracy_m=12.0)
    a.positions.set(one)
    a.positions.set(two)
    assert await a.positions.get("s1") == one  # exact, as set
    assert await a.positions.all() == [one, two]
    await a.flush()
    assert await b.positions.all() == [one, two]  # another node sees them
    moved = dataclasses.replace(one, lat=49.1200, time=WHEN.replace(second=5))
    b.positions.set(moved)
    await b.flush()
    assert await a.positions.get("s1") == moved
    a.positions.remove("s1")
    assert await a.positions.get("s1") is None
    assert await a.positions.all() == [two]
    assert await a.positions.get("never") is None


async def test_positions_within_a_radius_nearest_first(make_node: MakeNode) -> None:
    a = await make_node("node-a")
    lat, lon = 49.1200, 6.1800
    metre = 1 / 111_195  # of latitude
    north = position("north", lat + 100 * metre, lon)
    east = position("east", lat, lon + 300 * metre / 0.6544)  # cos(49.12°)
    far = position("far", lat + 2_000 * metre, lon)
    for p in (far, east, north):
        a.positions.set(p)
    found = await a.positions.within(lat, lon, 500)
    assert [p.session_id for p, _ in found] == ["north", "east"]
    for p, distance in found:
        assert distance == pytest.approx(distance_m(lat, lon, p.lat, p.lon), abs=1.0)
    assert found[0][1] == pytest.approx(100, abs=1.5)
    assert found[1][1] == pytest.approx(300, abs=3)
    assert [p.session_id for p, _ in await a.positions.within(lat, lon, 50)] == []
    a.positions.remove("north")
    assert [p.session_id for p, _ in await a.positions.within(lat, lon, 5_000)] == [
        "east",
        "far",
    ]


async def test_positions_expire_unless_refreshed(make_node: MakeNode) -> None:
    a = await make_node("node-a", position_ttl=1.0)
    b = await make_node("node-b", position_ttl=1.0)
    one, two = position("s1", 49.12, 6.18), position("s2", 49.1201, 6.18)
    a.positions.set(one)
    a.positions.set(two)
    await asyncio.sleep(0.6)
    a.positions.set(two)  # a new fix for s2 only
    await a.flush()
    await asyncio.sleep(0.6)  # s1: 1.2 s old, s2: 0.6 s
    assert await b.positions.get("s1") is None
    assert await b.positions.all() == [two]
    assert [p.session_id for p, _ in await b.positions.within(49.12, 6.18, 100)] == ["s2"]


async def test_redis_forgets_stale_members_of_the_geo_set() -> None:
    require_redis()
    prefix = f"bodycam-test:{uuid.uuid4().hex}:"
    live = await RedisLive.connect(
        REDIS_URL,
        Node("node-a", "http://node-a.test:8080"),
        SystemClock(),
        prefix=prefix,
        max_events=1000,
        position_ttl=0.2,
        claim_ttl=30,
    )
    try:
        live.positions.set(position("s1", 49.12, 6.18))
        await live.flush()
        async with redis.asyncio.Redis.from_url(REDIS_URL) as client:
            assert await client.zscore(f"{prefix}positions", "s1") is not None
            await asyncio.sleep(0.4)
            assert await live.positions.within(49.12, 6.18, 100) == []
            assert await client.zscore(f"{prefix}positions", "s1") is None
    finally:
        await live.close()
        await delete_keys(prefix)


# which node holds which session


async def test_a_session_is_held_by_one_node_at_a_time(make_node: MakeNode) -> None:
    a = await make_node("node-a", claim_ttl=0.6)  # refreshes every 0.2 s
    b = await make_node("node-b", claim_ttl=30)  # not before 10 s
    assert await b.sessions.holder("s1") is None
    await a.sessions.claim("s1")
    assert await b.sessions.holder("s1") == Node("node-a", "http://node-a.test:8080")
    await b.sessions.claim("s1")  # the camera came back through node b
    await asyncio.sleep(0.5)  # node a's refresh must not take it back
    assert await a.sessions.holder("s1") == b.node
    await a.sessions.release("s1")  # a late release by node a keeps node b's claim
    assert await a.sessions.holder("s1") == b.node
    await b.sessions.release("s1")
    assert await a.sessions.holder("s1") is None
    assert await b.sessions.holder("s1") is None


async def test_claims_live_with_their_node_and_expire_after_it(make_node: MakeNode) -> None:
    a = await make_node("node-a", claim_ttl=0.6)
    b = await make_node("node-b", claim_ttl=0.6)
    await a.sessions.claim("s1")
    await asyncio.sleep(1.3)  # over two TTLs: node a's refreshes keep it
    assert await b.sessions.holder("s1") == a.node
    await a.close()  # stops refreshing, as a node that dies
    assert await b.sessions.holder("s1") == a.node
    await asyncio.sleep(0.9)
    assert await b.sessions.holder("s1") is None


# the gateway


# PTZ holds


async def test_a_person_holds_a_ptz_camera_against_every_node(make_node: MakeNode) -> None:
    a, b = await make_node("node-a"), await make_node("node-b")
    now = WHEN
    dupont = Control("ptz-1", "dupont", now + timedelta(seconds=60), "node-a")
    assert await a.ptz.take_control(dupont, now) == dupont
    assert await b.ptz.control("ptz-1", now) == dupont  # the other node sees it
    assert await b.ptz.control("ptz-2", now) is None
    martin = Control("ptz-1", "martin", now + timedelta(seconds=60), "node-b")
    assert await b.ptz.take_control(martin, now) == dupont  # refused: dupont has it
    renewed = Control("ptz-1", "dupont", now + timedelta(seconds=120), "node-b")
    assert await b.ptz.take_control(renewed, now) == renewed  # one's own, from any node
    assert await a.ptz.release_control("ptz-1", "martin", now) == (None, renewed)
    assert await a.ptz.release_control("ptz-1", "dupont", now) == (renewed, None)
    assert await b.ptz.control("ptz-1", now) is None
    assert await b.ptz.release_control("ptz-1", "dupont", now) == (None, None)
    # after its end a control is no one's, and only the end of the one in force counts
    assert await a.ptz.take_control(dupont, now) == dupont
    later = now + timedelta(seconds=61)
    assert await b.ptz.control("ptz-1", later) is None
    assert not await a.ptz.end_expired(renewed, later)  # not that one
    assert not await a.ptz.end_expired(dupont, now)  # not yet
    assert await a.ptz.end_expired(dupont, later)
    assert not await b.ptz.end_expired(dupont, later)  # said once
    martin = Control("ptz-1", "martin", later + timedelta(seconds=60), "node-b")
    assert await b.ptz.take_control(martin, later) == martin  # free again


async def test_a_ptz_camera_follows_the_first_session_until_a_person_takes_it(
    make_node: MakeNode,
) -> None:
    a, b = await make_node("node-a"), await make_node("node-b")
    now = WHEN
    assert await a.ptz.follow("ptz-1", "s1", now, 30) == Follow(True, session_id="s1")
    assert await b.ptz.follow("ptz-1", "s2", now, 30) == Follow(False, session_id="s1")
    assert await a.ptz.follow("ptz-1", "s1", now, 30) == Follow(True, session_id="s1")  # renewed
    await b.ptz.unfollow("ptz-1", "s2")  # not s2's: kept
    assert await b.ptz.follow("ptz-1", "s2", now, 30) == Follow(False, session_id="s1")
    await a.ptz.unfollow("ptz-1", "s1")
    assert await b.ptz.follow("ptz-1", "s2", now, 30) == Follow(True, session_id="s2")
    # a person takes it: s2 loses it at once, and no session gets it while the control lasts
    dupont = Control("ptz-1", "dupont", now + timedelta(seconds=60), "node-a")
    assert await a.ptz.take_control(dupont, now) == dupont
    assert await b.ptz.follow("ptz-1", "s2", now, 30) == Follow(False, control=dupont)
    assert await a.ptz.follow("ptz-1", "s1", now, 30) == Follow(False, control=dupont)
    after = now + timedelta(seconds=61)
    assert await a.ptz.follow("ptz-1", "s1", after, 30) == Follow(True, session_id="s1")


async def test_a_follow_claim_ends_by_itself(make_node: MakeNode) -> None:
    a, b = await make_node("node-a"), await make_node("node-b")
    assert (await a.ptz.follow("ptz-1", "s1", SystemClock().now(), 0.2)).granted
    assert not (await b.ptz.follow("ptz-1", "s2", SystemClock().now(), 30)).granted
    await asyncio.sleep(0.3)  # node A died: its session's claim goes without it
    assert (await b.ptz.follow("ptz-1", "s2", SystemClock().now(), 30)).granted


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_the_trackers_kept_fixes_are_live_positions(kind: str, tmp_path: Path) -> None:
    prefix = f"bodycam-test:{uuid.uuid4().hex}:"
    if kind == "redis":
        require_redis()
        config = make_config(tmp_path / "data", redis_url=REDIS_URL, redis_key_prefix=prefix)
    else:
        config = make_config(tmp_path / "data")
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        assert server.app is not None
        live, tracker = server.app[live_key], server.app[tracker_key]
        assert live.node.url == f"http://127.0.0.1:{config.server.port}"
        subscription = live.events.subscribe()
        now = SystemClock().now()
        fix = Position(
            49.1196, 6.1757, 9.0, now.replace(microsecond=now.microsecond // 1000 * 1000)
        )
        tracker.fix("session-7", Device("cam-7", "Brigadier Martin", WHEN), fix)
        assert await live.positions.get("session-7") == LivePosition(
            "session-7", "cam-7", 49.1196, 6.1757, 9.0, fix.time
        )
        [event] = await take(subscription, 1)
        assert event.type == "position"
        assert event.node == live.node.id
        assert event.data["session_id"] == "session-7"
        tracker.end("session-7")
        assert await live.positions.get("session-7") is None
    finally:
        await server.close()
        if kind == "redis":
            await delete_keys(prefix)


async def test_the_gateway_names_the_redis_it_cannot_reach(tmp_path: Path) -> None:
    # nothing listens on port 1
    config = make_config(tmp_path / "data", redis_url="redis://:hunter2@127.0.0.1:1/0")
    server = TestServer(create_app(config), host="127.0.0.1")
    with pytest.raises(LiveStateUnavailable) as caught:
        await server.start_server()
    await server.close()
    message = str(caught.value)
    assert "Redis at redis://:***@127.0.0.1:1/0 is unreachable" in message
    assert "BODYCAM_REDIS_URL" in message
    assert "hunter2" not in message


def test_redis_is_chosen_by_file_environment_or_flag(tmp_path: Path) -> None:
    assert Config.load(None, environ={}).redis.url == ""  # in process by default
    path = tmp_path / "bodycam.toml"
    path.write_text('[redis]\nurl = "redis://127.0.0.1:6379/1"\nkey_prefix = "metz:"\n')
    from_file = Config.load(path, environ={})
    assert (from_file.redis.url, from_file.redis.key_prefix) == (
        "redis://127.0.0.1:6379/1",
        "metz:",
    )
    from_env = Config.load(path, environ={"BODYCAM_REDIS_URL": "redis://127.0.0.1:6379/2"})
    assert from_env.redis.url == "redis://127.0.0.1:6379/2"
    for command in ("serve", "demo"):
        args = build_parser().parse_args([command, "--redis", "redis://127.0.0.1:6379/3"])
        assert load_config(args).redis.url == "redis://127.0.0.1:6379/3"
    with pytest.raises(ConfigError, match=r"redis\.url: must start with redis://"):
        Config.load(None, environ={"BODYCAM_REDIS_URL": "127.0.0.1:6379"})


def test_a_node_is_named_and_reachable_by_default() -> None:
    config = Config.load(None, environ={"BODYCAM_SERVER_PORT": "8443"})
    node = this_node(config)
    assert node.url == "http://127.0.0.1:8443"
    assert node.id != this_node(config).id  # two gateways in one process differ
    named = Config.load(
        None, environ={"BODYCAM_NODE_ID": "gw-2", "BODYCAM_NODE_URL": "https://gw-2.csu/"}
    )
    assert this_node(named) == Node("gw-2", "https://gw-2.csu")
