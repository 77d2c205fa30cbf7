"""Simulator → gateway → recording, reopened with PyAV: the ingest spine end to end."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import av
import pytest
from aiortc.codecs.h264 import H264Decoder
from aiortc.codecs.opus import OpusDecoder
from aiortc.codecs.vpx import Vp8Decoder

from bodycam.config import Config
from bodycam.evidence import sealed
from bodycam.evidence.keyring import segment_label
from bodycam.evidence.recordings import opener, recorded, remux
from bodycam.models import GENESIS_HASH, SessionState
from simulators.axis_bodycam import AxisBodycam

from .helpers import Gateway, make_config, session_of, small_media, wait_for_session
from .media_check import analyse, session_key

LIVE_SECONDS = 7.0


@pytest.fixture(params=["lean", "aiortc"])
def gateway_config(tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    """Both receive paths: bodycam's own, and aiortc's whole one (its baseline)."""
    return make_config(tmp_path / "data", recording_segment_seconds=4, media_receive=request.param)


def decoders_alive() -> list[object]:
    """aiortc's decoders, and any libav decoder context, alive in this process."""
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, H264Decoder | Vp8Decoder | OpusDecoder)
        or (isinstance(o, av.CodecContext) and o.is_decoder)
    ]


@pytest.mark.parametrize("codec", ["h264", "vp8"])
async def test_recording_is_playable_aligned_and_complete(
    gateway: Gateway, codec: str, tmp_path: Path
) -> None:
    token = await gateway.enroll("cam-1", "Brigadier Martin")
    camera = AxisBodycam(gateway.url, "cam-1", token, media=small_media(codec, loop_seconds=9))
    await camera.prepare()
    await camera.press()
    await asyncio.sleep(LIVE_SECONDS / 2)
    # Mid-recording: frames flow through the tap, and no decoder exists anywhere.
    assert gateway.metrics.frames.labels("video")._value.get() > 30
    assert await asyncio.to_thread(decoders_alive) == []  # (a heap scan: not on the loop)
    await asyncio.sleep(LIVE_SECONDS / 2)
    await camera.press()  # stop: the button message ends the session
    sent = camera.frames_sent
    await camera.close()

    [session] = await gateway.store.run(gateway.store.list_sessions)
    await wait_for_session(gateway.store, session.id, SessionState.ENDED)
    session = await session_of(gateway.store, session.id)
    assert session.end_reason == "button"
    assert session.video_codec == {"h264": "H264", "vp8": "VP8"}[codec]
    assert len(await gateway.store.run(gateway.store.positions_of, session.id)) >= LIVE_SECONDS - 2

    segments = await gateway.store.run(gateway.store.segments_of, session.id)
    key = await session_key(gateway.config, gateway.store, session.id)
    assert len(segments) >= 2  # 4-second segments
    previous = GENESIS_HASH
    for segment in segments:
        assert segment.state == "closed"
        path = gateway.config.recordings_dir / segment.path
        digest = await asyncio.to_thread(sealed.digest, path, key, segment_label(segment))
        assert digest == (segment.bytes, segment.sha256)
        assert path.stat().st_size > segment.bytes  # sealed: header, chunk heads and tags
        assert segment.prev_sha256 == previous
        previous = segment.sha256
        assert segment.ended_at is not None
        assert segment.ended_at > segment.started_at

    out = tmp_path / "export.mkv"
    _, readable = await gateway.store.run(recorded, gateway.store, session.id)
    open_segment = opener(gateway.config.recordings_dir, key)
    await asyncio.to_thread(remux, session.started_at, readable, open_segment, out)
    media = await asyncio.to_thread(analyse, out)
    assert media.video_codec == {"h264": "h264", "vp8": "vp8"}[codec]
    assert media.audio_codec == "opus"
    assert (media.width, media.height) == (320, 240)
    assert media.frames == pytest.approx(sent, rel=0.05), (media.frames, sent)
    assert media.duration == pytest.approx(sent / 30, abs=0.5), (media.duration, sent)
    loop = small_media(codec, loop_seconds=9).loop_frames
    steps = [step % loop for step in media.counter_steps()]  # the loop's counter wraps
    assert len(steps) >= 0.95 * media.frames
    jumps = [(i, s) for i, s in enumerate(steps) if s != 1]
    assert not jumps, f"frame counter jumps (index, step): {jumps}"
    offsets = media.av_offsets()
    assert len(offsets) >= LIVE_SECONDS - 2
    assert max(abs(o) for o in offsets) <= 0.1, offsets
    # the path the packets took: bodycam's for all but each stream's first few
    lean = gateway.metrics.rtp_packets.labels("lean")._value.get()
    first = gateway.metrics.rtp_packets.labels("aiortc")._value.get()
    if gateway.config.media.receive == "lean":
        assert lean > 100 * max(first, 1), (lean, first)
        assert gateway.metrics.frames_incomplete._value.get() == 0
    else:
        assert lean == first == 0
