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

`receive_lean` goes further (`[media] receive = "lean"`, the default): RTP goes from the
socket to the tap in one synchronous call, past aioice's queue, aiortc's packet parsing,
its bandwidth estimator and its jitter buffer (FrameAssembler instead, in assembler.py).
What each of those cost and why the lean path may skip it: docs/media-internals.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

import pylibsrtp
from aiortc import RTCDtlsTransport, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, clock
from aiortc.codecs import depayload, is_rtx
from aiortc.exceptions import InvalidStateError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import RtcpSrPacket, RtpPacket, unwrap_rtx

from .assembler import FrameAssembler, h264_starts_frame, vp8_starts_frame
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
        self.deliver(codec, frame.data, frame.timestamp)

    def deliver(self, codec: RTCRtpCodecParameters, data: bytes, rtp_time: int) -> None:
        """A complete frame, from aiortc's jitter buffer (`put`) or the lean path."""
        name = codec.name
        self._on_frame(
            EncodedFrame(
                self._kind,
                name,
                data,
                rtp_time,
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


# --- the lean receive path ------------------------------------------------------------------

RECEIVE_BUFFER_BYTES = 1 << 20  # per ICE socket (the kernel doubles it): seconds of a stream
KEYFRAME_REQUEST_SECONDS = 0.5  # at most one PLI this often for frames given up on
ERROR_LOG_SECONDS = 10.0
FRAME_START_TESTS: dict[str, Callable[[bytes], bool]] = {
    "h264": h264_starts_frame,
    "vp8": vp8_starts_frame,
}


class _Seen:
    """The two fields of an RTP packet aiortc's StreamStatistics and NackGenerator read: one
    instance per receiver, refilled for each packet, so the lean path allocates no packet."""

    __slots__ = ("sequence_number", "timestamp")

    def __init__(self) -> None:
        self.sequence_number = 0
        self.timestamp = 0


class LeanReceiver:
    """One receiver's RTP, handled in one synchronous call per packet (see `receive_lean`).

    Per packet: RTCP receiver-report statistics (aiortc's StreamStatistics, so its RTCP
    timer reports as before), NACKs for video, the codec's depayloader, then the frame:
    audio packets are frames as they come, video goes through a FrameAssembler. No receive-
    side bandwidth estimate (a recorder does not steer the sender's rate; the sender's own
    loss-based estimate works from the receiver reports), no datetime per packet (aiortc
    stamps each packet's source with one; here each frame's).
    """

    def __init__(self, receiver: RTCRtpReceiver, kind: str, tap: FrameTap) -> None:
        self._receiver = receiver
        self._kind = kind
        self._tap = tap
        self._codecs: dict[int, RTCRtpCodecParameters] = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
        self._rtx_ssrc: dict[int, int] = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
        self._streams: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        self._active: dict[int, Any] = receiver._RTCRtpReceiver__active_ssrc  # type: ignore[attr-defined]
        self._mapper: RtpUnwrapper = receiver._RTCRtpReceiver__timestamp_mapper  # type: ignore[attr-defined]
        self._nack = NackGenerator() if kind == "video" else None
        self._assemblers: dict[tuple[int, int], FrameAssembler] = {}
        self._seen = _Seen()
        self._tasks: set[asyncio.Future[None]] = set()
        self._last_pli = float("-inf")
        self._last_error_log = float("-inf")
        self.errors = 0  # packets the lean path raised on
        self.fast = 0  # packets taken by the fast path, from the socket
        self.first = 0  # packets aiortc's own path parsed (a stream's first, RTX, ...)

    def packet(
        self, ssrc: int, pt: int, seq: int, timestamp: int, marker: bool, payload: bytes
    ) -> None:
        """One RTP packet, header parsed, SRTP removed."""
        if not self._receiver._enabled:
            return
        codec = self._codecs.get(pt)
        if codec is None:
            return
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = StreamStatistics(codec.clockRate)
        seen = self._seen
        seen.sequence_number = seq
        seen.timestamp = timestamp
        stream.add(seen)  # type: ignore[arg-type]
        if self._nack is not None and self._nack.add(seen):  # type: ignore[arg-type]
            self._spawn(self._receiver._send_rtcp_nack(ssrc, sorted(self._nack.missing)))
        try:
            data = depayload(codec, payload) if payload else b""
        except ValueError:
            return  # as aiortc: a payload its depayloader cannot read is dropped
        if self._kind != "video":
            self._frame(codec, ssrc, data, timestamp)
            return
        key = (ssrc, pt)
        assembler = self._assemblers.get(key)
        if assembler is None:
            assembler = self._assemblers[key] = FrameAssembler(
                partial(self._frame, codec, ssrc),
                FRAME_START_TESTS.get(codec.name.lower(), _always),
            )
        if assembler.add(seq, timestamp, data, marker, payload, time.monotonic()):
            self._want_keyframe(ssrc)

    def parsed(self, packet: RtpPacket) -> None:
        """A packet aiortc parsed (the first of a stream, or a retransmission)."""
        codec = self._codecs.get(packet.payload_type)
        if codec is not None and is_rtx(codec):
            original = self._rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original is None or len(packet.payload) < 2 or apt not in self._codecs:
                return
            assert isinstance(apt, int)
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original)
        self.packet(
            packet.ssrc,
            packet.payload_type,
            packet.sequence_number,
            packet.timestamp,
            bool(packet.marker),
            packet.payload,
        )

    def failed(self, err: Exception) -> None:
        """A packet the lean path raised on: dropped, logged now and then, never fatal."""
        self.errors += 1
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_SECONDS:
            self._last_error_log = now
            logger.warning("RTP packet dropped (%d so far): %r", self.errors, err)

    def dropped_frames(self) -> int:
        return sum(assembler.dropped for assembler in self._assemblers.values())

    def _frame(self, codec: RTCRtpCodecParameters, ssrc: int, data: bytes, timestamp: int) -> None:
        self._active[ssrc] = clock.current_datetime()  # once a frame, not once a packet
        self._tap.deliver(codec, data, self._mapper.map(timestamp))

    def _want_keyframe(self, ssrc: int) -> None:
        now = time.monotonic()
        if now - self._last_pli >= KEYFRAME_REQUEST_SECONDS:
            self._last_pli = now
            self._spawn(self._receiver._send_rtcp_pli(ssrc))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("RTCP feedback not sent: %r", task.exception())


class _FastPath:
    """Stands in front of aioice's datagram handler for one ICE connection's sockets.

    aioice hands every datagram to `stun.parse_message` first (RTP fails it with a raised
    ValueError), then to a queue that aiortc's DTLS transport reads in a task, which
    unprotects SRTP, parses the packet with its header extensions and awaits three more
    coroutines before the receiver's jitter buffer. Here an SRTP packet of a stream a lean
    receiver already took (its SSRC is in the clear) is unprotected and handed to that
    receiver at once, inside the socket's callback. Everything else, STUN, DTLS, RTCP and
    the first packet of each stream, goes the usual way; aiortc's own handling of those
    first packets ends in the same lean receiver (`LeanReceiver.parsed`).
    """

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self.receivers: dict[int, LeanReceiver] = {}

    def wrap(self, original: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]:
        receivers = self.receivers
        dtls = self._dtls
        unpack = RTP_HEADER.unpack_from

        def datagram_received(data: bytes, addr: Any) -> None:
            # RTP (RFC 7983: first byte 128-191), not RTCP (second byte 192-208)
            if len(data) > 12 and 127 < data[0] < 192 and not 191 < data[1] < 209:
                lean = receivers.get(int.from_bytes(data[8:12], "big"))
                srtp = dtls._rx_srtp
                if lean is not None and srtp is not None:
                    lean.fast += 1
                    try:
                        plain = srtp.unprotect(data)
                    except pylibsrtp.Error:
                        return  # a replay, or not from the peer: as aiortc, dropped
                    try:
                        first, second, seq, timestamp, ssrc = unpack(plain)
                        start = 12 + 4 * (first & 0x0F)
                        if first & 0x10:  # header extension: skipped, none is used here
                            start += 4 + 4 * int.from_bytes(plain[start + 2 : start + 4], "big")
                        end = len(plain) - (plain[-1] if first & 0x20 else 0)
                        if start > end:
                            return
                        lean.packet(
                            ssrc, second & 0x7F, seq, timestamp, second > 127, plain[start:end]
                        )
                    except Exception as err:  # noqa: BLE001 a packet must not end the stream
                        lean.failed(err)
                    return
            original(data, addr)

        return datagram_received


RTP_HEADER = struct.Struct("!BBHII")


def receive_lean(pc: RTCPeerConnection) -> list[LeanReceiver]:
    """Put the lean receive path on a tapped peer connection; call after setLocalDescription
    (aioice has its sockets then), before media. Needs `tap_receivers(..., on_frame)` first.

    aiortc 1.16 internals, per instance: each receiver's `_handle_rtp_packet` goes to a
    `LeanReceiver`, and each ICE socket's `datagram_received` to a `_FastPath` that skips
    aiortc's path for the streams those receivers know. The sockets' receive buffers grow
    to `RECEIVE_BUFFER_BYTES`: a loop busy for a moment loses nothing.
    """
    paths: dict[int, _FastPath] = {}
    leans = []
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        tap = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
        if not isinstance(tap, FrameTap):
            continue
        lean = LeanReceiver(receiver, transceiver.kind, tap)
        leans.append(lean)
        dtls = receiver.transport
        path = paths.get(id(dtls))
        if path is None:
            path = paths[id(dtls)] = _FastPath(dtls)
            connection = dtls.transport._connection
            for protocol in connection._protocols:
                protocol.datagram_received = path.wrap(protocol.datagram_received)  # type: ignore[method-assign,assignment]
                _grow_receive_buffer(protocol.transport)
        receiver._handle_rtp_packet = partial(_first_packets, lean, path)  # type: ignore[method-assign]
    return leans


async def _first_packets(
    lean: LeanReceiver, path: _FastPath, packet: RtpPacket, arrival_time_ms: int
) -> None:
    """A packet aiortc's own path parsed: handled by `lean`, whose fast path learns its
    stream (unless it is a retransmission, whose SSRC is another)."""
    lean.first += 1
    codec = lean._codecs.get(packet.payload_type)
    if codec is not None and not is_rtx(codec):
        path.receivers[packet.ssrc] = lean
    try:
        lean.parsed(packet)
    except Exception as err:  # noqa: BLE001 raised into aiortc, it would end the transport
        lean.failed(err)


def _grow_receive_buffer(transport: Any) -> None:
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    try:  # past net.core.rmem_max where the process may (CAP_NET_ADMIN)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
    except OSError:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)


SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
