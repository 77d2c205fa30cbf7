"""Reopen a recording with PyAV and measure what the tests assert on."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from bodycam.config import Config
from bodycam.evidence import sealed
from bodycam.evidence.keyring import Keyring, segment_label
from bodycam.models import Segment
from bodycam.store import Store
from simulators.testsignal import beep_onsets, is_flash, read_frame_counter


@dataclass
class Analysis:
    video_codec: str
    audio_codec: str
    width: int
    height: int
    frames: int = 0
    first_time: float = 0.0
    last_time: float = 0.0
    counters: list[int | None] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # each frame's, as recorded
    flash_times: list[float] = field(default_factory=list)
    beep_times: list[float] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.last_time - self.first_time

    def counter_steps(self) -> list[int]:
        """Differences between consecutive readable counters (1 everywhere when continuous)."""
        readable = [c for c in self.counters if c is not None]
        return [b - a for a, b in itertools.pairwise(readable)]

    def av_offsets(self) -> list[float]:
        """For each flash, beep time minus flash time (nearest beep)."""
        return [
            min((b - f for b in self.beep_times), key=abs)
            for f in self.flash_times
            if self.beep_times
        ]


def analyse(path: Path) -> Analysis:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        result = Analysis(
            video.codec_context.name,
            audio.codec_context.name if audio else "",
            video.codec_context.width,
            video.codec_context.height,
        )
        times: list[float] = []
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="gray")
            times.append(float(frame.time))
            result.counters.append(read_frame_counter(image))
            if is_flash(image):
                result.flash_times.append(float(frame.time))
        result.frames = len(times)
        result.times = times
        result.first_time, result.last_time = min(times), max(times)
    if audio is not None:
        with av.open(str(path)) as container:
            chunks: list[Any] = []
            start = 0.0
            for n, sound in enumerate(container.decode(audio=0)):
                if n == 0:
                    start = float(sound.time or 0.0)
                chunks.append(
                    sound.to_ndarray().reshape(sound.layout.nb_channels, -1)
                    if sound.format.is_planar
                    else sound.to_ndarray()
                )
            if chunks:
                samples = np.concatenate([c if c.shape[0] <= 2 else c.T for c in chunks], axis=1)
                result.beep_times = [start + t for t in beep_onsets(samples, 48000)]
    return result


async def session_key(config: Config, store: Store, session_id: str) -> bytes:
    """A session's key, from the gateway's keys loaded as the command line loads them (never
    creating one)."""
    keyring = await store.run(Keyring.load, config, store, False)
    return await store.run(keyring.session_key, session_id)


async def reveal(config: Config, store: Store, segment: Segment, out_dir: Path) -> Path:
    """Decrypt a sealed segment into `out_dir` (tests reopen recordings with PyAV)."""
    key = await session_key(config, store, segment.session_id)
    out = out_dir / f"{segment.session_id}-{segment.seq:05d}.mkv"
    source = config.recordings_dir / segment.path
    await asyncio.to_thread(_decrypt, source, key, segment_label(segment), out)
    return out


def _decrypt(source: Path, key: bytes, label: str, out: Path) -> None:
    with open(out, "wb") as f:
        for chunk in sealed.read_plaintext(source, key, label):
            f.write(chunk)
