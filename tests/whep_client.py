"""A WHEP viewer for tests: a real aiortc peer that receives, decodes and counts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import aiohttp
import av
import yarl
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from simulators.testsignal import read_frame_counter


@dataclass
class View:
    """What a viewer received: decoded video frame counters and audio frame count."""

    pc: RTCPeerConnection
    location: str
    started: float = field(default_factory=time.monotonic)
    first_video_at: float | None = None
    counters: list[int] = field(default_factory=list)
    video_frames: int = 0
    audio_frames: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "audio":
                    self.audio_frames += 1
                    continue
                self.video_frames += 1
                if self.first_video_at is None:
                    self.first_video_at = time.monotonic()
                assert isinstance(frame, av.VideoFrame)
                counter = read_frame_counter(frame.to_ndarray(format="gray"))
                if counter is not None:
                    self.counters.append(counter)
        except MediaStreamError:
            self.ended.set()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


async def watch(
    gateway_url: str,
    session_id: str,
    headers: dict[str, str],
    *,
    audio: bool = True,
    connect: bool = True,
) -> View:
    """POST a recvonly offer to /whep/{session_id}; `connect=False` never applies the answer
    (a viewer that stalls: the gateway's sender for it never starts)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    view = View(pc, "")

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        view.tasks.append(asyncio.create_task(view.consume(track)))

    await pc.setLocalDescription(await pc.createOffer())
    url = f"{gateway_url}/whep/{session_id}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url,
            data=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp", **headers},
            allow_redirects=False,
        ) as response,
    ):
        if response.status != 201:
            await pc.close()
            raise AssertionError(f"WHEP answered {response.status}: {await response.text()}")
        answer = await response.text()
        view.location = str(response.url.join(yarl.URL(response.headers["Location"])))
    if connect:
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return view


async def stop(view: View, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.delete(view.location, headers=headers) as response,
    ):
        status = response.status
    with contextlib.suppress(Exception):
        await view.close()
    return status
