"""One WHIP connection: a camera's peer connection, its receivers tapped for encoded frames,
its telemetry channel, and the watch for silence, which is how a lost 4G link looks here.

`accept_offer` validates a WHIP offer and applies it to a new recvonly peer connection
(H.264 preferred over VP8, Opus audio). A `Connection` then hands every encoded frame to
its sinks (the session's recorder and relay, hooked up by `SessionManager`) and reports to
its owner through `ConnectionOwner`, the way MediaMTX's WebRTC session talks to its
`sessionParent`: the link is lost, a telemetry message came, run this for me. It knows
nothing else of the session it belongs to.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import SessionDescription

from ..errors import BadRequest, Unprocessable
from ..logs import bind
from ..media.tap import (
    EncodedFrame,
    FrameCallback,
    LeanReceiver,
    SenderReportCallback,
    receive_lean,
    request_keyframe,
    retrieve_connecting,
    tap_receivers,
)
from ..metrics import Metrics

logger = logging.getLogger(__name__)

VIDEO_CODECS = ("H264", "VP8")  # in order of preference: Axis cameras send H.264
AUDIO_CODECS = ("opus",)
TELEMETRY_LABEL = "telemetry"
MAX_MEDIA_SECTIONS = 16
CONNECT_TIMEOUT_SECONDS = 15.0
PAUSED_SECONDS = 2.0  # a watch tick this late: the process was paused
WATCH_INTERVAL_SECONDS = 0.5
SINK_LOG_SECONDS = 10.0  # a frame a sink fails on is logged at most this often


@dataclass(frozen=True)
class MediaInfo:
    """What a connection carries, as negotiated."""

    video_codec: str
    audio_codec: str
    parameter_sets: bytes = b""  # H.264 SPS/PPS given in the offer (Annex B)

    @property
    def kinds(self) -> set[str]:
        return {"video", "audio"} if self.audio_codec else {"video"}


class ConnectionOwner(Protocol):
    """What a connection needs from whoever holds it (`SessionManager`)."""

    async def link_lost(self, conn: Connection, why: str) -> None:
        """The connection failed or went silent: the session is interrupted."""

    def telemetry(self, conn: Connection, raw: str | bytes) -> None:
        """A message on the telemetry channel, as received (not yet validated)."""

    def spawn(self, conn: Connection, make: Callable[[], Awaitable[object]]) -> None:
        """Run a coroutine on the session's behalf (it may outlive this connection)."""


def preferences(kind: str, names: tuple[str, ...]) -> list[RTCRtpCodecCapability]:
    """aiortc's codecs of `kind` named in `names`, in that order, with RTX after them."""
    capabilities = RTCRtpReceiver.getCapabilities(kind)
    assert capabilities is not None
    chosen = [c for name in names for c in capabilities.codecs if c.name.lower() == name.lower()]
    return chosen + [c for c in capabilities.codecs if c.name.lower() == "rtx"]


def parse_offer(sdp: str) -> SessionDescription:
    """An SDP offer (WHIP's or WHEP's), or BadRequest saying why it is not one."""
    if "m=" not in sdp:
        raise BadRequest("body is not an SDP offer (no m= line)")
    # thousands of sections fit in the size limit and take aiortc's parser over 100 ms of
    # the event loop; a camera offers three (video, audio, telemetry), a viewer two
    sections = sdp.count("m=")
    if sections > MAX_MEDIA_SECTIONS:
        raise BadRequest(f"SDP offer has {sections} m= lines: at most {MAX_MEDIA_SECTIONS}")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as err:  # noqa: BLE001 aiortc's parser raises whatever a bad line provokes
        raise BadRequest(f"SDP offer could not be parsed: {err}") from None
    _check_transport(parsed)
    return parsed


def _check_transport(parsed: SessionDescription) -> None:
    """What aiortc takes on trust, and trips on later in a task of its own (the answer, the
    DTLS handshake, closing): every section it will use has a certificate fingerprint, and
    a BUNDLE group names each section once, by a mid that exists."""
    used = [m for m in parsed.media if m.port != 0]
    if any(m.dtls is None or not m.dtls.fingerprints for m in used):
        raise BadRequest("SDP offer has a media section without a=fingerprint (DTLS needs it)")
    # RFC 3264 reads a missing direction as sendrecv, but JSEP (RFC 8829 5.2.2) always
    # writes one, and aiortc's answer fails on None ("None is not in list")
    for index, m in enumerate(parsed.media):
        if m.port != 0 and m.kind in ("audio", "video") and m.direction is None:
            raise BadRequest(
                f"SDP offer's {m.kind} section (m= line {index + 1}) has no direction"
                " (a=sendonly, a=recvonly, a=sendrecv or a=inactive)"
            )
    mids = [m.rtp.muxId for m in parsed.media if m.rtp.muxId]
    twice = sorted({mid for mid in mids if mids.count(mid) > 1})
    if twice:
        raise BadRequest(f"SDP offer gives mid {twice[0]} to two media sections")
    for group in parsed.group:
        missing = [mid for mid in group.items if mid not in mids]
        if group.semantic == "BUNDLE" and missing:
            raise BadRequest(
                f"SDP offer's BUNDLE group names mid {missing[0]}, which no media section has"
            )


def _check_offer(sdp: str) -> set[str]:
    """Refuse, with a reason, an offer the gateway cannot record; the kinds it offers."""
    parsed = parse_offer(sdp)
    videos = [m for m in parsed.media if m.kind == "video" and m.port != 0]
    if not videos:
        raise Unprocessable("the offer has no video: a body camera must send video")
    offered = {c.name for m in videos for c in m.rtp.codecs}
    if not offered & set(VIDEO_CODECS):
        raise Unprocessable(
            f"the offer has no video codec the gateway records ({', '.join(VIDEO_CODECS)});"
            f" offered: {', '.join(sorted(offered)) or 'none'}"
        )
    if not any(m.direction in ("sendonly", "sendrecv") for m in videos):
        raise Unprocessable("the offer's video is not sent (direction must be sendonly)")
    return {m.kind for m in parsed.media if m.port != 0}


async def accept_offer(sdp: str) -> tuple[RTCPeerConnection, MediaInfo]:
    """A peer connection with the offer applied, and what it will carry."""
    kinds = _check_offer(sdp)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        # aiortc answers in the offer's codec order (browsers put VP8 first): recvonly
        # transceivers with preferences, added before the offer, make H.264 win.
        pc.addTransceiver("video", direction="recvonly").setCodecPreferences(
            preferences("video", VIDEO_CODECS)
        )
        if "audio" in kinds:  # one the offer does not match would leave the answer unmade
            pc.addTransceiver("audio", direction="recvonly").setCodecPreferences(
                preferences("audio", AUDIO_CODECS)
            )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
    except Exception as err:  # noqa: BLE001 aiortc raises what its state machine meets
        await pc.close()
        raise BadRequest(f"SDP offer rejected: {err}") from None
    unmatched = [t.kind for t in pc.getTransceivers() if t.receiver.transport is None]
    if unmatched:
        # A transceiver of ours no section of the offer took (a mangled audio section, say,
        # seen by the fuzzing of issue 13 in 11 of 4375 offers): aiortc's connecting task
        # would fail on it after the answer, the session half made; and its close() trips on
        # it too, after stopping what it could.
        with contextlib.suppress(AttributeError):
            await pc.close()
        raise BadRequest(f"SDP offer: no usable {' or '.join(unmatched)} section")
    codecs = {t.kind: t._codecs for t in pc.getTransceivers() if t._codecs}
    video = next((c.name for c in codecs.get("video", []) if c.name in VIDEO_CODECS), "")
    audio = next((c.name for c in codecs.get("audio", []) if c.name in AUDIO_CODECS), "")
    if not video:
        await pc.close()
        raise Unprocessable("no video codec in common with the offer")
    sprop = next(
        (
            c.parameters.get("sprop-parameter-sets")
            for c in codecs.get("video", [])
            if c.name == video
        ),
        None,
    )
    return pc, MediaInfo(video, audio, _parameter_sets(sprop))


def _parameter_sets(sprop: object) -> bytes:
    """RFC 6184 sprop-parameter-sets (base64 NAL units, comma-separated) as Annex B."""
    if not isinstance(sprop, str):
        return b""
    try:
        units = [base64.b64decode(part, validate=True) for part in sprop.split(",") if part]
    except ValueError:
        logger.warning("ignoring unreadable sprop-parameter-sets %r", sprop[:100])
        return b""
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in units if unit)


class Connection:
    """A camera's peer connection within its session."""

    def __init__(
        self,
        resource_id: str,
        session_id: str,
        pc: RTCPeerConnection,
        media: MediaInfo,
        owner: ConnectionOwner,
        sinks: Sequence[FrameCallback],
        on_sender_report: SenderReportCallback,
        metrics: Metrics,
        monotonic: Callable[[], float],
        media_timeout: float,
        lean: bool = True,
    ) -> None:
        self.resource_id = resource_id
        self.session_id = session_id
        self.pc = pc
        self.media = media
        self._owner = owner
        self._sinks = tuple(sinks)
        self._monotonic = monotonic
        self._media_timeout = media_timeout
        self._created = self.last_media = monotonic()
        self._got_media = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._counted = {"video": 0, "audio": 0}
        self._sink_failures = 0
        self._last_sink_log = float("-inf")
        self._frames = {kind: metrics.frames.labels(kind) for kind in ("video", "audio")}
        self._metrics = metrics
        self._leans: list[LeanReceiver] = []
        self._lean_counted = (0, 0, 0)  # incomplete frames, fast and first packets published
        self._log = bind(logger, session_id=session_id)
        self._lean = lean
        tap_receivers(pc, on_sender_report, self._on_frame)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_state)

    async def answer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        retrieve_connecting(self.pc)
        if self._lean:
            self._leans = receive_lean(self.pc)
        return str(self.pc.localDescription.sdp)

    def start(self) -> None:
        self._spawn(self._watch())

    def silent_for(self, seconds: float) -> bool:
        return self._monotonic() - self.last_media > seconds

    def request_keyframe(self) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "video":
                self._spawn(self._pli(transceiver.receiver))

    async def close(self) -> None:
        """Close the peer connection: no frame comes after this returns."""
        if self._closed:
            return
        self._closed = True
        current = asyncio.current_task()
        helpers = [t for t in self._tasks if t is not current]
        for task in helpers:
            task.cancel()
        try:
            await self.pc.close()
        except Exception as err:  # noqa: BLE001 the session must end whatever aiortc trips on
            self._log.warning(
                "session %s: the peer connection closed with an error: %r", self.session_id, err
            )
        self._flush_counts()
        await asyncio.gather(*helpers, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pli(self, receiver: RTCRtpReceiver) -> None:
        if not await request_keyframe(receiver):
            self._log.debug("session %s: keyframe wanted, no video source yet", self.session_id)

    def _on_frame(self, frame: EncodedFrame) -> None:
        """Every encoded frame, called by the tap inside aiortc's RTP handler: stay small."""
        if self._closed:
            return
        self.last_media = self._monotonic()
        self._got_media = True
        self._counted[frame.kind] += 1
        for sink in self._sinks:
            try:
                sink(frame)
            except Exception:  # noqa: BLE001 logged: a frame no sink expected must not end
                # the session (raised here, it would close the camera's DTLS transport)
                self._sink_failed()

    def _sink_failed(self) -> None:
        now = self._monotonic()
        self._sink_failures += 1
        if now - self._last_sink_log >= SINK_LOG_SECONDS:
            self._last_sink_log = now
            self._log.exception(
                "session %s: a frame could not be handled (%d so far); the session goes on",
                self.session_id,
                self._sink_failures,
            )

    def _flush_counts(self) -> None:
        # Counting in plain ints and publishing twice a second spares a lock per frame.
        for kind, count in self._counted.items():
            if count:
                self._frames[kind].inc(count)
                self._counted[kind] = 0
        if self._leans:
            now = (
                sum(lean.dropped_frames() for lean in self._leans),
                sum(lean.fast for lean in self._leans),
                sum(lean.first for lean in self._leans),
            )
            incomplete, fast, first = (a - b for a, b in zip(now, self._lean_counted, strict=True))
            self._lean_counted = now
            self._metrics.frames_incomplete.inc(incomplete)
            self._metrics.rtp_packets.labels("lean").inc(fast)
            self._metrics.rtp_packets.labels("aiortc").inc(first)

    async def _watch(self) -> None:
        timeout = self._media_timeout
        tick = self._monotonic()
        while not self._closed:
            await asyncio.sleep(WATCH_INTERVAL_SECONDS)
            before, tick = tick, self._monotonic()
            if tick - before > PAUSED_SECONDS:
                # The process itself stood still (a stopped VM, SIGSTOP, a long stall): the
                # silence is ours, not the camera's. Its packets waiting in the socket come
                # now; the link is judged from here on.
                self.last_media = max(self.last_media, tick - WATCH_INTERVAL_SECONDS)
            self._flush_counts()
            if self._got_media and self.silent_for(timeout):
                why = f"no media for {timeout:g} s"
            elif (
                not self._got_media and self._monotonic() - self._created > CONNECT_TIMEOUT_SECONDS
            ):
                why = f"no media {CONNECT_TIMEOUT_SECONDS:g} s after the answer"
            else:
                continue
            # through the owner: losing the link closes this connection, and this task
            self._owner.spawn(self, partial(self._owner.link_lost, self, why))
            return

    async def _on_state(self) -> None:
        state = self.pc.connectionState
        if state in ("failed", "closed") and not self._closed:
            await self._owner.link_lost(self, f"connection {state}")

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != TELEMETRY_LABEL:
            self._log.warning(
                "session %s: ignoring data channel %r", self.session_id, channel.label
            )
            return
        channel.on("message", partial(self._owner.telemetry, self))
