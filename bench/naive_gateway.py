"""The baseline of bench/ingest.py: a WHIP receiver built the way aiortc users usually do it.

Any Bearer token is accepted. Each offer gets an aiortc answer (H.264 preferred, as the
gateway does); aiortc decodes every frame and `aiortc.contrib.media.MediaRecorder`
re-encodes them (libx264 and AAC) into one MP4 file per session under `--dir`. Nothing
here is tuned: it is what bodycam's passthrough recording is measured against.

For the benchmark to read the same figures as from bodycam, ``GET /metrics`` serves
(Prometheus text, prefix ``naive_``) the decoded frames that reached the recorder, the live
sessions, and a histogram of the delay from capture (sender clock, from RTCP sender
reports) to the decoded frame being handed to the recorder, in bodycam's buckets. The
sender time of a frame uses the stream's latest sender report only; bodycam's timeline
is more careful (it keeps the smallest of the recent ones), which matters only when the
sender is late with its reports.

    python -m bench.naive_gateway --port 8090 --dir /tmp/naive
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRecorder
from aiortc.mediastreams import MediaStreamTrack
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bodycam.gateway.connection import AUDIO_CODECS, VIDEO_CODECS, preferences
from bodycam.media.ice import restrict_host_candidates
from bodycam.media.tap import tap_receivers
from bodycam.metrics import DELAY_BUCKETS

logger = logging.getLogger(__name__)


class Metrics:
    """The baseline's figures, named like bodycam's with a `naive_` prefix."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.frames = Counter(
            "naive_ingest_frames", "Decoded frames handed to the recorder", ["kind"], registry=r
        )
        self.sessions_live = Gauge("naive_sessions_live", "Sessions being recorded", registry=r)
        self.frame_delay = Histogram(
            "naive_ingest_frame_delay_seconds",
            "Capture (sender clock) to decoded frame handed to the recorder, video",
            buckets=DELAY_BUCKETS,
            registry=r,
        )


@dataclass
class SenderClock:
    """The latest RTCP sender report of one stream: (sender time, 32-bit RTP time)."""

    ntp: float | None = None
    rtp32: int = 0

    def sender_time(self, pts: int, clock_rate: int) -> float | None:
        """Capture time on the sender's clock of a frame whose unwrapped RTP time is `pts`."""
        if self.ntp is None:
            return None
        # Extend the report's 32-bit timestamp to the frame's 64-bit one (nearest cycle).
        base = pts - (pts & 0xFFFFFFFF) + self.rtp32
        rtp = min((base - (1 << 32), base, base + (1 << 32)), key=lambda c: abs(c - pts))
        return self.ntp + (pts - rtp) / clock_rate


class TimedTrack(MediaStreamTrack):
    """Hands a remote track's decoded frames to the recorder, counting and timing them."""

    def __init__(self, source: MediaStreamTrack, clock: SenderClock, metrics: Metrics) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._clock = clock
        self._frames = metrics.frames.labels(source.kind)
        self._delay = metrics.frame_delay

    async def recv(self) -> Any:
        frame = await self._source.recv()
        self._frames.inc()
        if self.kind == "video" and frame.pts is not None:
            sent = self._clock.sender_time(frame.pts, 90000)
            if sent is not None:
                self._delay.observe(time.time() - sent)
        return frame


@dataclass
class Session:
    """One camera's connection and its recording."""

    pc: RTCPeerConnection
    recorder: MediaRecorder
    clocks: dict[str, SenderClock] = field(default_factory=dict)


sessions_key = web.AppKey("sessions", dict[str, Session])
metrics_key = web.AppKey("metrics", Metrics)
dir_key = web.AppKey("dir", Path)


async def post_offer(request: web.Request) -> web.Response:
    """WHIP POST: answer the offer, decode both tracks and record them re-encoded."""
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        return web.Response(status=401, text="Bearer token required")
    offer = await request.text()
    metrics = request.app[metrics_key]
    resource = secrets.token_hex(12)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly").setCodecPreferences(
        preferences("video", VIDEO_CODECS)
    )
    pc.addTransceiver("audio", direction="recvonly").setCodecPreferences(
        preferences("audio", AUDIO_CODECS)
    )
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    session = Session(pc, MediaRecorder(str(request.app[dir_key] / f"{resource}.mp4")))
    session.clocks = {"video": SenderClock(), "audio": SenderClock()}

    def on_sender_report(kind: str, ntp: float, rtp32: int) -> None:
        clock = session.clocks[kind]
        clock.ntp, clock.rtp32 = ntp, rtp32

    # passthrough=False: aiortc still decodes; the tap only keeps RTP time on the frames
    # and reports sender reports, so the delay can be measured the same way as in bodycam.
    tap_receivers(pc, on_sender_report)  # no on_frame: the receivers keep decoding
    for transceiver in pc.getTransceivers():
        track = transceiver.receiver.track
        if transceiver._codecs and track is not None:
            session.recorder.addTrack(TimedTrack(track, session.clocks[track.kind], metrics))
    await pc.setLocalDescription(await pc.createAnswer())
    await session.recorder.start()
    request.app[sessions_key][resource] = session
    metrics.sessions_live.inc()
    logger.info("session %s: recording", resource)
    return web.Response(
        status=201,
        text=pc.localDescription.sdp,
        content_type="application/sdp",
        headers={"Location": f"/whip/sessions/{resource}"},
    )


async def end(app: web.Application, resource: str) -> bool:
    """Finish a session's file and close its connection; False if there is no such session."""
    session = app[sessions_key].pop(resource, None)
    if session is None:
        return False
    await session.recorder.stop()
    await session.pc.close()
    app[metrics_key].sessions_live.dec()
    logger.info("session %s: ended", resource)
    return True


async def delete_session(request: web.Request) -> web.Response:
    """WHIP DELETE: end the session."""
    found = await end(request.app, request.match_info["resource"])
    return web.Response(status=200 if found else 404)


async def metrics_handler(request: web.Request) -> web.Response:
    """The baseline's figures in Prometheus text."""
    body = generate_latest(request.app[metrics_key].registry)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def close_all(app: web.Application) -> None:
    """End every session at shutdown, so each MP4 file is finished."""
    sessions = app[sessions_key]
    for resource in list(sessions):
        await end(app, resource)


def create_app(directory: Path) -> web.Application:
    """The baseline receiver: WHIP POST and DELETE, and its metrics."""
    restrict_host_candidates(["127.0.0.1"])
    directory.mkdir(parents=True, exist_ok=True)
    app = web.Application()
    app[sessions_key] = {}
    app[metrics_key] = Metrics()
    app[dir_key] = directory
    app.router.add_post("/whip", post_offer)
    app.router.add_delete("/whip/sessions/{resource}", delete_session)
    app.router.add_get("/metrics", metrics_handler)
    app.on_shutdown.append(close_all)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m bench.naive_gateway`."""
    parser = argparse.ArgumentParser(prog="python -m bench.naive_gateway", description=__doc__)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--dir", type=Path, required=True, help="where the MP4 files go")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level.upper())
    web.run_app(create_app(args.dir), host="127.0.0.1", port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
