"""One WHIP connection: the peer connection of a camera, its media pumps and telemetry.

`accept_offer` validates a WHIP offer and applies it to a new recvonly peer connection
(H.264 preferred over VP8, Opus audio); `Connection` then taps the receivers for encoded
frames, hands them to the session's recorder, reads the telemetry channel and watches for
silence, which is how a lost 4G link looks from here.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription

from ..errors import BadRequest, Unprocessable
from ..media.tap import EncodedFrame, request_keyframe, tap_receivers
from ..models import EndReason, Position, SessionState
from . import telemetry

if TYPE_CHECKING:
    from .sessions import LiveSession, SessionManager

logger = logging.getLogger(__name__)

VIDEO_CODECS = ("H264", "VP8")  # in order of preference: Axis cameras send H.264
AUDIO_CODECS = ("opus",)
TELEMETRY_LABEL = "telemetry"
CONNECT_TIMEOUT_SECONDS = 15.0
WATCH_INTERVAL_SECONDS = 0.5
LOGGED_INVALID_TELEMETRY = 5  # then one line in a hundred


@dataclass(frozen=True)
class MediaInfo:
    """What a connection carries, as negotiated."""

    video_codec: str
    audio_codec: str
    parameter_sets: bytes = b""  # H.264 SPS/PPS given in the offer (Annex B)

    @property
    def kinds(self) -> set[str]:
        return {"video", "audio"} if self.audio_codec else {"video"}


def _preferences(kind: str, names: tuple[str, ...]) -> list[Any]:
    capabilities = RTCRtpReceiver.getCapabilities(kind)
    assert capabilities is not None
    chosen = [c for name in names for c in capabilities.codecs if c.name.lower() == name.lower()]
    return chosen + [c for c in capabilities.codecs if c.name.lower() == "rtx"]


def _check_offer(sdp: str) -> None:
    """Refuse, with a reason, an offer the gateway cannot record."""
    if "m=" not in sdp:
        raise BadRequest("body is not an SDP offer (no m= line)")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as err:  # aiortc's parser raises whatever the bad line provokes
        raise BadRequest(f"SDP offer could not be parsed: {err}") from None
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


async def accept_offer(sdp: str) -> tuple[RTCPeerConnection, MediaInfo]:
    """A peer connection with the offer applied, and what it will carry."""
    _check_offer(sdp)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        # aiortc answers in the offer's codec order (browsers put VP8 first): recvonly
        # transceivers with preferences, added before the offer, make H.264 win.
        pc.addTransceiver("video", direction="recvonly").setCodecPreferences(
            _preferences("video", VIDEO_CODECS)
        )
        pc.addTransceiver("audio", direction="recvonly").setCodecPreferences(
            _preferences("audio", AUDIO_CODECS)
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
    except Exception as err:
        await pc.close()
        raise BadRequest(f"SDP offer rejected: {err}") from None
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
        pc: RTCPeerConnection,
        session: LiveSession,
        media: MediaInfo,
        manager: SessionManager,
    ) -> None:
        self.resource_id = resource_id
        self.pc = pc
        self.session = session
        self.media = media
        self._manager = manager
        self._monotonic = manager.clock.monotonic
        self._created = self.last_media = self._monotonic()
        self._got_media = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._counted = {"video": 0, "audio": 0}
        self._frames = {kind: manager.metrics.frames.labels(kind) for kind in ("video", "audio")}
        assert session.recorder is not None
        self._recorder = session.recorder
        timeline = self._recorder.start_connection(
            media.kinds, media.video_codec, self.request_keyframe, media.parameter_sets
        )
        self._relay = session.relay
        self._relay.new_connection(media.parameter_sets)
        self._label = f"session {session.id}"
        tap_receivers(pc, timeline.on_sender_report, self._on_frame)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_state)

    async def answer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

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
        await self.pc.close()
        self._flush_counts()
        await asyncio.gather(*helpers, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pli(self, receiver: RTCRtpReceiver) -> None:
        if not await request_keyframe(receiver):
            logger.debug("%s: keyframe wanted, but no video source yet", self._label)

    def _on_frame(self, frame: EncodedFrame) -> None:
        """Every encoded frame, called by the tap inside aiortc's RTP handler: stay small."""
        if self._closed:
            return
        self.last_media = self._monotonic()
        self._got_media = True
        self._counted[frame.kind] += 1
        self._recorder.push(frame)
        self._relay.push(frame)

    def _flush_counts(self) -> None:
        # Counting in plain ints and publishing twice a second spares a lock per frame.
        for kind, count in self._counted.items():
            if count:
                self._frames[kind].inc(count)
                self._counted[kind] = 0

    async def _watch(self) -> None:
        timeout = self._manager.config.sessions.media_timeout_seconds
        while not self._closed:
            await asyncio.sleep(WATCH_INTERVAL_SECONDS)
            self._flush_counts()
            if self._got_media and self.silent_for(timeout):
                why = f"no media for {timeout:g} s"
            elif (
                not self._got_media and self._monotonic() - self._created > CONNECT_TIMEOUT_SECONDS
            ):
                why = f"no media {CONNECT_TIMEOUT_SECONDS:g} s after the answer"
            else:
                continue
            self._manager.spawn(self.session, partial(self._manager.link_lost, self, why))
            return

    async def _on_state(self) -> None:
        state = self.pc.connectionState
        if state in ("failed", "closed") and not self._closed:
            await self._manager.link_lost(self, f"connection {state}")

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != TELEMETRY_LABEL:
            logger.warning("%s: ignoring data channel %r", self._label, channel.label)
            return
        channel.on("message", self._on_telemetry)

    def _on_telemetry(self, raw: str | bytes) -> None:
        live = self.session
        manager = self._manager
        try:
            message = telemetry.parse(raw, manager.config.telemetry.max_message_bytes)
        except Exception as err:  # never let a camera's message reach aiortc's DTLS loop
            if not isinstance(err, telemetry.TelemetryError):
                logger.exception("%s: telemetry parser failed", self._label)
            live.invalid_telemetry += 1
            manager.metrics.telemetry_invalid.inc()
            n = live.invalid_telemetry
            if n <= LOGGED_INVALID_TELEMETRY or n % 100 == 0:
                logger.warning("%s: invalid telemetry (#%d): %s", self._label, n, err)
            return
        manager.metrics.telemetry.labels(type(message).__name__.lower()).inc()
        store = manager.store
        if isinstance(message, Position):
            if live.state == SessionState.LIVE and live.connection is self:
                manager.position(live, message)
        elif isinstance(message, telemetry.Battery):
            manager.battery(live, message.percent)
        elif isinstance(message, telemetry.ButtonPress):
            logger.info("%s: button pressed on device %s", self._label, live.device.id)
            manager.spawn(live, lambda: manager.end(live, EndReason.BUTTON))
        elif isinstance(message, telemetry.Hello):
            manager.spawn(
                live,
                lambda: store.run(
                    store.set_device_identity,
                    live.device.id,
                    message.serial,
                    message.model,
                    message.firmware,
                ),
            )
