"""Recorded sessions made quickly for the evidence tests: real H.264 through the real
recorder (sealed segments, keys, catalogue), without WebRTC in between."""

from __future__ import annotations

from datetime import datetime, timedelta

from bodycam.config import Config, RecordingConfig
from bodycam.evidence.keyring import Keyring
from bodycam.media.bitstream import h264_is_keyframe
from bodycam.media.recorder import SessionRecorder, StoreCatalogue
from bodycam.media.tap import EncodedFrame
from bodycam.metrics import Metrics
from bodycam.models import Position, Session, SessionState
from bodycam.store import Store

from .helpers import encode

FRAMES = encode("libx264", 160, 120, frames=60, preset="ultrafast", tune="zerolatency", g="30")


async def record_session(
    config: Config,
    store: Store,
    keyring: Keyring,
    session_id: str,
    start: datetime,
    device_id: str = "cam-1",
    officer: str = "Agent Martin",
    segment_seconds: float = 1.0,
) -> Session:
    """An ended session of 2 s of video (two segments), with a short position track."""
    if (await store.run(store.get_device, device_id)) is None:
        await store.run(store.add_device, device_id, officer, f"hash-{device_id}", start)
    await store.run(
        store.create_session,
        Session(session_id, device_id, officer, SessionState.LIVE, start),
        f"r-{session_id}",
    )
    t0 = start.timestamp()
    recorder = SessionRecorder(
        session_id,
        config.recordings_dir,
        StoreCatalogue(store),
        RecordingConfig(segment_seconds=segment_seconds),
        Metrics(),
        monotonic=lambda: 0.0,
        key=await store.run(keyring.session_key, session_id, True),
    )
    timeline = recorder.start_connection({"video"}, "H264", lambda: None)
    for i, data in enumerate(FRAMES):
        frame = EncodedFrame(
            "video", "H264", data, i * 3000, 90000, h264_is_keyframe(data), t0 + i / 30 + 0.02
        )
        recorder.push(frame)
        if i == 0:
            timeline.on_sender_report("video", t0, 0)
    await recorder.close()
    for i in range(3):
        await store.run(
            store.add_position,
            session_id,
            Position(49.12 + i * 1e-4, 6.18, 5.0, start + timedelta(seconds=i)),
        )
    end = start + timedelta(seconds=2)
    await store.run(store.end_session, session_id, "button", end)
    session = await store.run(store.get_session, session_id)
    assert session is not None
    return session
