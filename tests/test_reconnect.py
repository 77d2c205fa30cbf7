"""Link loss: a reconnect within the grace window continues the session, after it, not."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from bodycam.config import Config
from bodycam.models import SessionState
from simulators.axis_bodycam import AxisBodycam

from .helpers import (
    Gateway,
    free_port,
    make_config,
    session_of,
    small_media,
    wait_for,
    wait_for_session,
)

MEDIA = small_media()


@pytest.fixture
def gateway_config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path / "data",
        recording_segment_seconds=30,
        sessions_grace_seconds=3,
        sessions_media_timeout_seconds=1,
    )


async def test_reconnect_within_grace_continues_the_session(gateway: Gateway) -> None:
    token = await gateway.enroll("cam-1")
    async with AxisBodycam(gateway.url, "cam-1", token, media=MEDIA) as camera:
        await camera.press()
        await asyncio.sleep(2)
        first_url = camera.session_url
        assert first_url is not None
        drop = asyncio.create_task(camera.drop_link(2.0))  # back well within the 3 s grace
        [session] = await gateway.store.run(gateway.store.list_sessions)
        await wait_for_session(gateway.store, session.id, SessionState.INTERRUPTED)
        await drop
        await wait_for(lambda: camera.state == "live")
        assert camera.session_url != first_url
        # a DELETE on the replaced connection's URL, arriving late, ends nothing
        async with (
            aiohttp.ClientSession() as http,
            http.delete(first_url, headers={"Authorization": f"Bearer {token}"}) as late,
        ):
            assert late.status == 200
        await asyncio.sleep(0.5)
        assert (await session_of(gateway.store, session.id)).state == SessionState.LIVE
        await asyncio.sleep(1.5)
        await camera.press()
    await wait_for_session(gateway.store, session.id, SessionState.ENDED)
    [again] = await gateway.store.run(gateway.store.list_sessions)
    assert again.id == session.id
    assert again.connections == 2
    assert again.end_reason == "button"
    segments = await gateway.store.run(gateway.store.segments_of, session.id)
    # one segment per connection at least, chained across the gap
    assert len(segments) >= 2
    assert all(s.state == "closed" for s in segments)
    assert segments[1].prev_sha256 == segments[0].sha256
    assert segments[0].ended_at is not None
    assert segments[1].started_at - segments[0].ended_at >= timedelta(seconds=1)  # the gap


async def test_reconnect_after_grace_is_a_new_session(gateway: Gateway) -> None:
    token = await gateway.enroll("cam-1")
    async with AxisBodycam(gateway.url, "cam-1", token, media=MEDIA) as camera:
        await camera.press()
        await asyncio.sleep(1.5)
        await camera.drop_link(5.5)  # media timeout 1 s + grace 3 s < 5.5 s
        await wait_for(lambda: camera.state == "live")
        await asyncio.sleep(1.5)
        await camera.press()
    await wait_for(
        lambda: gateway.store.run(
            lambda: all(s.state == SessionState.ENDED for s in gateway.store.list_sessions())
        ),
        what=gateway.store.list_sessions,
    )
    first, second = await gateway.store.run(gateway.store.list_sessions)
    assert first.end_reason == "link_lost"
    assert first.connections == 1
    assert second.connections == 1
    assert second.end_reason == "button"
    assert await gateway.store.run(gateway.store.segments_of, first.id)
    assert await gateway.store.run(gateway.store.segments_of, second.id)
    # positions belong to the session that was live when they were sent
    assert await gateway.store.run(gateway.store.positions_of, first.id)
    assert await gateway.store.run(gateway.store.positions_of, second.id)


async def test_a_camera_goes_to_its_backup_gateway_when_the_first_does_not_answer(
    gateway: Gateway,
) -> None:
    token = await gateway.enroll("cam-1")
    nobody = f"http://127.0.0.1:{free_port()}"  # a primary that is down
    async with AxisBodycam(f"{nobody},{gateway.url}", "cam-1", token, media=MEDIA) as camera:
        assert camera.endpoint == f"{nobody}/whip"
        await camera.press()
        assert camera.state == "live"
        assert camera.endpoint == f"{gateway.url}/whip"
        assert "failed" in (camera.last_error or "")
        [session] = await gateway.store.run(gateway.store.list_sessions)
        await camera.press()
    await wait_for_session(gateway.store, session.id, SessionState.ENDED)
