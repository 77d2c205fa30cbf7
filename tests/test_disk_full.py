"""A full disk (issue 13), on a real small filesystem (tmpfs) mounted for the test.

Recording stops at the free-space floor and says so on every console and in /metrics;
live viewing, logins and the register go on; nothing already written is damaged; recording
resumes by itself when the space is back. And when the file system refuses a write
anyway (the floor at 0), the recorder drops and counts frames rather than logging one
failure per frame.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Iterator
from pathlib import Path

import aiohttp
import pytest

from bodycam.evidence import register
from bodycam.evidence.recordings import verify_session
from bodycam.gateway.app import create_app
from bodycam.gateway.appkeys import keyring_key
from bodycam.models import SessionState
from simulators.axis_bodycam import AxisBodycam

from . import whep_client
from .helpers import (
    PASSWORD,
    ConsoleSocket,
    Gateway,
    cannot_run,
    make_config,
    media_in_process,
    small_media,
    start_gateway,
    wait_for,
)

MEDIA = small_media()
MB = 1_000_000


def mount_tmpfs(folder: Path, size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        problem = f"cannot mount a tmpfs on {folder}: {done.stderr.strip() or done.returncode}"
        cannot_run(problem, "the disk-full tests")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MB filesystem of the test's own (the gateway's whole data folder)."""
    folder = tmp_path / "disk"
    mount_tmpfs(folder, 40 * MB)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def fill(path: Path, leave: int) -> Path:
    """A file that leaves about `leave` bytes free on `path`'s filesystem."""
    filler = path / "filler"
    with filler.open("wb") as out:
        while (room := free_bytes(path) - leave) > 0:
            out.write(b"\0" * min(room, 4 * MB))
            out.flush()
    return filler


async def verified(gateway: Gateway, session_id: str) -> None:
    """Every sealed segment of the session decrypts, matches its hash and chains."""
    check = await asyncio.to_thread(
        verify_session,
        gateway.store,
        gateway.app[keyring_key],
        gateway.config.recordings_dir,
        session_id,
    )
    assert check.ok, check.text()


def dropped(gateway: Gateway, reason: str) -> float:
    return float(gateway.metrics.frames_dropped.labels(reason)._value.get())


def recorded(gateway: Gateway) -> float:
    return float(gateway.metrics.frames_recorded.labels("video")._value.get())


async def _at_least(found: Awaitable[list[tuple[int, str]]], count: int) -> bool:
    return len(await found) >= count


async def sealed(gateway: Gateway, session_id: str) -> list[tuple[int, str]]:
    """The segments the session's recorder has sealed so far (id, sha256)."""
    segments = await gateway.store.run(gateway.store.segments_of, session_id)
    return [(s.id, s.sha256 or "") for s in segments if s.state == "closed"]


def states(console: ConsoleSocket) -> list[str]:
    """The recording states the console was told, in order."""
    return [d["state"] for d in console.data_of("recording")]


async def test_a_full_disk_stops_recording_and_nothing_else(
    small_disk: Path, tmp_path: Path
) -> None:
    config = make_config(
        small_disk / "data", recording_min_free_bytes=12 * MB, recording_segment_seconds=1
    )
    gateway = await start_gateway(create_app(config), config)
    token = await gateway.enroll("cam-d")
    try:
        async with (
            AxisBodycam(gateway.url, "cam-d", token, media=MEDIA) as camera,
            aiohttp.ClientSession(headers=gateway.auth) as http,
        ):
            await camera.press()
            [session] = await gateway.store.run(gateway.store.list_sessions)
            console = ConsoleSocket(await http.ws_connect(f"{gateway.url}/ui/ws"))
            await wait_for(lambda: _at_least(sealed(gateway, session.id), 2))
            before = await sealed(gateway, session.id)

            filler = await asyncio.to_thread(fill, small_disk, 6 * MB)
            await wait_for(lambda: states(console) == ["stopped"], within=5)
            await wait_for(lambda: dropped(gateway, "disk_full") > 20, within=5)
            # the open segment was sealed: nothing is left open while the disk is full
            segments = await gateway.store.run(gateway.store.segments_of, session.id)
            assert [g.state for g in segments if g.state == "open"] == []
            # (frames written are counted once their segment is, and a media worker's
            # counters reach the main process ten times a second)
            await asyncio.sleep(1.0)
            stopped_at = recorded(gateway)

            # live viewing, logins, the register and a new console go on
            view = await whep_client.watch(gateway.url, session.id, gateway.auth)
            await wait_for(lambda: view.video_frames > 15, within=10)
            await view.close()
            async with http.post(
                f"{gateway.url}/api/v1/login", json={"name": "dupont", "password": PASSWORD}
            ) as response:
                assert response.status == 200
            late = ConsoleSocket(await http.ws_connect(f"{gateway.url}/ui/ws"))
            await wait_for(lambda: bool(late.messages), within=5)
            assert late.messages[0]["recording"]["state"] == "stopped"
            assert late.messages[0]["recording"]["reason"] == "disk_full"
            async with http.get(f"{gateway.url}/metrics") as response:
                metrics = await response.text()
            assert "bodycam_recording_stopped 1.0" in metrics
            free = next(
                float(line.split()[1])
                for line in metrics.splitlines()
                if line.startswith("bodycam_disk_free_bytes ")
            )
            assert free < 12 * MB
            assert 'bodycam_recording_dropped_frames_total{reason="disk_full"}' in metrics
            assert recorded(gateway) == stopped_at  # not one frame written meanwhile

            await asyncio.to_thread(filler.unlink)  # the space comes back
            await wait_for(
                lambda: states(console) == ["stopped", "recording"],
                within=5,
            )
            await wait_for(lambda: recorded(gateway) > stopped_at + 30, within=10)
            live = gateway.sessions.session(session.id)
            assert live is not None
            assert live.state == SessionState.LIVE  # one session throughout
            await camera.press()
            await console.ws.close()
            await late.ws.close()
        await wait_for(lambda: gateway.sessions.session(session.id) is None, within=10)
        segments = await gateway.store.run(gateway.store.segments_of, session.id)
        assert {g.state for g in segments} <= {"closed", "empty"}
        assert [(g.id, g.sha256) for g in segments if g.id in dict(before)] == before
        await verified(gateway, session.id)
        verdict = await gateway.store.run(register.verify, gateway.store)
        assert verdict.ok, verdict.text()
        assert dropped(gateway, "write_failed") == 0  # the floor kept every write possible
    finally:
        await gateway.server.close()


@media_in_process  # (it reads the recorder's log lines, which a worker writes to its stderr)
async def test_a_refused_write_drops_and_counts_frames_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No floor (0), recordings on a 3 MB filesystem of their own: the file system refuses
    writes. The session goes on, what was sealed before stays intact, and the log holds one
    line per segment refused, not one per frame."""
    config = make_config(tmp_path / "data", recording_min_free_bytes=0, recording_segment_seconds=1)
    mount_tmpfs(config.recordings_dir, 3 * MB)
    try:
        gateway = await start_gateway(create_app(config), config)
        token = await gateway.enroll("cam-e")
        try:
            async with AxisBodycam(gateway.url, "cam-e", token, media=MEDIA) as camera:
                await camera.press()
                [session] = await gateway.store.run(gateway.store.list_sessions)
                await wait_for(lambda: _at_least(sealed(gateway, session.id), 1))
                await asyncio.to_thread(fill, config.recordings_dir, 0)
                await wait_for(lambda: dropped(gateway, "write_failed") > 60, within=15)
                live = gateway.sessions.session(session.id)
                assert live is not None
                assert live.state == SessionState.LIVE
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(
                        f"{gateway.url}/api/v1/login",
                        json={"name": "dupont", "password": PASSWORD},
                    ) as response,
                ):
                    assert response.status == 200  # the database is on another disk
                await camera.press()
            await wait_for(lambda: gateway.sessions.session(session.id) is None, within=10)
            refusals = [
                r
                for r in caplog.records
                if r.name == "bodycam.media.recorder" and r.levelname == "ERROR"
            ]
            frames = dropped(gateway, "write_failed")
            assert 1 <= len(refusals) <= 30  # per segment, not per frame
            assert frames > 10 * len(refusals)
            await verified(gateway, session.id)  # what was sealed before is intact
        finally:
            await gateway.server.close()
    finally:
        await asyncio.to_thread(
            subprocess.run, ["umount", "-l", str(config.recordings_dir)], check=False
        )
