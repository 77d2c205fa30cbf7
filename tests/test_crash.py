"""kill -9 of the gateway mid-recording: after a restart, the catalogue is consistent and
everything but the last couple of seconds is on disk, playable and sealed."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import timedelta
from pathlib import Path

from bodycam import devices
from bodycam.clock import SystemClock
from bodycam.config import Config
from bodycam.evidence import sealed
from bodycam.evidence.keyring import segment_label
from bodycam.media.recovery import media_seconds
from bodycam.models import GENESIS_HASH, SessionState
from bodycam.store import SqliteStore
from simulators.axis_bodycam import AxisBodycam

from .helpers import free_port, serve_process, small_media
from .media_check import session_key

LIVE_BEFORE_KILL = 7.0


async def start_gateway(data: Path, port: int, log: Path) -> asyncio.subprocess.Process:
    return await serve_process(data, port, log, BODYCAM_RECORDING_SEGMENT_SECONDS="3")


async def test_kill_9_mid_recording(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = SqliteStore(data / "bodycam.sqlite3")
    token = await store.run(devices.enroll, store, "cam-1", "", SystemClock().now())
    await asyncio.to_thread(store.close)
    port = free_port()
    gateway = await start_gateway(data, port, tmp_path / "gateway.log")
    media = small_media()
    camera = AxisBodycam(f"http://127.0.0.1:{port}", "cam-1", token, media=media)
    try:
        await camera.prepare()
        await camera.press()
        started = time.time()
        await asyncio.sleep(LIVE_BEFORE_KILL)
        gateway.send_signal(signal.SIGKILL)
        killed = time.time()
        await gateway.wait()
        gateway = await start_gateway(data, port, tmp_path / "gateway.log")  # recovers
    finally:
        await camera.close()
        gateway.terminate()
        await asyncio.wait_for(gateway.wait(), 20)

    store = SqliteStore(data / "bodycam.sqlite3")
    [session] = await store.run(store.list_sessions)
    # the restart interrupted the session (the camera may come back within the grace window)
    assert session.state in (SessionState.INTERRUPTED, SessionState.ENDED)
    segments = await store.run(store.segments_of, session.id)
    assert segments
    assert not [s for s in segments if s.state == "open"]
    # the segment being written when the gateway died is sealed as it was found
    assert segments[-1].state in ("recovered", "empty")
    assert all(s.state == "closed" for s in segments[:-1])
    key = await session_key(Config(data_dir=data), store, session.id)
    previous = GENESIS_HASH
    recorded = 0.0
    for segment in segments:
        path = data / "recordings" / segment.path
        label = segment_label(segment)
        assert sealed.digest(path, key, label)[1] == segment.sha256, f"segment {segment.seq}"
        assert segment.prev_sha256 == previous
        previous = segment.sha256
        seconds = media_seconds(path, key, label)
        assert seconds is not None or segment.state == "empty", f"segment {segment.seq}"
        recorded += seconds or 0.0
    await asyncio.to_thread(store.close)
    # all but the last ~2 s before the kill are on disk (0.5 s measured here)
    lost = (killed - started) - recorded
    assert lost <= 2.0, f"{lost:.2f} s lost"
    last = segments[-1]
    assert last.ended_at is not None
    assert last.ended_at - last.started_at >= timedelta(seconds=0)
