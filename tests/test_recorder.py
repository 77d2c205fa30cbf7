"""The segment logic on real encoded frames: keyframe starts, size changes, rotation."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from bodycam.clock import utc_from_timestamp
from bodycam.config import RecordingConfig
from bodycam.errors import BodycamError, Unprocessable
from bodycam.evidence import sealed
from bodycam.evidence.keyring import segment_label
from bodycam.evidence.recordings import opener, remux
from bodycam.media.bitstream import START_CODE, h264_is_keyframe, h264_keyframe_info, split_annexb
from bodycam.media.recorder import SessionRecorder, StoreCatalogue
from bodycam.media.tap import EncodedFrame
from bodycam.metrics import Metrics
from bodycam.models import Segment, Session, SessionState
from bodycam.store import SqliteStore, Store

from .helpers import encode, session_of

T0 = 1_800_000_000.0
KEY = sealed.new_key()


def video_frames(packets: list[bytes], start: int) -> list[EncodedFrame]:
    """Frames i = start.. at 30 fps, arriving 20 ms after capture on the sender's clock T0."""
    return [
        EncodedFrame(
            "video",
            "H264",
            data,
            (start + i) * 3000,
            90000,
            h264_is_keyframe(data),
            T0 + (start + i) / 30 + 0.02,
        )
        for i, data in enumerate(packets)
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "db.sqlite3")
    started = utc_from_timestamp(T0)
    store.call(store.add_device, "cam-1", "", "hash", started)
    store.call(store.create_session, Session("s1", "cam-1", "", SessionState.LIVE, started), "r1")
    yield store
    store.close()


async def record(
    store: Store,
    tmp_path: Path,
    frames: list[EncodedFrame],
    segment_seconds: float = 60.0,
    parameter_sets: bytes = b"",
    metrics: Metrics | None = None,
) -> list[str]:
    """Push frames through a recorder; returns the keyframe requests it made."""
    asked: list[str] = []
    recorder = SessionRecorder(
        "s1",
        tmp_path / "rec",
        StoreCatalogue(store),
        RecordingConfig(segment_seconds=segment_seconds),
        metrics or Metrics(),
        monotonic=lambda: len(asked) * 10.0,
        key=KEY,
    )
    timeline = recorder.start_connection(
        {"video"}, "H264", lambda: asked.append("pli"), parameter_sets
    )
    for frame in frames:
        recorder.push(frame)
        if frame is frames[0]:
            timeline.on_sender_report("video", T0, 0)  # sender clock: RTP 0 at T0
    await recorder.close()
    return asked


async def h264(width: int, height: int, frames: int, **options: str) -> list[bytes]:
    """Real H.264 frames, encoded on a worker thread (the loop is not the encoder's)."""
    return await asyncio.to_thread(
        encode, "libx264", width, height, frames, preset="ultrafast", tune="zerolatency", **options
    )


async def sizes(store: Store, tmp_path: Path) -> list[tuple[int, int, int]]:
    """(width, height, frames) of each recorded segment, decoded on a worker thread."""
    segments = await store.run(store.segments_of, "s1")
    return await asyncio.to_thread(lambda: [decoded(tmp_path / "rec", s) for s in segments])


def decoded(recordings: Path, segment: Segment) -> tuple[int, int, int]:
    path = recordings / segment.path
    with av.open(sealed.SealedReader(path, KEY, segment_label(segment)), "r") as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.width, stream.codec_context.height, frames


async def test_a_new_picture_size_starts_a_new_segment(store: Store, tmp_path: Path) -> None:
    small = await h264(320, 240, 30)
    large = await h264(640, 360, 30)
    await record(store, tmp_path, video_frames(small, 0) + video_frames(large, 30))
    assert await sizes(store, tmp_path) == [(320, 240, 30), (640, 360, 30)]
    first, second = await store.run(store.segments_of, "s1")
    assert second.started_at == first.ended_at
    assert (second.started_at - first.started_at).total_seconds() == pytest.approx(1.0, abs=0.01)
    assert (first.width, first.height, second.width, second.height) == (320, 240, 640, 360)


async def test_frames_before_the_first_keyframe_ask_for_one(store: Store, tmp_path: Path) -> None:
    packets = await h264(320, 240, 40, g="20")
    frames = video_frames(packets, 0)[5:]  # joined mid-GOP: no keyframe until frame 20
    asked = await record(store, tmp_path, frames)
    assert asked, "no keyframe request was sent"
    assert await sizes(store, tmp_path) == [(320, 240, 20)]  # from the keyframe on, nothing before


async def test_rotation_waits_for_a_keyframe_and_asks_for_it(store: Store, tmp_path: Path) -> None:
    packets = await h264(320, 240, 90, g="45")
    asked = await record(store, tmp_path, video_frames(packets, 0), segment_seconds=1.0)
    # keyframes at 0 and 45: the 1 s segment runs on to frame 45 while PLIs are sent
    assert await sizes(store, tmp_path) == [(320, 240, 45), (320, 240, 45)]
    assert asked


def without_parameter_sets(data: bytes) -> bytes:
    """An access unit with its SPS and PPS taken out (a camera that sends them once)."""
    return b"".join(
        START_CODE + unit for unit in split_annexb(data) if unit[0] & 0x1F not in (7, 8)
    )


async def test_keyframes_without_parameter_sets_reuse_the_last_ones(
    store: Store, tmp_path: Path
) -> None:
    packets = await h264(320, 240, 90, g="30")
    stripped = packets[:1] + [without_parameter_sets(p) for p in packets[1:]]
    await record(store, tmp_path, video_frames(stripped, 0), segment_seconds=1.0)
    assert await sizes(store, tmp_path) == [(320, 240, 30)] * 3


async def test_parameter_sets_from_the_offer(store: Store, tmp_path: Path) -> None:
    packets = await h264(320, 240, 30)
    info = h264_keyframe_info(packets[0])
    assert info is not None
    parameter_sets = info.extradata  # what sprop-parameter-sets gives
    stripped = [without_parameter_sets(p) for p in packets]
    await record(store, tmp_path, video_frames(stripped, 0), parameter_sets=parameter_sets)
    assert await sizes(store, tmp_path) == [(320, 240, 30)]


async def test_a_catalogue_failure_loses_one_segment_not_the_recording(
    store: SqliteStore, tmp_path: Path
) -> None:
    # A real SQLite failure: the catalogue refuses the first (320x240) segment's row.
    with sqlite3.connect(store.path) as db:  # another connection: the trigger is in the file
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON segments WHEN NEW.width = 320"
            " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    small = await h264(320, 240, 30)
    large = await h264(640, 360, 30)
    metrics = Metrics()
    await record(store, tmp_path, video_frames(small, 0) + video_frames(large, 30), metrics=metrics)
    assert await sizes(store, tmp_path) == [(640, 360, 30)]
    assert (await store.run(store.segments_of, "s1"))[0].state == "closed"
    assert metrics.recording_errors._value.get() == 1


async def test_export_errors_are_named(store: Store, tmp_path: Path) -> None:
    await record(
        store,
        tmp_path,
        video_frames(await h264(320, 240, 30), 0),
    )
    [segment] = await store.run(store.segments_of, "s1")
    session = await session_of(store, "s1")
    with pytest.raises(BodycamError, match="nowhere"):
        remux(
            session.started_at,
            [segment],
            opener(tmp_path / "rec", KEY),
            tmp_path / "nowhere" / "out.mkv",
        )
    (tmp_path / "rec" / segment.path).unlink()
    with pytest.raises(Unprocessable, match=r"segment file .* is missing"):
        remux(session.started_at, [segment], opener(tmp_path / "rec", KEY), tmp_path / "out.mkv")
