"""Simulator media: counters and flashes survive encoding, beeps land on flashes, pacing holds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from simulators.media import (
    AUDIO_TIME_BASE,
    VIDEO_TIME_BASE,
    LiveVideoTrack,
    LoopCache,
    LoopTrack,
    MediaClock,
    MediaCounters,
    MediaSettings,
    beep_onsets,
    encode_audio_loop,
    encode_video_loop,
    is_flash,
    open_video_encoder,
    read_frame_counter,
)
from simulators.testsignal import (
    COUNTER_MODULO,
    TestCard,
    counter_cells,
    strip_geometry,
    synth_audio,
)

LOOP = MediaSettings(
    width=320, height=240, fps=30, encode="loop", loop_seconds=2, flash_interval=1.0,
    flash_offset=0.5,
)  # fmt: skip


def decoder_for(codec: str) -> Any:
    return av.CodecContext.create("h264" if codec == "h264" else "vp8", "r")


def nal_types(payload: bytes) -> list[int]:
    """NAL unit types of an Annex B access unit, in order."""
    types = []
    i = payload.find(b"\x00\x00\x01")
    while i >= 0:
        types.append(payload[i + 3] & 0x1F)
        i = payload.find(b"\x00\x00\x01", i + 3)
    return types


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_loop_counters_flashes_keyframes(codec: str) -> None:
    settings = MediaSettings(**{**LOOP.__dict__, "codec": codec})
    loop = encode_video_loop("cam-17", settings)
    decoder = decoder_for(codec)
    counters, flashes, pts = [], [], []
    for n in range(2 * settings.loop_frames):
        packet = loop.packet(n)
        pts.append(packet.pts)
        for frame in decoder.decode(packet):
            gray = frame.to_ndarray(format="gray")
            counters.append(read_frame_counter(gray))
            flashes.append(is_flash(gray))
    frames = settings.loop_frames
    # The counter wraps with the loop; the replay continues the pts without a jump.
    assert counters == list(range(frames)) * 2
    assert [i for i, f in enumerate(flashes) if f] == [15, 45, 75, 105]
    assert pts == [n * 3000 for n in range(2 * frames)]
    assert [i for i, k in enumerate(loop.keyframes) if k] == [0, 30]
    assert loop.time_base == VIDEO_TIME_BASE
    if codec == "h264":
        key = nal_types(loop.payloads[0])
        # Annex B, SPS and PPS in front of the IDR, so any keyframe starts a decoder.
        assert loop.payloads[0].startswith(b"\x00\x00\x00\x01")
        assert key.index(7) < key.index(8) < key.index(5)
        assert 5 in nal_types(loop.payloads[30])
        assert 7 in nal_types(loop.payloads[30])
        assert all(5 not in nal_types(p) and 7 not in nal_types(p) for p in loop.payloads[1:30])


@pytest.mark.parametrize("size", [(320, 240), (640, 360), (1280, 720)])
@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_counter_readable_at_every_size(codec: str, size: tuple[int, int]) -> None:
    settings = MediaSettings(codec=codec, width=size[0], height=size[1])
    card = TestCard("cam-17", *size, fps=30)
    encoder = open_video_encoder(settings, keyframe_frames=60)
    decoder = decoder_for(codec)
    start = COUNTER_MODULO - 4  # crosses the wrap to 0
    read = []
    for i in range(8):
        frame = card.render(i, (start + i) % COUNTER_MODULO, "12:00:00.000", flash=i == 3)
        frame.pts = i
        for packet in encoder.encode(frame):
            for decoded in decoder.decode(packet):
                array = decoded.to_ndarray(format="rgb24")
                read.append((read_frame_counter(array), is_flash(array)))
    assert read == [((start + i) % COUNTER_MODULO, i == 3) for i in range(8)]


def test_counter_reader_refuses_what_it_cannot_read() -> None:
    rng = np.random.default_rng(7)
    assert read_frame_counter(rng.integers(0, 256, (240, 320), dtype=np.uint8)) is None
    assert read_frame_counter(np.full((240, 320, 3), 128, dtype=np.uint8)) is None
    frame = TestCard("cam", 320, 240, 30).render(0, 12345, "00:00:00.000", False)
    gray = frame.to_ndarray(format="gray")
    assert read_frame_counter(gray) == 12345
    # Flip one counter cell (both blocks): the parity bits catch it.
    _, top, row, edges = strip_geometry(320, 240)
    flipped = gray.copy()
    cell = (slice(top, top + 2 * row), slice(edges[5], edges[6]))
    flipped[cell] = 255 - flipped[cell]
    assert read_frame_counter(flipped) is None
    assert not is_flash(gray)
    assert counter_cells(0)[:2] == [1, 0]
    assert len(counter_cells(0)) == 24


def test_beeps_start_on_flash_frames() -> None:
    audio = encode_audio_loop(LOOP)
    video = encode_video_loop("cam-17", LOOP)
    assert audio.time_base == AUDIO_TIME_BASE
    assert all(len(p) > 0 for p in audio.payloads)

    decoder: Any = av.CodecContext.create("opus", "r")
    periods = 3
    samples = np.zeros(periods * audio.period + 960, dtype=np.float32)
    for n in range(periods * len(audio.payloads)):
        for frame in decoder.decode(audio.packet(n)):
            pcm = frame.to_ndarray().mean(axis=0)
            # pts places each decoded block: the encoder's pts already account for its delay.
            samples[frame.pts : frame.pts + len(pcm)] = pcm
    onsets = beep_onsets(samples, 48000)

    flash_times = [
        float((video.packet(n).pts or 0) * VIDEO_TIME_BASE)
        for n in range(periods * LOOP.fps)
        if LOOP.flash(n % LOOP.loop_frames)
    ]
    assert len(onsets) == len(flash_times) == periods
    # The beep's first loud sample comes a fraction of a millisecond after its start;
    # one audio frame (20 ms) is the contract, a millisecond is what the encoding gives.
    assert all(abs(a - v) < 0.001 for a, v in zip(onsets, flash_times, strict=True))


def test_beep_onsets_of_raw_audio_in_any_layout() -> None:
    pcm = synth_audio(0, 3 * 48000, interval=48000, offset=12000)
    # The first loud sample comes 5 samples (0.1 ms) into the beep.
    assert beep_onsets(pcm) == pytest.approx([0.25, 1.25, 2.25], abs=0.0002)
    stereo = np.round(np.stack([pcm, pcm]) * 32767).astype(np.int16)
    assert beep_onsets(stereo) == beep_onsets(stereo.T) == beep_onsets(pcm)
    assert beep_onsets(np.zeros(48000)) == []


async def test_live_tracks_pace_in_real_time_and_honour_keyframe_requests() -> None:
    settings = MediaSettings(width=320, height=240, fps=30, flash_interval=1.0, flash_offset=0.2)
    clock, counters = MediaClock(), MediaCounters()
    video = LiveVideoTrack("cam-17", settings, clock, counters, switched_on=time.time())
    audio = LoopTrack("audio", encode_audio_loop(settings), clock, counters)
    decoder = decoder_for("h264")

    async def pull_video() -> list[av.Packet[Any]]:
        # decoded afterwards: decoding here would hold this loop and make the next packet
        # look late (0.19 s once, on a loaded CI machine)
        packets = []
        for n in range(15):
            if n == 10:
                video.request_keyframe()
            packet = await video.recv()
            assert packet.pts is not None
            late = clock.elapsed() - float(packet.pts * packet.time_base)
            assert -0.005 < late < 0.030
            packets.append(packet)
        return packets

    def decoded(packets: list[av.Packet[Any]]) -> list[tuple[int, bool, int | None, bool]]:
        out = []
        for packet in packets:
            assert packet.pts is not None
            idr = 5 in nal_types(bytes(packet))
            for frame in decoder.decode(packet):
                gray = frame.to_ndarray(format="gray")
                out.append((packet.pts, idr, read_frame_counter(gray), is_flash(gray)))
        return out

    async def pull_audio() -> list[int]:
        return [(await audio.recv()).pts or 0 for _ in range(20)]

    started = time.monotonic()
    packets, audio_pts = await asyncio.gather(pull_video(), pull_audio())
    elapsed = time.monotonic() - started
    frames = decoded(packets)
    # 15 frames at 30 fps are due over 14/30 s; 20 audio packets end at 0.4 s.
    assert 0.44 < elapsed < 0.6
    assert [f[0] for f in frames] == [n * 3000 for n in range(15)]
    assert [n for n, f in enumerate(frames) if f[1]] == [0, 10]
    first = frames[0][2]
    assert first is not None
    assert [f[2] for f in frames] == list(range(first, first + 15))
    assert [n for n, f in enumerate(frames) if f[3]] == [6]
    assert audio_pts == [840 + 960 * n for n in range(20)]
    assert counters.keyframes_forced == 1
    assert counters.video_frames == 15
    video.stop()
    with pytest.raises(MediaStreamError):
        await video.recv()


async def test_loop_cache_builds_each_loop_once() -> None:
    cache, builds = LoopCache(), []

    def build() -> str:
        builds.append(1)
        time.sleep(0.05)
        return "loop"

    results = await asyncio.gather(*(cache.get("key", build) for _ in range(5)))
    assert results == ["loop"] * 5
    assert len(builds) == 1
    assert await cache.get("key", build) == "loop"
    assert len(builds) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"codec": "av1"}, "codec"),
        ({"encode": "replay"}, "encode"),
        ({"width": 321}, "even"),
        ({"fps": 29}, "fps"),
        ({"flash_interval": 1.01}, "flash_interval"),
        ({"fps": 25, "flash_interval": 1.0, "flash_offset": 0.96}, "beep"),
        ({"loop_seconds": 4}, "multiple"),
    ],
)
def test_bad_media_settings_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MediaSettings(**changes)
