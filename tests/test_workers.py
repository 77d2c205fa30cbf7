"""Media worker processes: placement, a worker killed with SIGKILL, its sessions going on.

These run with `[media] workers = 2` whatever the suite's run uses (`./dev test` runs the
whole suite with workers 0, then 2).
"""

from __future__ import annotations

import asyncio
import os
import signal
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bodycam.config import Config
from bodycam.evidence.recordings import verify_session
from bodycam.gateway.appkeys import keyring_key
from bodycam.gateway.workers import WorkerMedia, WorkerPool
from bodycam.metrics import Metrics
from bodycam.models import Action, SessionState
from simulators.axis_bodycam import AxisBodycam

from .helpers import Gateway, live_of, make_config, session_of, small_media, wait_for
from .whep_client import watch

MEDIA = small_media()


@pytest.fixture
def gateway_config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path / "data",
        media_workers="2",
        recording_segment_seconds=30,
        sessions_grace_seconds=20,
        sessions_media_timeout_seconds=1,
    )


def worker_media(gateway: Gateway, session_id: str) -> WorkerMedia:
    media = live_of(gateway, session_id).media
    assert isinstance(media, WorkerMedia), media
    return media


def pool(gateway: Gateway) -> WorkerPool:
    host = gateway.sessions.host
    assert isinstance(host, WorkerPool)
    return host


def received(gateway: Gateway) -> float:
    """Video frames received, as the main process's /metrics counts them."""
    return float(gateway.metrics.frames.labels("video")._value.get())


async def test_a_killed_worker_interrupts_only_its_sessions(gateway: Gateway) -> None:
    tokens = [await gateway.enroll(f"cam-{n}") for n in (1, 2)]
    cameras = [
        AxisBodycam(gateway.url, f"cam-{n}", t, media=MEDIA)
        for n, t in zip((1, 2), tokens, strict=True)
    ]
    async with cameras[0] as one, cameras[1] as two:
        await one.press()
        await two.press()
        sessions = await gateway.store.run(gateway.store.list_sessions)
        by_device = {s.device_id: s.id for s in sessions}
        first, second = by_device["cam-1"], by_device["cam-2"]
        # least loaded: one session on each worker
        places = {worker_media(gateway, first).place, worker_media(gateway, second).place}
        assert places == {0, 1}
        # the workers' counters reach the main process's /metrics
        await wait_for(lambda: received(gateway) > 30, within=10)
        await wait_for(partial(_segments, gateway, first), within=10)  # one being written
        # a live view of the session on the doomed worker
        view = await watch(gateway.url, first, gateway.auth)
        await wait_for(lambda: view.video_frames > 5, within=10)
        doomed = worker_media(gateway, first).worker
        assert doomed.process is not None
        old_pid = doomed.process.pid
        before = (await session_of(gateway.store, second)).connections
        os.kill(old_pid, signal.SIGKILL)
        # its session is interrupted, the other one is not touched
        await wait_for(lambda: live_of(gateway, first).state == SessionState.INTERRUPTED, 5)
        assert live_of(gateway, second).state == SessionState.LIVE
        # its view ended with its worker, in the register too
        await wait_for(lambda: not live_of(gateway, first).views, within=5)
        await view.close()
        ends = [
            e
            for e in await gateway.store.run(gateway.store.register_entries)
            if e["action"] == Action.LIVE_VIEW_END.value and e["session"] == first
        ]
        assert len(ends) == 1, ends
        # the worker is started again, and the camera continues its session on a worker
        await wait_for(lambda: pool(gateway).workers[doomed.index].alive, within=15)
        assert pool(gateway).workers[doomed.index].process.pid != old_pid  # type: ignore[union-attr]
        await wait_for(lambda: live_of(gateway, first).state == SessionState.LIVE, within=15)
        resumed_at = received(gateway)
        await wait_for(lambda: received(gateway) > resumed_at + 30, within=10)
        assert live_of(gateway, second).state == SessionState.LIVE
        assert (await session_of(gateway.store, second)).connections == before
        await one.press()
        await two.press()
    for session_id in (first, second):
        await wait_for(partial(_ended, gateway, session_id), within=10)
    again = await session_of(gateway.store, first)
    assert again.connections == 2  # the same session, continued
    segments = await gateway.store.run(gateway.store.segments_of, first)
    # the segment the dead worker was writing was sealed by recovery, as found on disk
    assert segments[0].state in ("recovered", "empty"), segments
    assert all(s.state in ("closed", "recovered", "empty") for s in segments)
    entries = await gateway.store.run(gateway.store.register_entries)
    assert any(
        e["action"] == Action.SESSION_RESUMED.value and e["session"] == first for e in entries
    )
    keyring, store = gateway.app[keyring_key], gateway.store
    for session_id in (first, second):
        check = await asyncio.to_thread(
            verify_session, store, keyring, gateway.config.recordings_dir, session_id
        )
        assert check.ok, check.text()


async def _ended(gateway: Gateway, session_id: str) -> bool:
    return (await session_of(gateway.store, session_id)).state == SessionState.ENDED


async def _segments(gateway: Gateway, session_id: str) -> bool:
    return bool(await gateway.store.run(gateway.store.segments_of, session_id))


def test_counters_from_a_worker_are_added_and_what_is_odd_is_left_out() -> None:
    worker, main = Metrics(), Metrics()
    worker.frames.labels("video").inc(30)
    worker.frame_delay.observe(0.004)
    worker.frame_delay.observe(0.02)
    sent: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    main.add(worker.changes(sent))
    worker.frames.labels("video").inc(5)
    main.add(worker.changes(sent))  # only what changed since: 5 more
    assert main.frames.labels("video")._value.get() == 35
    assert main.frame_delay._sum.get() == pytest.approx(0.024)
    buckets = [b.get() for b in main.frame_delay._buckets]
    assert buckets[0] == 1  # 0.004 in le=0.005
    assert sum(buckets) == 2
    # a worker cannot make series of its own, nor break the batch
    odd: list[Any] = [
        ("bodycam_ingest_frames_total", {"kind": "x" * 100}, 5.0),
        ("bodycam_ingest_frames_total", {"kind": "video"}, -3.0),
        ("bodycam_ingest_frames_total", {"colour": "blue"}, 1.0),
        "not a change",
        ("bodycam_ingest_frames_total", {"kind": "video"}, 1.0),
    ]
    main.add(odd)
    assert main.frames.labels("video")._value.get() == 36
    assert b"x" * 100 not in main.render()
