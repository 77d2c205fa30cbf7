"""Failover: the node a camera streams to is killed with kill -9, and the officer does not
notice. Two real `bodycam serve` processes on one PostgreSQL, one Redis and one shared data
folder (recordings, keys), a simulated body camera that knows both nodes' URLs.

The camera hears no more RTCP from node A, goes to node B, and B takes the session over
(same session id, new segments, the gap in the register); B's keeper declares A dead and
seals the segment A was writing; the console on B sees the alert through; the register
is one chain and `sessions verify` passes for the whole session, across both nodes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bodycam import devices
from bodycam.clock import SystemClock
from bodycam.models import Action, EndReason, SessionState
from bodycam.store import PostgresStore, Store
from simulators.axis_bodycam import AxisBodycam
from simulators.whip import WhipError

from .helpers import (
    REDIS_URL,
    Gateway,
    add_login,
    delete_keys,
    free_port,
    node_pair,
    require_redis,
    serve_process,
    small_media,
    wait_for,
    wait_for_session,
    wait_for_store,
)

LIVE_ON_A = 5.0  # seconds streamed to A before it is killed


class Cluster:
    """Two gateway processes sharing everything that must be shared."""

    def __init__(self, tmp: Path, store_url: str, prefix: str) -> None:
        self.data = tmp / "shared"
        self.data.mkdir()
        self.log = tmp / "gateways.log"
        self.store_url = store_url
        self.environ = {
            "BODYCAM_STORE_URL": store_url,
            "BODYCAM_REDIS_URL": REDIS_URL,
            "BODYCAM_REDIS_KEY_PREFIX": prefix,
            "BODYCAM_RECORDING_SEGMENT_SECONDS": "2",
            "BODYCAM_NODE_HEARTBEAT_SECONDS": "0.5",
            "BODYCAM_NODE_DEAD_AFTER_SECONDS": "2",
        }
        self.ports = {"a": free_port(), "b": free_port()}
        self.processes: dict[str, asyncio.subprocess.Process] = {}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    async def start(self, name: str) -> None:
        self.processes[name] = await serve_process(
            self.data,
            self.ports[name],
            self.log,
            BODYCAM_NODE_ID=f"node-{name}",
            BODYCAM_NODE_URL=self.url(name),
            **self.environ,
        )

    async def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        await process.wait()

    async def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            await asyncio.wait_for(process.wait(), 20)
        self.processes.clear()

    def bodycam(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The command line, on the cluster's database and folder."""
        return subprocess.run(
            [sys.executable, "-m", "bodycam", *args, "--data-dir", str(self.data)],
            env={**os.environ, "BODYCAM_STORE_URL": self.store_url},
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
async def cluster(tmp_path: Path, postgres_url: str) -> AsyncIterator[Cluster]:
    require_redis()
    prefix = f"bodycam-test:{uuid.uuid4().hex}:"
    cluster = Cluster(tmp_path, postgres_url, prefix)
    try:
        yield cluster
    finally:
        await cluster.stop()
        await delete_keys(prefix)


async def open_cluster_store(url: str) -> Store:
    return await asyncio.to_thread(PostgresStore, url)


class ConsoleFeed:
    """The console's WebSocket on one node: every alert it was shown."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.alerts: list[dict[str, Any]] = []
        self.closed = False

    async def read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if data["type"] == "snapshot":
                self.alerts.extend(data.get("alerts", []))
            elif data["type"] == "alert":
                self.alerts.append(data["data"])
        self.closed = True

    def of(self, session_id: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["session_id"] == session_id]


async def test_the_node_a_camera_streams_to_is_killed_and_the_session_goes_on(
    cluster: Cluster,
) -> None:
    store = await open_cluster_store(cluster.store_url)
    try:
        token = await store.run(devices.enroll, store, "cam-1", "Agent Martin", SystemClock().now())
        login = await add_login(store, "dupont", "operator")
        await cluster.start("a")
        await cluster.start("b")
        camera = AxisBodycam(
            f"{cluster.url('a')},{cluster.url('b')}", "cam-1", token, media=small_media()
        )
        async with aiohttp.ClientSession() as http, camera:
            ws = await http.ws_connect(
                f"{cluster.url('b')}/ui/ws", headers={"Authorization": f"Bearer {login}"}
            )
            console = ConsoleFeed(ws)
            reader = asyncio.create_task(console.read())
            await camera.press()
            [session] = await store.run(store.list_sessions)
            assert session.node.startswith("node-a~")
            await asyncio.sleep(LIVE_ON_A)
            await cluster.kill("a")
            killed = time.monotonic()

            # the camera hears A no more, publishes to B, and B takes the session over
            def on_b(s: Store) -> bool:
                held = s.get_session(session.id)
                return held is not None and held.node.startswith("node-b~")

            await wait_for_store(store, on_b, within=20)
            taken_over = time.monotonic() - killed
            await wait_for(lambda: camera.state == "live", within=10)
            assert camera.endpoint.startswith(cluster.url("b"))

            # B records the session; A's last segment is sealed once A is known dead
            def recorded_by_b_and_sealed_for_a(s: Store) -> bool:
                segments = s.segments_of(session.id)
                by_a = {g.node for g in segments if g.node.startswith("node-a~")}
                by_b = [g for g in segments if g.node.startswith("node-b~")]
                return bool(by_b) and not s.open_segments(sorted(by_a))

            await wait_for_store(store, recorded_by_b_and_sealed_for_a, within=20)
            await camera.press()  # the officer stops: through B
            await wait_for_store(
                store,
                lambda s: (
                    (held := s.get_session(session.id)) is not None
                    and held.state == SessionState.ENDED
                ),
                within=10,
            )
            await asyncio.sleep(0.5)  # the last alert reaches the console
            await ws.close()
            await asyncio.wait_for(reader, 5)
        await cluster.stop()

        ended = await store.run(store.get_session, session.id)
        assert ended is not None
        assert [s.id for s in await store.run(store.list_sessions)] == [session.id]
        assert ended.end_reason == EndReason.BUTTON
        assert ended.connections == 2
        # the camera noticed the silence in 3 s (its RTCP timeout), not ICE consent's 30 s
        assert taken_over < 10, f"taken over {taken_over:.1f} s after the kill"
        # both nodes recorded it; nothing is left open, nothing closed was lost
        segments = await store.run(store.segments_of, session.id)
        writers = {g.node.split("~")[0] for g in segments}
        assert writers == {"node-a", "node-b"}
        assert all(g.state != "open" for g in segments)
        from_a = [g for g in segments if g.node.startswith("node-a~")]
        assert all(g.state == "closed" for g in from_a[:-1])
        assert from_a[-1].state in ("closed", "recovered", "empty")
        assert all(g.state == "closed" for g in segments if g.node.startswith("node-b~"))
        # the gap is written down: who took it over, from when to when
        entries = await store.run(store.register_entries, None, None, session.id)
        [gap] = [e for e in entries if e["action"] == Action.SESSION_TAKEN_OVER]
        assert gap["from"]
        assert gap["from"] <= gap["to"]
        assert gap["detail"].startswith("from node-a~")
        # the console on B saw the alert through: live, then live again, never ended
        # before the officer stopped
        states = [a["session_state"] for a in console.of(session.id)]
        assert states[0] == "live"
        assert states[-1] == "ended"
        assert "ended" not in states[:-1]
        assert states[-2] == "live"
    finally:
        await asyncio.to_thread(store.close)

    # one register chain across the nodes, and the session verifies from end to end
    checked = await asyncio.to_thread(cluster.bodycam, "register", "verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    verified = await asyncio.to_thread(cluster.bodycam, "sessions", "verify", session.id)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{len(segments)} segments decrypt" in verified.stdout


async def test_a_session_whose_camera_never_comes_back_is_ended_by_the_survivor(
    cluster: Cluster,
) -> None:
    cluster.environ["BODYCAM_SESSIONS_GRACE_SECONDS"] = "4"
    store = await open_cluster_store(cluster.store_url)
    try:
        token = await store.run(devices.enroll, store, "cam-2", "", SystemClock().now())
        await cluster.start("a")
        await cluster.start("b")
        # a camera that knows only node A
        async with AxisBodycam(cluster.url("a"), "cam-2", token, media=small_media()) as camera:
            await camera.press()
            [session] = await store.run(store.list_sessions)
            await wait_for_store(store, lambda s: len(s.segments_of(session.id)) >= 2, within=10)
            await cluster.kill("a")
            # B declares A dead: the session is interrupted, then ended when its grace
            # window closes, at the time it closed; A's segments are sealed
            await wait_for_session(store, session.id, SessionState.INTERRUPTED, within=10)
            interrupted = await store.run(store.get_session, session.id)
            assert interrupted is not None
            assert interrupted.interrupted_at is not None
            await wait_for_session(store, session.id, SessionState.ENDED, within=15)
        ended = await store.run(store.get_session, session.id)
        assert ended is not None
        assert ended.end_reason == EndReason.LINK_LOST
        assert ended.ended_at == interrupted.interrupted_at + timedelta(seconds=4)
        assert ended.node == session.node  # never taken over: A's to the end
        # A's segments sealed: the one it was writing (if the kill did not fall between
        # two) by B's recovery
        segments = await store.run(store.segments_of, session.id)
        assert all(g.state != "open" for g in segments)
        assert all(g.state == "closed" for g in segments[:-1])
        alert = await store.run(store.get_alert, session.id)
        assert alert is not None  # still listed, for the operators to close
    finally:
        await asyncio.to_thread(store.close)
    verified = await asyncio.to_thread(cluster.bodycam, "sessions", "verify", session.id)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_a_node_paused_past_its_death_keeps_what_nobody_took_over(
    cluster: Cluster,
) -> None:
    cluster.environ["BODYCAM_NODE_DEAD_AFTER_SECONDS"] = "3"
    store = await open_cluster_store(cluster.store_url)
    try:
        token = await store.run(devices.enroll, store, "cam-3", "", SystemClock().now())
        await cluster.start("a")
        await cluster.start("b")
        async with AxisBodycam(cluster.url("a"), "cam-3", token, media=small_media()) as camera:
            await camera.press()
            [session] = await store.run(store.list_sessions)
            await wait_for_store(store, lambda s: len(s.segments_of(session.id)) >= 2, within=10)
            # A freezes (a VM stopped, a long stall) past dead_after: B declares it dead
            a = cluster.processes["a"]
            a.send_signal(signal.SIGSTOP)
            try:
                await wait_for_session(store, session.id, SessionState.INTERRUPTED, within=10)
            finally:
                a.send_signal(signal.SIGCONT)

            # A runs again: refused as a dead run, it carries on as a new one and keeps the
            # session nobody took over, before B would seal the files A is writing
            def kept_by_a_new_run(s: Store) -> bool:
                held = s.get_session(session.id)
                return (
                    held is not None
                    and held.node.startswith("node-a~")
                    and held.node != session.node
                    and held.state == SessionState.LIVE
                )

            await wait_for_store(store, kept_by_a_new_run, within=15)
            await wait_for(lambda: camera.state == "live", within=10)
            await asyncio.sleep(3)  # B's recovery would have run by now
            await camera.press()
            await wait_for_session(store, session.id, SessionState.ENDED, within=10)
        segments = await store.run(store.segments_of, session.id)
        # every segment sealed by A itself: none left to B's recovery
        assert [g.state for g in segments] == ["closed"] * len(segments)
        assert "was declared dead by the other nodes" in cluster.log.read_text()
    finally:
        await asyncio.to_thread(store.close)
    verified = await asyncio.to_thread(cluster.bodycam, "sessions", "verify", session.id)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.fixture
async def nodes(tmp_path: Path, postgres_url: str) -> AsyncIterator[tuple[Gateway, Gateway]]:
    """Two nodes in this process on one PostgreSQL, one Redis and one data folder."""
    async with node_pair(lambda _: tmp_path / "shared", store_url=postgres_url) as pair:
        yield pair


async def test_a_camera_that_comes_back_through_a_living_node_continues_on_its_own(
    nodes: tuple[Gateway, Gateway],
) -> None:
    a, b = nodes
    token = await a.enroll("cam-1")
    media = small_media()
    async with (
        AxisBodycam(a.url, "cam-1", token, media=media) as on_a,
        AxisBodycam(b.url, "cam-1", token, media=media) as via_b,
    ):
        await on_a.press()
        [session] = await a.store.run(a.store.list_sessions)
        await wait_for(lambda: on_a.frames_sent > 30, within=10)
        # the same device through B while its stream to A flows: A refuses it, as one node
        with pytest.raises(WhipError) as refused:
            await via_b.press()
        assert refused.value.status == 409
        assert "already has a live session" in refused.value.body
        # its link to A drops; it comes back through B (a load balancer's choice): B hands
        # the offer to A, which knows the old link is silent and continues the session
        dropped = asyncio.create_task(on_a.drop_link(600))
        await asyncio.sleep(1.5)
        await via_b.press()
        assert via_b.state == "live"
        held = await a.store.run(a.store.get_session, session.id)
        assert held is not None
        assert held.node == a.sessions.run
        assert held.connections == 2
        assert b.sessions.session(session.id) is None
        assert a.sessions.session(session.id) is not None
        # the new link's media is recorded by A: a segment of its own
        await wait_for_store(a.store, lambda s: len(s.segments_of(session.id)) >= 2, within=10)
        await via_b.press()  # stop, through B: A ends it
        await wait_for_session(a.store, session.id, SessionState.ENDED)
        dropped.cancel()
    ended = await a.store.run(a.store.get_session, session.id)
    assert ended is not None
    assert ended.state == SessionState.ENDED
    assert ended.end_reason == EndReason.BUTTON
