"""An operator's console in Chromium while a simulated officer goes live.

Runs inside a network namespace of its own (loopback only), started by
tests/test_browser_console.py:

    unshare -n sh -c 'ip link set lo up; exec python -m tests.browser.console_scenario DIR'

The gateway, the simulated Axis cameras of the test street (VAPIX, MJPEG) and the body
camera all run here; Chromium logs in through the page and is watched as an operator
would: the alert, the body camera's video, the fixed cameras' pictures, the officer on the
map, then the alert acknowledged, dispatched and closed. Prints one JSON object of what
was measured; screenshots are left in DIR.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from playwright.async_api import Page

from bodycam import devices
from bodycam.clock import SystemClock
from bodycam.config import Config
from bodycam.gateway.app import create_app
from bodycam.gateway.appkeys import store_key
from bodycam.geo.registry import import_cameras, import_places
from bodycam.store import SqliteStore, Store
from simulators.axis_bodycam import AxisBodycam
from simulators.axis_camera import AxisCameraSimulator, SimCamera

from ..geo_scene import CAMERA_PASSWORD, PLACES, SCENE_CAMERAS, street_walk
from ..helpers import PASSWORD, add_login, small_media
from .chromium import console

PORT = 8080
BASE = f"http://127.0.0.1:{PORT}"


async def start_cameras() -> AxisCameraSimulator:
    sims = [
        SimCamera(f["properties"]["id"], f["properties"]["name"], f["properties"]["kind"])
        for f in SCENE_CAMERAS
    ]
    for sim in sims:
        sim.password = CAMERA_PASSWORD
    simulator = AxisCameraSimulator(sims)
    await simulator.start()
    return simulator


async def prepare(data_dir: Path, cameras: AxisCameraSimulator) -> Config:
    config = Config.load(
        None, environ={}, data_dir=str(data_dir), cameras_health_interval_seconds=2
    )
    features = [
        {**f, "properties": {**f["properties"], "vapix_url": cameras.base_url(cid)}}
        for f in SCENE_CAMERAS
        if (cid := f["properties"]["id"]) != "unwired"
    ]
    store = SqliteStore(config.database_path)
    scene = {"type": "FeatureCollection", "features": features}
    await asyncio.to_thread(import_cameras, store, scene, "scene")
    await asyncio.to_thread(import_places, store, PLACES, "scene")
    await add_login(store, "dupont", "operator")
    await asyncio.to_thread(store.close)
    config.camera_credentials_path.write_text(
        f'[csu]\nusername = "root"\npassword = "{CAMERA_PASSWORD}"\n'
    )
    return config


async def seconds_until(page: Page, selector: str, within: float) -> float:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await page.wait_for_selector(selector, timeout=within * 1000, state="attached")
    return loop.time() - started


async def video_playing(page: Page) -> dict[str, Any]:
    """The body camera tile's video: its size, and whether its clock moves."""
    video = '[data-testid="tile-bodycam"]'
    await page.wait_for_function(
        f"() => {{ const v = document.querySelector('{video}'); return v && v.videoWidth > 0 }}",
        timeout=10_000,
    )
    first = await page.eval_on_selector(video, "v => v.currentTime")
    await page.wait_for_timeout(1000)
    state: dict[str, Any] = await page.eval_on_selector(
        video,
        f"""v => ({{width: v.videoWidth, height: v.videoHeight,
                 advanced: v.currentTime - {first}, paused: v.paused,
                 frames: v.getVideoPlaybackQuality().totalVideoFrames,
                 audio_tracks: v.srcObject ? v.srcObject.getAudioTracks().length : 0}})""",
    )
    return state


async def act(page: Page, session_id: str, button: str, state: str) -> None:
    alert = f'[data-testid="alert"][data-session-id="{session_id}"]'
    await page.click(f'{alert} [data-testid="{button}"]')
    await page.wait_for_selector(f'{alert}[data-state="{state}"]', timeout=5000)


async def cic_takes_a_camera(page: Page, store: Store) -> list[str]:
    """The national police takes the PTZ camera with a notice: the CSU's console shows it,
    and the time left goes down."""
    token = await add_login(store, "cic", "police_nationale")
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.put(
            f"{BASE}/api/v1/cameras/ptz-1/control",
            json={"seconds": 120, "notice": "CIC Metz : suivi d'un véhicule"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
    shown = '[data-testid="control"][data-camera-id="ptz-1"]'
    await page.wait_for_selector(shown, timeout=5000)
    first = await page.inner_text(shown)
    await page.wait_for_timeout(2100)
    return [first, await page.inner_text(shown)]


async def main(out: Path) -> dict[str, Any]:
    cameras = await start_cameras()
    config = await prepare(out / "data", cameras)
    gateway = web.AppRunner(create_app(config), access_log=None)
    await gateway.setup()
    await web.TCPSite(gateway, "127.0.0.1", PORT).start()
    store = gateway.app[store_key]
    token = await store.run(
        devices.enroll, store, "cam-geo", "Brigadier Lefèvre", SystemClock().now()
    )
    result: dict[str, Any] = {}
    async with console(BASE, "dupont", PASSWORD) as (page, errors):
        result["page_errors"] = errors
        await page.wait_for_timeout(500)  # the WebSocket's snapshot
        await page.screenshot(path=str(out / "console-idle.png"))

        async with AxisBodycam(
            BASE, "cam-geo", token, media=small_media(), walk=street_walk()
        ) as bodycam:
            loop = asyncio.get_running_loop()
            pressed = loop.time()
            await bodycam.press()
            await page.wait_for_selector('[data-testid="alert"]', timeout=5000)
            result["alert_seconds"] = loop.time() - pressed
            [session] = await store.run(store.list_sessions)
            sid = session.id
            alert = f'[data-testid="alert"][data-session-id="{sid}"]'
            result["video"] = await video_playing(page)
            result["alert_text"] = await page.inner_text(alert)  # (now with the street)
            await page.wait_for_function(
                """() => [...document.querySelectorAll('[data-testid="tile-camera"]')]
                         .some(img => img.naturalWidth > 0)""",
                timeout=10_000,
            )
            result["camera_tiles"] = await page.eval_on_selector_all(
                '[data-testid="tile-camera"]',
                "els => els.map(e => [e.dataset.cameraId, e.naturalWidth])",
            )
            result["officer_on_map"] = await seconds_until(
                page, f'[data-testid="map-officer"][data-session-id="{sid}"]', 5
            )
            result["map_selected"] = await page.eval_on_selector_all(
                "[data-camera-id].selected", "els => els.map(e => e.dataset.cameraId)"
            )
            await page.screenshot(path=str(out / "console-live.png"))
            # pinned: the west camera stays on the wall; the others follow the officer east
            west = '[data-testid="tile"]:has(img[data-camera-id="fixed-west"])'
            await page.click(f'{west} [data-testid="btn-pin"]')
            result["east_followed"] = await seconds_until(
                page, 'img[data-testid="tile-camera"][data-camera-id="fixed-east"]', 20
            )
            result["west_pinned"] = await page.eval_on_selector(
                west, "t => t.classList.contains('pinned')"
            )
            await page.screenshot(path=str(out / "console-followed.png"))
            await act(page, sid, "btn-ack", "prise_en_compte")
            await act(page, sid, "btn-dispatch", "renforts_envoyes")
            await page.screenshot(path=str(out / "console-dispatched.png"))
            await act(page, sid, "btn-close", "cloturee")
            result["alert_after"] = await page.inner_text(alert)
            result["cic"] = await cic_takes_a_camera(page, store)
            await bodycam.press()
        await page.screenshot(path=str(out / "console-closed.png"))
    stored = await store.run(store.get_alert, sid)
    assert stored is not None
    result["actions"] = [(a.state.value, a.user, a.role) for a in stored.actions]
    await gateway.cleanup()
    await cameras.close()
    return result


if __name__ == "__main__":
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    print(json.dumps(asyncio.run(main(directory))))
