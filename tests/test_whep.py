"""Live view over WHEP: a camera's frames relayed to viewers as encoded, and nothing slowed."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
from pathlib import Path

import aiohttp
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder

from bodycam.cli import main
from bodycam.config import Config
from bodycam.media.tap import request_keyframe
from bodycam.models import SessionState
from simulators.axis_bodycam import AxisBodycam

from .helpers import (
    GC,
    PASSWORD,
    Gateway,
    add_login,
    live_of,
    make_config,
    media_in_process,
    media_of,
    session_of,
    small_media,
    wait_for,
    wait_for_session,
)
from .whep_client import stop, watch


def encoders_at_work() -> list[object]:
    with GC.walking_the_heap():
        gc.collect()
        return _encoders_at_work()


def _encoders_at_work() -> list[object]:
    """aiortc encoders that have encoded something (a sender given `av.Packet`s creates one
    but only calls its `pack`): video ones open their codec at the first frame, Opus notes
    the first packet's pts."""
    return [
        o
        for o in gc.get_objects()
        if (isinstance(o, H264Encoder | Vp8Encoder) and o.codec is not None)
        or (isinstance(o, OpusEncoder) and o.first_packet_pts is not None)
    ]


@pytest.mark.parametrize("codec", ["h264", "vp8"])
async def test_a_viewer_sees_and_hears_the_camera_without_reencoding(
    gateway: Gateway, codec: str
) -> None:
    token = await gateway.enroll("cam-1")
    async with AxisBodycam(
        gateway.url, "cam-1", token, media=small_media(codec, loop_seconds=6)
    ) as camera:
        await camera.press()
        [session] = await gateway.store.run(gateway.store.list_sessions)
        before = await asyncio.to_thread(encoders_at_work)  # the simulator's own, if any
        view = await watch(gateway.url, session.id, gateway.auth)
        await wait_for(lambda: len(view.counters) >= 60, within=10, what=lambda: view.counters)
        assert view.audio_frames > 50
        # the camera's frames in order: the counter drawn in the picture only goes up,
        # by one frame at a time but for the rare loss on a busy machine
        steps = [b - a for a, b in zip(view.counters, view.counters[1:], strict=False)]
        assert all(step >= 1 for step in steps), view.counters
        assert sum(step == 1 for step in steps) >= 0.9 * len(steps)
        assert await asyncio.to_thread(encoders_at_work) == before
        assert gateway.metrics.registry.get_sample_value("bodycam_viewers") == 1
        assert await stop(view, gateway.auth) == 200
        assert len(live_of(gateway, session.id).views) == 0
        views = [
            e
            for e in (await gateway.store.run(gateway.store.register_entries))
            if "live_view" in e["action"]
        ]
        assert [(e["action"], e["user"], e["session"]) for e in views] == [
            ("live_view_start", "dupont", session.id),
            ("live_view_end", "dupont", session.id),
        ]
        assert views[1]["from"] < views[1]["to"]  # how long the view lasted
        await camera.press()
    await wait_for_session(gateway.store, session.id, SessionState.ENDED)


@media_in_process
async def test_a_stalled_viewer_slows_neither_the_recording_nor_other_viewers(
    gateway: Gateway,
) -> None:
    token = await gateway.enroll("cam-1")
    async with AxisBodycam(gateway.url, "cam-1", token, media=small_media()) as camera:
        await camera.press()
        [session] = await gateway.store.run(gateway.store.list_sessions)
        stalled = await watch(gateway.url, session.id, gateway.auth, connect=False)  # never reads
        good = await watch(gateway.url, session.id, gateway.auth)
        received = gateway.metrics.frames.labels("video")
        start = received._value.get()
        await wait_for(lambda: len(good.counters) >= 90, within=15)
        # the stalled viewer's queues stayed bounded: it dropped, nobody waited for it
        relay = media_of(gateway, session.id).relay
        stuck = relay.viewer(stalled.location.rsplit("/", 1)[1])
        fine = relay.viewer(good.location.rsplit("/", 1)[1])
        assert stuck is not None
        assert fine is not None
        assert stuck.dropped > 0
        assert fine.dropped == 0
        assert all(t.queue.qsize() <= t.queue.maxsize for t in stuck.tracks.values())
        assert received._value.get() - start >= 60  # ingest and recording went on meanwhile
        await stalled.close()
        await good.close()
        await camera.press()


async def test_a_view_ends_with_its_session(gateway: Gateway) -> None:
    token = await gateway.enroll("cam-1")
    async with AxisBodycam(gateway.url, "cam-1", token, media=small_media()) as camera:
        await camera.press()
        [session] = await gateway.store.run(gateway.store.list_sessions)
        view = await watch(gateway.url, session.id, gateway.auth)
        await wait_for(lambda: view.video_frames > 10)
        await camera.press()
        await wait_for(lambda: view.ended.is_set(), within=10)
        await view.close()
    # a view ended by its session is registered as ended too
    actions = [
        e["action"]
        for e in (await gateway.store.run(gateway.store.register_entries))
        if "live" in e["action"]
    ]
    assert actions == ["live_view_start", "live_view_end"]
    async with (
        aiohttp.ClientSession() as http,
        http.delete(view.location, headers=gateway.auth) as response,
    ):
        assert response.status == 404


async def test_a_view_url_is_its_openers_alone_and_dies_with_the_view(gateway: Gateway) -> None:
    """Another person, even of the same role, cannot end someone's view by its URL; once
    ended, the URL replayed finds nothing, and another session's path does not reach it."""
    token = await gateway.enroll("cam-1")
    martin = await gateway.login("martin")
    async with (
        AxisBodycam(gateway.url, "cam-1", token, media=small_media()) as camera,
        aiohttp.ClientSession() as http,
    ):
        await camera.press()
        [session] = await gateway.store.run(gateway.store.list_sessions)
        view = await watch(gateway.url, session.id, gateway.auth)
        await wait_for(lambda: view.video_frames > 10)
        async with http.delete(view.location, headers=martin) as response:
            assert response.status == 403
            assert "opened by someone else" in (await response.json())["error"]
        viewer_id = view.location.rsplit("/", 1)[1]
        async with http.delete(f"{gateway.url}/whep/other/{viewer_id}", headers=gateway.auth) as r:
            assert r.status == 404
        frames = view.video_frames
        await wait_for(lambda: view.video_frames > frames + 5)  # still watching
        async with http.delete(view.location, headers=gateway.auth) as response:
            assert response.status == 200
        async with http.delete(view.location, headers=gateway.auth) as response:
            assert response.status == 404  # replayed
        await view.close()
        await camera.press()


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "message"),
    [
        ("/whep/nope", "v=0", "application/sdp", 404, "no live session nope"),
        (None, "hello", "application/sdp", 400, "no m= line"),
        (None, "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "text/plain", 415, "application/sdp"),
    ],
)
async def test_bad_whep_requests(
    gateway: Gateway, path: str | None, body: str, content_type: str, status: int, message: str
) -> None:
    token = await gateway.enroll("cam-1")
    async with AxisBodycam(gateway.url, "cam-1", token, media=small_media()) as camera:
        await camera.press()
        [session] = await gateway.store.run(gateway.store.list_sessions)
        url = gateway.url + (path or f"/whep/{session.id}")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url, data=body, headers={"Content-Type": content_type, **gateway.auth}
            ) as response,
        ):
            assert response.status == status
            assert message in (await response.json())["error"]
        await camera.press()


async def test_live_view_needs_a_login_with_a_role_that_may_see_it(gateway: Gateway) -> None:
    token = await gateway.enroll("cam-1")
    async with AxisBodycam(gateway.url, "cam-1", token, media=small_media()) as camera:
        await camera.press()
        [session] = await gateway.store.run(gateway.store.list_sessions)
        url = f"{gateway.url}/whep/{session.id}"
        offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        sdp = {"Content-Type": "application/sdp"}
        cases = [
            ({}, 401, "log in first"),
            ({"Authorization": "Bearer bcu_forged"}, 401, "log in again"),
            ({"Authorization": f"Bearer {token}"}, 401, "login token"),  # a device's token
            (await gateway.login("audit", "auditor"), 403, "role auditor may not view live images"),
        ]
        async with aiohttp.ClientSession() as http:
            for headers, status, message in cases:
                async with http.post(url, data=offer, headers={**sdp, **headers}) as response:
                    assert response.status == status, headers
                    assert message in (await response.json())["error"]
        # the national police watch live images (DESIGN, access matrix)
        view = await watch(gateway.url, session.id, await gateway.login("cic", "police_nationale"))
        await wait_for(lambda: view.video_frames > 0, within=5)
        await view.close()
        await camera.press()


async def test_a_new_viewer_gets_a_keyframe_at_once(gateway: Gateway) -> None:
    """Live-encoding camera with a keyframe every 10 s: the viewer's PLI makes one now."""
    token = await gateway.enroll("cam-1")
    media = dataclasses.replace(small_media(), encode="live", keyframe_interval=10.0)
    async with AxisBodycam(gateway.url, "cam-1", token, media=media) as camera:
        await camera.press()
        [session] = await gateway.store.run(gateway.store.list_sessions)
        await asyncio.sleep(1.0)  # past the first keyframe
        forced = camera.counters.keyframes_forced
        view = await watch(gateway.url, session.id, gateway.auth)
        await wait_for(lambda: view.video_frames > 0, within=5)
        assert camera.counters.keyframes_forced > forced
        await view.close()
        await camera.press()


async def test_a_viewers_keyframe_request_reaches_the_camera(gateway: Gateway) -> None:
    """A viewer that lost its picture sends a PLI: aiortc's sender would only flag an encoder
    it does not have; the camera (a keyframe every 10 s) must make one now instead."""
    token = await gateway.enroll("cam-1")
    media = dataclasses.replace(small_media(), encode="live", keyframe_interval=10.0)
    async with AxisBodycam(gateway.url, "cam-1", token, media=media) as camera:
        await camera.press()
        [session] = await gateway.store.run(gateway.store.list_sessions)
        view = await watch(gateway.url, session.id, gateway.auth)
        await wait_for(lambda: view.video_frames > 0, within=5)
        await asyncio.sleep(1.0)  # past the join's own request (the relay spaces them)
        forced = camera.counters.keyframes_forced
        [receiver] = [t.receiver for t in view.pc.getTransceivers() if t.kind == "video"]
        assert await request_keyframe(receiver)  # the PLI a browser sends on loss
        await wait_for(lambda: camera.counters.keyframes_forced > forced, within=2)
        await view.close()
        await camera.press()


@pytest.fixture
def gateway_config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path / "data",
        recording_segment_seconds=30,
        sessions_grace_seconds=5,
        sessions_media_timeout_seconds=1,
    )


async def test_a_view_goes_on_across_a_camera_reconnect(gateway: Gateway) -> None:
    token = await gateway.enroll("cam-1")
    async with AxisBodycam(gateway.url, "cam-1", token, media=small_media()) as camera:
        await camera.press()
        [session] = await gateway.store.run(gateway.store.list_sessions)
        view = await watch(gateway.url, session.id, gateway.auth)
        await wait_for(lambda: view.video_frames > 30)
        await camera.drop_link(1.5)  # 4G lost, back within the grace window
        await wait_for(lambda: camera.state == "live")
        before = len(view.counters)
        await wait_for(lambda: len(view.counters) > before + 30, within=10)
        assert not view.ended.is_set()
        assert (await session_of(gateway.store, session.id)).connections == 2
        await view.close()
        await camera.press()


async def test_options_on_whep_urls(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        for path, allowed in (("/whep/s1", "POST, OPTIONS"), ("/whep/s1/v1", "DELETE, OPTIONS")):
            async with http.options(gateway.url + path) as response:
                assert response.status == 204
                assert response.headers["Accept-Post"] == "application/sdp"
                assert response.headers["Allow"] == allowed
                assert response.headers["Access-Control-Allow-Origin"] == "*"


async def until_closed(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """The console's close, past the events still coming (5 s at most)."""
    async with asyncio.timeout(5):
        while (message := await ws.receive()).type != aiohttp.WSMsgType.CLOSE:
            pass
    return message


async def test_a_login_that_ends_closes_the_consoles_and_views_it_opened(
    gateway: Gateway,
) -> None:
    token = await gateway.enroll("cam-1")
    first = {"Authorization": f"Bearer {await add_login(gateway.store, 'dupont', 'operator')}"}
    second = {"Authorization": f"Bearer {await add_login(gateway.store, 'dupont', 'operator')}"}
    async with (
        aiohttp.ClientSession() as http,
        AxisBodycam(gateway.url, "cam-1", token, media=small_media()) as camera,
    ):
        await camera.press()
        [session] = await gateway.store.run(gateway.store.list_sessions)
        console_1 = await http.ws_connect(f"{gateway.url}/ui/ws", headers=first)
        console_2 = await http.ws_connect(f"{gateway.url}/ui/ws", headers=second)
        assert (await console_1.receive_json())["type"] == "snapshot"
        assert (await console_2.receive_json())["type"] == "snapshot"
        view = await watch(gateway.url, session.id, first)
        views = live_of(gateway, session.id).views
        assert len(views) == 1
        # logging out closes what that login opened: its console, its view
        async with http.post(f"{gateway.url}/api/v1/logout", headers=first) as r:
            assert r.status == 204
        closed = await until_closed(console_1)
        assert console_1.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert closed.extra == "login ended: log in again"
        await wait_for(lambda: len(views) == 0, within=5)
        assert not console_2.closed  # the other login goes on
        # the account disabled from the command line: its other login ends, at once
        data_dir = str(gateway.config.data_dir)
        disable = ["users", "disable", "dupont", "--data-dir", data_dir]
        assert await asyncio.to_thread(main, disable) == 0
        await until_closed(console_2)
        async with http.post(
            f"{gateway.url}/api/v1/login", json={"name": "dupont", "password": PASSWORD}
        ) as r:
            assert r.status == 401
        await stop(view, first)
    entries = await gateway.store.run(gateway.store.register_entries)
    actions = [e["action"] for e in entries if e["user"] == "dupont"]
    # the view's end and both consoles' are registered, by the watch that closed them
    assert actions.index("live_view_end") > actions.index("live_view_start")
    assert actions.count("console_open") == actions.count("console_close") == 2
    assert any(e["action"] == "user_disabled" and e["detail"] == "dupont" for e in entries)
