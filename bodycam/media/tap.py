"""The encoded-frame tap: aiortc receivers that hand over frames without decoding them.

aiortc has no public API for this. Its receive path is: `RTCRtpReceiver._handle_rtp_packet`
(event loop: NACK, REMB, depayload, jitter buffer) puts each complete encoded frame on the
receiver's decoder queue; a per-receiver thread (`decoder_worker`) takes it, decodes it and
hands the pictures back to the event loop for `track.recv()`. Two thread hops and a decode
per frame: most of the cost of receiving video with aiortc.

The tap replaces that queue, before the receiver starts, with `FrameTap`: its `put()`, called
on the event loop by `_handle_rtp_packet`, calls `on_frame` at once with an `EncodedFrame`
(the bytes as received, keyframe flag, RTP time). No decoder is ever created and the
decoder thread sleeps until the receiver stops. The track's `recv()` yields nothing but its
end: consumers take frames from `on_frame`.

Two more per-receiver adjustments, both on instance attributes of aiortc 1.16 objects:
- the receiver's TimestampMapper rebases timestamps to 0 per track, which loses the link
  with RTCP sender reports; it is replaced by an unwrapper that keeps RTP time;
- sender reports (the only standard way to align audio with video) are seen by wrapping
  the receiver's `_handle_rtcp_packet`.
Without decoding nothing asks the camera for keyframes on loss; `request_keyframe` sends a
PLI (RFC 4585) for that receiver's stream. On the way out, aiortc's sender answers a
viewer's PLI/FIR by marking its own encoder's next frame as a keyframe: a sender fed encoded
packets has no encoder, so `forward_keyframe_requests` hands those requests on (to the
camera, through the relay). pyproject pins aiortc to 1.16.x for this module;
tests/test_recording.py fails first if an upgrade breaks it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.exceptions import InvalidStateError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtcpSrPacket

from .bitstream import h264_is_keyframe, vp8_is_keyframe

logger = logging.getLogger(__name__)

# Seconds between 1900 (NTP epoch) and 1970 (POSIX epoch).
NTP_EPOCH_OFFSET = 2208988800


@dataclass(slots=True)
class EncodedFrame:
    """One encoded video or audio frame as the camera sent it."""

    kind: str  # "video" or "audio"
    codec: str  # "H264", "VP8", "opus"
    data: bytes
    rtp_time: int  # RTP timestamp, unwrapped to 64 bits
    clock_rate: int
    keyframe: bool
    arrival: float  # gateway wall clock (POSIX seconds) when the frame was complete
    wall: float = 0.0  # gateway wall-clock time of capture, set by the timeline


FrameCallback = Callable[[EncodedFrame], None]
SenderReportCallback = Callable[[str, float, int], None]


def _always(_data: bytes) -> bool:
    return True


KEYFRAME_TESTS: dict[str, Callable[[bytes], bool]] = {
    "h264": h264_is_keyframe,
    "vp8": vp8_is_keyframe,
}


class FrameTap:
    """Stands where aiortc's receiver keeps its decoder queue (see the module doc).

    `put((codec, jitter_frame))` comes from the event loop for every complete frame;
    `put(None)` when the receiver stops. `get()` is called only by aiortc's decoder thread:
    it blocks until the stop, then returns None so the thread ends the track and exits.
    """

    def __init__(self, kind: str, on_frame: FrameCallback) -> None:
        self._kind = kind
        self._on_frame = on_frame
        self._stopped = threading.Event()

    def put(self, task: tuple[RTCRtpCodecParameters, Any] | None) -> None:
        if task is None:
            self._stopped.set()
            return
        codec, frame = task
        data = frame.data
        name = codec.name
        self._on_frame(
            EncodedFrame(
                self._kind,
                name,
                data,
                frame.timestamp,
                codec.clockRate,
                KEYFRAME_TESTS.get(name.lower(), _always)(data),
                time.time(),
            )
        )

    def get(self) -> None:
        self._stopped.wait()
        return None


class RtpUnwrapper:
    """Replaces aiortc's TimestampMapper: keeps RTP time, extended past 32-bit wraps."""

    def __init__(self) -> None:
        self._last: int | None = None
        self._cycles = 0

    def map(self, timestamp: int) -> int:
        if self._last is not None:
            delta = (timestamp - self._last) & 0xFFFFFFFF
            # A forward step of less than half the range that lands lower has wrapped.
            if delta < 0x80000000 and timestamp < self._last:
                self._cycles += 1 << 32
            elif delta >= 0x80000000 and timestamp > self._last and self._cycles:
                # a late frame from before the last wrap
                return self._cycles - (1 << 32) + timestamp
        self._last = timestamp
        return self._cycles + timestamp


def tap_receivers(
    pc: RTCPeerConnection,
    on_sender_report: SenderReportCallback,
    on_frame: FrameCallback | None = None,
) -> None:
    """Tap a peer connection's receivers; call after setRemoteDescription, before media.

    `on_frame(frame)` gets every encoded frame, on the event loop, instead of a decoder.
    `on_sender_report(kind, sender_ntp_seconds_posix, rtp_timestamp32)` gets each RTCP
    sender report. Without `on_frame` the receivers still decode (the naive baseline of
    bench/ingest.py) but keep RTP time on their frames and report sender reports.
    """
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if on_frame is not None:
            receiver._RTCRtpReceiver__decoder_queue = FrameTap(  # type: ignore[attr-defined]
                transceiver.kind, on_frame
            )
        receiver._RTCRtpReceiver__timestamp_mapper = RtpUnwrapper()  # type: ignore[attr-defined]
        _watch_sender_reports(receiver, transceiver.kind, on_sender_report)


def _watch_sender_reports(
    receiver: RTCRtpReceiver, kind: str, callback: SenderReportCallback
) -> None:
    handle = receiver._handle_rtcp_packet

    async def handle_rtcp_packet(packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            callback(kind, info.ntp_timestamp / (1 << 32) - NTP_EPOCH_OFFSET, info.rtp_timestamp)
        await handle(packet)

    receiver._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


def forward_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """Call `request()` for every PLI or FIR a viewer sends about this sender's stream.

    Without it, a viewer that lost part of a keyframe stays black until the camera's next
    keyframe of its own accord: seconds, or with a long (dynamic) GOP, tens of seconds.
    """
    own = sender._send_keyframe  # aiortc 1.16: called for each PLI and FIR received

    def send_keyframe() -> None:
        own()
        request()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


async def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Send a PLI for each stream the receiver heard lately; False if there was none."""
    sources = receiver.getSynchronizationSources()
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
    return bool(sources)


def retrieve_connecting(pc: RTCPeerConnection) -> None:
    """Retrieve the outcome of aiortc's connecting step for `pc`, whatever it is.

    aiortc 1.16 starts `RTCPeerConnection.__connect` with `asyncio.ensure_future` and keeps
    no reference to it. Closed while that step waits on ICE (a WHIP DELETE or a viewer
    leaving during the connectivity checks, found by the fuzzing of issue 13), the peer
    makes it go on to the next transceiver's closed ICE transport and fail with
    InvalidStateError, which asyncio logs as an unhandled error when the task is collected.
    Called after `setLocalDescription`, when that task exists.
    """
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if (
            getattr(coro, "__qualname__", "") == "RTCPeerConnection.__connect"
            and frame is not None
            and frame.f_locals.get("self") is pc
        ):
            task.add_done_callback(_connecting_done)


def _connecting_done(task: asyncio.Future[None]) -> None:
    if task.cancelled():
        return
    err = task.exception()
    if isinstance(err, InvalidStateError):
        logger.debug("peer closed while connecting: %s", err)
    elif err is not None:
        logger.warning("connecting the peer failed: %r", err)
