"""The encoded-frame tap: aiortc receivers that hand over frames without decoding them.

aiortc has no public API for this. Its receive path is: `RTCRtpReceiver._handle_rtp_packet`
(event loop: NACK, REMB, depayload, jitter buffer) puts each complete encoded frame on a
queue; a per-receiver thread (`decoder_worker`) decodes it with `get_decoder(codec)`,
looked up at call time in `aiortc.rtcrtpreceiver`, and puts the decoder's output on the
track's queue, which `track.recv()` returns. This module replaces that one lookup: for
the codecs of a peer connection tapped with `tap_receivers`, the "decoder" returns an
`EncodedFrame` (the bytes as received, keyframe flag, RTP timestamp) instead of pictures.
Other peer connections in the process (a test's viewer, a baseline benchmark) still decode.

Two more per-receiver adjustments, both on instance attributes of aiortc 1.16 objects:
- the receiver's TimestampMapper rebases timestamps to 0 per track, which loses the link
  with RTCP sender reports; it is replaced by an unwrapper that keeps RTP time;
- sender reports (the only standard way to align audio with video) are seen by wrapping
  the receiver's `_handle_rtcp_packet`.
Without decoding nothing asks the camera for keyframes on loss; `request_keyframe` sends a
PLI (RFC 4585) for that receiver's stream. pyproject pins aiortc to 1.16.x for this module;
tests/test_tap.py fails first if an upgrade breaks it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiortc.rtcrtpreceiver
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtcpSrPacket

from .bitstream import h264_is_keyframe, vp8_is_keyframe

logger = logging.getLogger(__name__)

_MARK = "_bodycam_passthrough"
_aiortc_get_decoder = aiortc.rtcrtpreceiver.get_decoder

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


class PassthroughDecoder:
    """Stands where aiortc expects a decoder and returns the encoded frame untouched."""

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self.kind = "video" if codec.mimeType.lower().startswith("video/") else "audio"
        self.codec = codec.name
        self.clock_rate = codec.clockRate
        name = codec.name.lower()
        self._is_keyframe: Callable[[bytes], bool]
        if name == "h264":
            self._is_keyframe = h264_is_keyframe
        elif name == "vp8":
            self._is_keyframe = vp8_is_keyframe
        else:
            self._is_keyframe = _always

    def decode(self, encoded_frame: Any) -> list[EncodedFrame]:
        data = encoded_frame.data
        return [
            EncodedFrame(
                kind=self.kind,
                codec=self.codec,
                data=data,
                rtp_time=encoded_frame.timestamp,
                clock_rate=self.clock_rate,
                keyframe=self._is_keyframe(data),
                arrival=time.time(),
            )
        ]


def _always(_data: bytes) -> bool:
    return True


def _get_decoder(codec: RTCRtpCodecParameters) -> Any:
    if getattr(codec, _MARK, False):
        return PassthroughDecoder(codec)
    return _aiortc_get_decoder(codec)


def install() -> None:
    """Put the passthrough lookup in place of aiortc's (idempotent)."""
    aiortc.rtcrtpreceiver.get_decoder = _get_decoder


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


SenderReportCallback = Callable[[str, float, int], None]


def tap_receivers(
    pc: RTCPeerConnection, on_sender_report: SenderReportCallback, passthrough: bool = True
) -> None:
    """Make a peer connection's receivers yield EncodedFrames; call after setRemoteDescription.

    `on_sender_report(kind, sender_ntp_seconds_posix, rtp_timestamp32)` is called for each
    RTCP sender report. With `passthrough=False` the receivers still decode (the naive
    baseline of bench/ingest.py) but keep RTP time and report sender reports.
    """
    install()
    for transceiver in pc.getTransceivers():
        if passthrough:
            for codec in transceiver._codecs:
                setattr(codec, _MARK, True)
        receiver = transceiver.receiver
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


async def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Send a PLI for each stream the receiver heard lately; False if there was none."""
    sources = receiver.getSynchronizationSources()
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
    return bool(sources)
