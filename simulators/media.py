"""Encoded audio and video tracks of a simulated body camera, paced in real time.

The tracks' `recv()` return encoded `av.Packet`s (H.264 Annex B or VP8, and Opus), which
aiortc's RTCRtpSender packetizes without re-encoding (`_next_encoded_frame` calls the
codec's `pack`). Video is drawn by `testsignal.TestCard`; sound by `testsignal.synth_audio`.

Media time: the tracks of one connection share a `MediaClock` whose origin is the first
`recv()`. A packet with media time m (its pts times its time base) is handed to aiortc at
origin + m on the wall clock, so RTP send times, and hence arrival times and RTCP sender
reports, put a flash frame and its beep at the same instant.

Encode modes:

- live: each frame is drawn and encoded in a worker thread just before it is due; keyframe
  requests (PLI/FIR) force an IDR; the overlay clock is the wall clock; the frame counter is
  the number of frame periods since the camera was switched on, so it jumps across a link drop.
- loop: `loop_seconds` of video are encoded once (keyframe every second) and replayed with
  advancing pts; the overlay clock is the loop clock and the counter wraps modulo the loop's
  frame count. A `LoopCache` shared by a fleet encodes each distinct loop once.

Sound is periodic (one flash interval), so in both modes it is encoded once per settings and
replayed: encoding 20 ms of Opus per camera per frame would buy nothing audible.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from simulators.testsignal import (
    AUDIO_RATE,
    BEEP_SECONDS,
    COUNTER_MODULO,
    TestCard,
    beep_onsets,
    is_flash,
    media_clock_text,
    read_frame_counter,
    synth_audio,
    wall_clock_text,
)

__all__ = [
    "EncodedLoop",
    "LiveVideoTrack",
    "LoopCache",
    "LoopTrack",
    "MediaClock",
    "MediaCounters",
    "MediaSettings",
    "beep_onsets",
    "encode_audio_loop",
    "encode_video_loop",
    "is_flash",
    "read_frame_counter",
]

logger = logging.getLogger(__name__)

VIDEO_CLOCK = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
AUDIO_FRAME = 960  # 20 ms, what WebRTC peers expect of Opus
# Frames per second must divide both clocks so every frame starts on a whole RTP tick and a
# whole audio sample: then a flash and its beep share a media instant exactly.
_CLOCKS_GCD = math.gcd(VIDEO_CLOCK, AUDIO_RATE)
T = TypeVar("T")
_NONE = av.video.frame.PictureType.NONE


def _whole(value: float, what: str) -> int:
    if abs(value - round(value)) > 1e-6:
        raise ValueError(f"{what} must be a whole number, got {value}")
    return round(value)


@dataclass(frozen=True)
class MediaSettings:
    """What a simulated camera sends: codec, picture size and rate, flash pattern, mode."""

    codec: str = "h264"
    width: int = 1280
    height: int = 720
    fps: int = 30
    bitrate: int | None = None  # video bit/s; None: 2 Mbit/s at 720p, scaled by pixels
    encode: str = "live"
    loop_seconds: int = 9
    flash_interval: float = 3.0
    flash_offset: float = 1.0
    keyframe_interval: float = 2.0  # live mode; loops have one keyframe a second
    audio_bitrate: int = 32000

    def __post_init__(self) -> None:
        if self.codec not in ("h264", "vp8"):
            raise ValueError(f"codec must be h264 or vp8, not {self.codec!r}")
        if self.encode not in ("live", "loop"):
            raise ValueError(f"encode must be live or loop, not {self.encode!r}")
        if self.width < 96 or self.height < 96 or self.width % 2 or self.height % 2:
            raise ValueError(f"size {self.width}x{self.height} must be even and at least 96")
        if self.fps <= 0 or _CLOCKS_GCD % self.fps:
            raise ValueError(f"fps {self.fps} must divide {_CLOCKS_GCD} (e.g. 15, 25, 30)")
        _whole(self.flash_interval * self.fps, "flash_interval × fps")
        _whole(self.flash_interval * AUDIO_RATE / AUDIO_FRAME, "flash_interval / 20 ms")
        _whole(self.flash_offset * self.fps, "flash_offset × fps")
        if not 0 <= self.flash_offset <= self.flash_interval - BEEP_SECONDS:
            raise ValueError("flash_offset must leave the 100 ms beep inside the interval")
        if self.loop_seconds < 1 or self.loop_frames % self.interval_frames:
            raise ValueError("loop_seconds must be a whole multiple of flash_interval")

    @property
    def video_bitrate(self) -> int:
        """Target video bit rate in bit/s."""
        if self.bitrate is not None:
            return self.bitrate
        return max(150_000, round(2_000_000 * self.width * self.height / (1280 * 720)))

    @property
    def frame_ticks(self) -> int:
        """Length of one frame in 90 kHz ticks."""
        return VIDEO_CLOCK // self.fps

    @property
    def interval_frames(self) -> int:
        """Frames between two flashes."""
        return round(self.flash_interval * self.fps)

    @property
    def offset_frames(self) -> int:
        """Index of the first flash frame of a track."""
        return round(self.flash_offset * self.fps)

    @property
    def loop_frames(self) -> int:
        """Frames in one loop (loop mode)."""
        return self.loop_seconds * self.fps

    def flash(self, index: int) -> bool:
        """Whether frame `index` of a track is a flash (exactly one frame per interval)."""
        offset, interval = self.offset_frames, self.interval_frames
        return index >= offset and (index - offset) % interval == 0


def open_video_encoder(settings: MediaSettings, keyframe_frames: int) -> Any:
    """A libx264 or libvpx encoder tuned for live WebRTC (no B-frames, no lookahead)."""
    codec = "libx264" if settings.codec == "h264" else "libvpx"
    context: Any = av.CodecContext.create(codec, "w")
    context.width, context.height = settings.width, settings.height
    context.pix_fmt = "yuv420p"
    context.framerate = fractions.Fraction(settings.fps, 1)
    context.time_base = fractions.Fraction(1, settings.fps)
    context.bit_rate = settings.video_bitrate
    context.gop_size = keyframe_frames
    if settings.codec == "h264":
        kbit = settings.video_bitrate // 1000
        context.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            # x264's baseline is constrained baseline, what aiortc's 42e01f offers.
            "profile": "baseline",
            # A forced keyframe (pict_type I) must be an IDR, or a receiver joining on it
            # cannot decode.
            "forced-idr": "1",
            # repeat-headers puts SPS/PPS before every IDR, in-band, so any keyframe is a
            # place to start decoding: nothing carries sprop-parameter-sets in WebRTC.
            "x264-params": (
                f"repeat-headers=1:bframes=0:scenecut=0:keyint={keyframe_frames}"
                f":min-keyint={keyframe_frames}:vbv-maxrate={kbit}:vbv-bufsize={kbit}"
            ),
        }
    else:
        context.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
            "error-resilient": "1",
            "keyint_min": str(keyframe_frames),
        }
    return context


def open_audio_encoder(settings: MediaSettings) -> Any:
    """A mono Opus encoder producing 20 ms packets."""
    context: Any = av.CodecContext.create("libopus", "w")
    context.sample_rate = AUDIO_RATE
    context.layout = "mono"
    context.format = "s16"
    context.bit_rate = settings.audio_bitrate
    context.time_base = AUDIO_TIME_BASE
    # CELT-only low delay mode keeps the beep's onset sharp (2.5 ms lookahead, no SILK).
    context.options = {"application": "lowdelay", "frame_duration": "20"}
    return context


@dataclass(frozen=True)
class EncodedLoop:
    """Encoded frames of one period, replayed forever with pts advanced by the period."""

    payloads: tuple[bytes, ...]
    pts: tuple[int, ...]
    period: int
    time_base: fractions.Fraction
    keyframes: tuple[bool, ...]

    def pts_of(self, n: int) -> int:
        """The pts of the n-th packet of the endless replay."""
        cycle, j = divmod(n, len(self.payloads))
        return cycle * self.period + self.pts[j]

    def packet(self, n: int) -> av.Packet[Any]:
        """The n-th packet of the endless replay."""
        j = n % len(self.payloads)
        packet = av.Packet(self.payloads[j])
        packet.pts = packet.dts = self.pts_of(n)
        packet.time_base = self.time_base
        packet.is_keyframe = self.keyframes[j]
        return packet


def encode_video_loop(label: str, settings: MediaSettings) -> EncodedLoop:
    """Draw and encode one loop of video (blocking: run it in a thread)."""
    started = time.perf_counter()
    card = TestCard(label, settings.width, settings.height, settings.fps)
    encoder = open_video_encoder(settings, keyframe_frames=settings.fps)
    payloads: list[bytes] = []
    keyframes: list[bool] = []
    for j in range(settings.loop_frames):
        frame = card.render(j, j, "LOOP " + media_clock_text(j / settings.fps), settings.flash(j))
        frame.pts = j
        # Loops start on an IDR (and have one each second), so replay can restart anywhere
        # on a second boundary without a reference to an earlier loop.
        frame.pict_type = av.video.frame.PictureType.I if j % settings.fps == 0 else _NONE
        packets = encoder.encode(frame)
        payloads.append(b"".join(bytes(p) for p in packets))
        keyframes.append(any(p.is_keyframe for p in packets))
    if not all(payloads):
        raise RuntimeError(f"{settings.codec} encoder held frames back: expected one per frame")
    logger.info(
        "encoded %s loop for %s: %d frames, %.0f kbit/s, %.1f s",
        settings.codec,
        label,
        len(payloads),
        sum(map(len, payloads)) * 8 / settings.loop_seconds / 1000,
        time.perf_counter() - started,
    )
    return EncodedLoop(
        payloads=tuple(payloads),
        pts=tuple(j * settings.frame_ticks for j in range(settings.loop_frames)),
        period=settings.loop_frames * settings.frame_ticks,
        time_base=VIDEO_TIME_BASE,
        keyframes=tuple(keyframes),
    )


def encode_audio_loop(settings: MediaSettings) -> EncodedLoop:
    """Encode one flash interval of sound as Opus packets (blocking: run it in a thread).

    Two periods are encoded and the second kept, so the encoder state at the start of the
    kept period is what the decoder holds when the replay wraps around. Packet pts are the
    encoder's, which already subtract its lookahead: a packet with pts p decodes to the
    samples from p on, so a beep lands on the sample where it was synthesised.
    """
    period = round(settings.flash_interval * AUDIO_RATE)
    offset = settings.offset_frames * AUDIO_RATE // settings.fps
    encoder = open_audio_encoder(settings)
    per_period = period // AUDIO_FRAME
    kept: list[tuple[int, bytes]] = []
    for m in range(2 * per_period + 1):
        pcm = synth_audio(m * AUDIO_FRAME, AUDIO_FRAME, period, offset)
        frame = av.AudioFrame.from_ndarray(
            np.round(pcm * 32767).astype(np.int16)[None, :], format="s16", layout="mono"
        )
        frame.sample_rate = AUDIO_RATE
        frame.pts = m * AUDIO_FRAME
        for packet in encoder.encode(frame):
            assert packet.pts is not None
            if period <= packet.pts < 2 * period:
                kept.append((packet.pts - period, bytes(packet)))
    if len(kept) != per_period:
        raise RuntimeError(f"Opus gave {len(kept)} packets for {per_period} frames")
    return EncodedLoop(
        payloads=tuple(p for _, p in kept),
        pts=tuple(pts for pts, _ in kept),
        period=period,
        time_base=AUDIO_TIME_BASE,
        keyframes=(True,) * len(kept),
    )


class LoopCache:
    """Encoded loops shared by the simulated cameras of a process, each built once.

    Futures are `concurrent.futures` ones so one cache serves several event loops (tests).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[Hashable, concurrent.futures.Future[Any]] = {}

    async def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The value for `key`, built by `build()` in a thread by the first caller."""
        with self._lock:
            future = self._futures.get(key)
            owner = future is None
            if future is None:
                future = self._futures[key] = concurrent.futures.Future()
        if not owner:
            return await asyncio.wrap_future(future)
        try:
            value = await asyncio.to_thread(build)
        except BaseException as err:
            with self._lock:
                del self._futures[key]
            future.set_exception(RuntimeError(f"building {key!r} failed: {err!r}"))
            raise
        future.set_result(value)
        return value


class MediaClock:
    """The wall-clock origin shared by the tracks of one connection."""

    def __init__(self) -> None:
        self.origin: float | None = None
        self.wall_origin = 0.0

    def start(self) -> None:
        """Set the origin on the first call (the first `recv()` of any track)."""
        if self.origin is None:
            self.origin = asyncio.get_running_loop().time()
            self.wall_origin = time.time()

    def elapsed(self) -> float:
        """Seconds since the origin."""
        assert self.origin is not None
        return asyncio.get_running_loop().time() - self.origin

    async def sleep_until(self, media_time: float) -> None:
        """Sleep until `media_time` after the origin; due times are absolute, so no drift."""
        delay = media_time - self.elapsed()
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass
class MediaCounters:
    """What a camera has sent, across all its connections."""

    video_frames: int = 0
    audio_packets: int = 0
    keyframes_forced: int = 0


class LoopTrack(MediaStreamTrack):
    """A track replaying an `EncodedLoop` in real time (video loops and all sound)."""

    def __init__(
        self, kind: str, loop: EncodedLoop, clock: MediaClock, counters: MediaCounters
    ) -> None:
        super().__init__()
        self.kind = kind
        # Not `_loop`: the event emitter base class keeps its asyncio loop under that name.
        self._encoded = loop
        self._clock = clock
        self._counters = counters
        self._next = 0

    def request_keyframe(self) -> None:
        """Ignore keyframe requests: loops carry a keyframe every second anyway."""

    async def recv(self) -> av.Packet[Any]:
        """The next packet, returned when it is due."""
        if self.readyState != "live":
            raise MediaStreamError
        self._clock.start()
        packet = self._encoded.packet(self._next)
        due = float(self._encoded.pts_of(self._next) * self._encoded.time_base)
        self._next += 1
        await self._clock.sleep_until(due)
        if self.readyState != "live":
            raise MediaStreamError
        if self.kind == "video":
            self._counters.video_frames += 1
        else:
            self._counters.audio_packets += 1
        return packet


class LiveVideoTrack(MediaStreamTrack):
    """A video track drawing and encoding each frame in a worker thread as it falls due."""

    kind = "video"

    def __init__(
        self,
        label: str,
        settings: MediaSettings,
        clock: MediaClock,
        counters: MediaCounters,
        switched_on: float,
    ) -> None:
        super().__init__()
        self._settings = settings
        self._clock = clock
        self._counters = counters
        self._switched_on = switched_on  # wall time the frame counter counts from
        self._card = TestCard(label, settings.width, settings.height, settings.fps)
        self._encoder: Any = None
        self._next = 0
        self._keyframe_wanted = False

    def request_keyframe(self) -> None:
        """Make the next frame an IDR (called on PLI/FIR from the receiver)."""
        self._keyframe_wanted = True

    def _encode(self, index: int, counter: int, clock: str, keyframe: bool) -> bytes:
        settings = self._settings
        if self._encoder is None:
            frames = max(1, round(settings.keyframe_interval * settings.fps))
            self._encoder = open_video_encoder(settings, keyframe_frames=frames)
        frame = self._card.render(index, counter, clock, settings.flash(index))
        frame.pts = index
        frame.pict_type = av.video.frame.PictureType.I if keyframe else _NONE
        return b"".join(bytes(p) for p in self._encoder.encode(frame))

    async def recv(self) -> av.Packet[Any]:
        """The next encoded frame, returned when it is due."""
        settings = self._settings
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            self._clock.start()
            index = self._next
            due = self._clock.elapsed() * settings.fps
            if due - index > 2:
                # Behind by more than two frames (a busy machine): skip like a camera whose
                # encoder cannot keep up; the counter shows the gap.
                index = math.floor(due)
            keyframe, self._keyframe_wanted = self._keyframe_wanted, False
            if keyframe:
                self._counters.keyframes_forced += 1
            wall = self._clock.wall_origin + index / settings.fps
            counter = round((self._clock.wall_origin - self._switched_on) * settings.fps)
            counter = (counter + index) % COUNTER_MODULO
            payload = await asyncio.to_thread(
                self._encode, index, counter, wall_clock_text(wall), keyframe
            )
            self._next = index + 1
            await self._clock.sleep_until(index / settings.fps)
            if payload:
                break
        if self.readyState != "live":
            raise MediaStreamError
        packet = av.Packet(payload)
        packet.pts = packet.dts = index * settings.frame_ticks
        packet.time_base = VIDEO_TIME_BASE
        self._counters.video_frames += 1
        return packet
