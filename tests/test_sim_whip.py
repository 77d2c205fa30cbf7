"""The body camera simulator against a minimal WHIP endpoint answering with aiortc."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from simulators.axis_bodycam import AxisBodycam, axis_serial, parse_args, run
from simulators.gps import Walk, load_route
from simulators.media import MediaSettings, is_flash, read_frame_counter
from simulators.whip import WhipError

TOKEN = "secret-token"


class Answerer:
    """A WHIP endpoint that records what a camera sends: requests, decoded frames, telemetry."""

    def __init__(self, status: int = 201) -> None:
        self.status = status
        self.posts: list[dict[str, Any]] = []
        self.deletes: list[str] = []
        self.pcs: dict[str, RTCPeerConnection] = {}
        self.counters: dict[str, list[int | None]] = {}
        self.flashes: dict[str, list[int | None]] = {}
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.events: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def post(self, request: web.Request) -> web.Response:
        offer = await request.text()
        self.posts.append({"headers": dict(request.headers), "sdp": offer})
        if self.status != 201:
            return web.Response(status=self.status, text="device cam-17 is not enrolled")
        rid = f"r{len(self.posts)}"
        pc = self.pcs[rid] = RTCPeerConnection()
        self.counters[rid], self.flashes[rid] = [], []

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            @channel.on("message")
            def on_message(message: str) -> None:
                decoded = json.loads(message)
                self.messages.append((rid, decoded))
                self.events.append(f"{decoded['type']}:{rid}")

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "video":
                self._tasks.append(asyncio.create_task(self._read_video(rid, track)))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(
            status=201,
            text=pc.localDescription.sdp,
            content_type="application/sdp",
            headers={"Location": f"/whip/{rid}"},
        )

    async def delete(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        self.deletes.append(rid)
        self.events.append(f"delete:{rid}")
        await self.pcs[rid].close()
        return web.Response(status=200)

    async def _read_video(self, rid: str, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            # aiortc decodes here; that is fine for a test of the sending side.
            gray = frame.to_ndarray(format="gray")
            self.counters[rid].append(read_frame_counter(gray))
            self.flashes[rid].append(is_flash(gray))

    async def close(self) -> None:
        for pc in self.pcs.values():
            await pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def endpoint(aiohttp_server: Any) -> AsyncIterator[tuple[str, Answerer]]:
    answerer = Answerer()
    app = web.Application()
    app.router.add_post("/whip", answerer.post)
    app.router.add_delete("/whip/{rid}", answerer.delete)
    server = await aiohttp_server(app, host="127.0.0.1")
    yield str(server.make_url("")), answerer
    await answerer.close()


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until `condition()` holds, failing the test after `within` seconds."""
    async with asyncio.timeout(within):
        # Polling: the conditions are on aiortc's and the camera's state, which fire no event.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def small(**changes: Any) -> MediaSettings:
    """Small, quick media settings for tests."""
    base = {"width": 320, "height": 240, "fps": 15, "flash_interval": 1.0, "flash_offset": 0.4}
    return MediaSettings(**{**base, **changes})


async def test_live_h264_session(endpoint: tuple[str, Answerer]) -> None:
    base_url, answerer = endpoint
    walk = Walk(route=load_route("metz-mandela"), seed=1)
    async with AxisBodycam(base_url, "cam-17", TOKEN, media=small(), walk=walk) as cam:
        await cam.press()
        assert cam.state == "live"
        assert cam.session_url == f"{base_url}/whip/r1"

        request = answerer.posts[0]
        assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
        assert request["headers"]["Content-Type"] == "application/sdp"
        assert request["headers"]["User-Agent"].startswith("AXIS W110/")
        sdp = request["sdp"]
        assert "H264/90000" in sdp
        assert "VP8" not in sdp
        assert "opus/48000" in sdp
        assert "PCMU" not in sdp
        assert "m=application" in sdp
        assert "a=candidate" in sdp

        await until(lambda: len(answerer.counters["r1"]) >= 20)
        counters = [c for c in answerer.counters["r1"] if c is not None]
        assert len(counters) >= 18
        steps = [b - a for a, b in itertools.pairwise(counters)]
        assert all(step >= 1 for step in steps)
        assert steps.count(1) >= len(steps) - 2

        # A PLI from the receiver must force an IDR on the live encoder.
        receiver = next(
            t.receiver for t in answerer.pcs["r1"].getTransceivers() if t.kind == "video"
        )
        ssrc = receiver.getSynchronizationSources()[0].source
        await receiver._send_rtcp_pli(ssrc)
        await until(lambda: cam.counters.keyframes_forced >= 1)

        await until(lambda: any(m["type"] == "position" for _, m in answerer.messages))
        kinds = [m["type"] for _, m in answerer.messages]
        assert kinds[:2] == ["hello", "battery"]
        hello = answerer.messages[0][1]
        assert hello == {
            "type": "hello",
            "serial": axis_serial("cam-17"),
            "model": "AXIS W110",
            "firmware": cam.firmware,
        }
        assert len(hello["serial"]) == 12
        assert hello["serial"].startswith("ACCC8E")
        position = next(m for _, m in answerer.messages if m["type"] == "position")
        assert abs(position["lat"] - 49.1183) < 0.001
        assert abs(position["lon"] - 6.1733) < 0.001
        assert position["time"].endswith("Z")
        assert 0 <= position["heading"] < 360

        await cam.press()
        assert cam.state == "idle"
        assert answerer.deletes == ["r1"]
        # The button message goes out before the DELETE.
        assert answerer.events.index("button:r1") < answerer.events.index("delete:r1")
        assert cam.frames_sent >= 20


async def test_loop_vp8_drop_and_reconnect(endpoint: tuple[str, Answerer]) -> None:
    base_url, answerer = endpoint
    media = small(codec="vp8", encode="loop", loop_seconds=2)
    async with AxisBodycam(base_url, "cam-18", TOKEN, media=media) as cam:
        await cam.prepare()
        timeline = asyncio.create_task(
            cam.run_timeline([(0.0, "press"), (1.2, "drop", 1.0), (3.5, "press")])
        )
        await until(lambda: cam.state == "dropped")
        assert "VP8/90000" in answerer.posts[0]["sdp"]
        assert "H264" not in answerer.posts[0]["sdp"]
        seen_before_drop = len(answerer.counters["r1"])
        # Loop mode: the counter is the loop frame, and one frame per second is a flash.
        counters = [c for c in answerer.counters["r1"] if c is not None]
        assert counters[:5] == [0, 1, 2, 3, 4]
        flashes = [i for i, f in enumerate(answerer.flashes["r1"]) if f]
        assert flashes
        assert all(media.flash(answerer.counters["r1"][i] or 0) for i in flashes)

        await until(lambda: cam.state == "live" and len(answerer.posts) == 2)
        # Silence, not a goodbye: no DELETE, and the first peer connection never saw a close.
        assert answerer.deletes == []
        assert answerer.pcs["r1"].connectionState == "connected"
        assert len(answerer.counters["r1"]) <= seen_before_drop + 3
        assert cam.reconnects == 1
        assert cam.session_url == f"{base_url}/whip/r2"
        await until(lambda: len(answerer.counters["r2"]) >= 5)

        await timeline
        assert cam.state == "idle"
        assert answerer.deletes == ["r2"]


async def test_refused_post_raises(endpoint: tuple[str, Answerer]) -> None:
    base_url, answerer = endpoint
    answerer.status = 403
    async with AxisBodycam(base_url + "/whip", "cam-17", TOKEN, media=small()) as cam:
        with pytest.raises(WhipError, match="403") as raised:
            await cam.press()
        assert raised.value.status == 403
        assert "not enrolled" in str(raised.value)
        assert cam.state == "idle"
        assert cam.last_error is not None
    assert len(answerer.posts) == 1


async def test_command_line_session(endpoint: tuple[str, Answerer]) -> None:
    base_url, answerer = endpoint
    args = parse_args(
        ["--gateway", base_url, "--device", "cam-19", "--token", TOKEN, "--size", "320x240",
         "--fps", "15", "--duration", "1.5", "--route", "metz-charrons", "--codec", "vp8"]
    )  # fmt: skip
    assert await run(args) == 0
    assert answerer.deletes == ["r1"]
    assert len(answerer.counters["r1"]) >= 10
    positions = [m for _, m in answerer.messages if m["type"] == "position"]
    assert positions
    assert abs(positions[0]["lat"] - 49.1157) < 0.001

    answerer.status = 401
    assert await run(args) == 1


async def test_gateway_closing_the_session_makes_the_camera_idle(
    endpoint: tuple[str, Answerer],
) -> None:
    base_url, answerer = endpoint
    async with AxisBodycam(base_url, "cam-20", TOKEN, media=small(encode="loop")) as cam:
        await cam.press()
        await until(lambda: len(answerer.counters["r1"]) >= 3)
        await answerer.pcs["r1"].close()  # DTLS close_notify, as a gateway ending the session
        await until(lambda: cam.state == "idle")
        assert cam.last_error == "closed by gateway"
        assert answerer.deletes == []
        assert len(answerer.posts) == 1
