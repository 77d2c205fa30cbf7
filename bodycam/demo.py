"""`bodycam demo`: the gateway, the CCTV cameras of Metz's centre, and three officers.

Everything runs in one process on the embedded defaults (SQLite under the data directory,
live state in process; `--redis URL` puts it in Redis). The demo city
(`simulators/data/metz/`: streets, buildings, 36 Axis cameras played by the camera
simulator, one of them switched off) is imported first. Officers walk their routes and
press their buttons at staggered times; the gateway follows them, picks the cameras that can
see them, turns the PTZ cameras; one officer loses their 4G link for a few seconds and comes
back into the same session. An operator account is made for the console (`/ui/`; its
password is printed). At the end the demo prints how to list, verify and export (as its
supervisor) what was recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators.axis_bodycam import AxisBodycam
from simulators.axis_camera import AxisCameraSimulator
from simulators.gps import Walk, load_route
from simulators.media import LoopCache, MediaSettings

from . import devices, users
from .clock import SystemClock
from .config import Config
from .errors import BodycamError
from .gateway.app import create_app
from .gateway.appkeys import health_key, live_key, metrics_key, store_key, tracker_key
from .geo.registry import import_cameras, import_places, load_cameras
from .live.base import EventStream
from .models import EndReason, SessionState
from .store import Store, open_store

logger = logging.getLogger(__name__)

# (device, officer, route, press at, link drop at, stop at), as fractions of the demo's
# length, so that any length keeps the order: press, (drop and reconnect), stop.
CAMERAS = [
    ("demo-cam-1", "Brigadier Lefèvre", "metz-mandela", 0.05, None, 0.85),
    ("demo-cam-2", "Gardien Rossi", "metz-charrons", 0.15, 0.45, 0.92),
    ("demo-cam-3", "Brigadier-chef Nguyen", "metz-comedie", 0.25, None, 1.0),
]
DROP_SECONDS = 0.1  # of the demo's length, but always well within the grace window
CITY = Path(__file__).resolve().parent.parent / "simulators" / "data" / "metz"
OFFLINE_CAMERA = "metz-cam-17"  # switched off, for the health report
DEMO_OPERATOR = "operateur"
DEMO_SUPERVISOR = "superviseur"


def _out(text: str) -> None:
    print(text, flush=True)


async def run_demo(config: Config, duration: float) -> int:
    """Run the demo for `duration` seconds (Ctrl-C stops it early)."""
    duration = max(duration, 20.0)
    # The demo's own credentials file, whatever the configuration names: never a real one.
    demo_cameras = dataclasses.replace(
        config.cameras,
        health_interval_seconds=10.0,
        credentials_file=str(config.data_dir / "demo-camera-credentials.toml"),
    )
    # (the demo's three cameras need no media workers: its media stays in this process)
    in_process = dataclasses.replace(config.media, workers="0")
    config = dataclasses.replace(config, cameras=demo_cameras, media=in_process)
    await _end_leftovers(config)
    cameras_sim = await _start_city(config)
    if cameras_sim is None:
        return 2
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    try:
        await runner.setup()
    except BodycamError:  # Redis unreachable, say: the caller prints it
        await cameras_sim.close()
        raise
    site = web.TCPSite(runner, config.server.host, config.server.port)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        await cameras_sim.close()
        _out(
            f"cannot listen on {config.server.host}:{config.server.port}: {err.strerror}."
            " Try --port 8090."
        )
        return 1
    base = f"http://{config.server.host}:{config.server.port}"
    store = app[store_key]
    _out(f"bodycam gateway on {base} (WHIP endpoint {base}/whip), data in {config.data_dir}")
    password = await asyncio.to_thread(_demo_account, store, DEMO_OPERATOR, "operator")
    supervisor_password = await asyncio.to_thread(
        _demo_account, store, DEMO_SUPERVISOR, "supervisor"
    )
    _out(
        f"operator console: {base}/ui/  (user {DEMO_OPERATOR}, password {password};"
        " --duration 600 leaves time to watch)"
    )

    cache = LoopCache()
    media = MediaSettings(codec="h264", width=640, height=360, fps=30, encode="loop")
    cameras: list[AxisBodycam] = []
    for device_id, officer, route, *_ in CAMERAS:
        if await store.run(store.get_device, device_id) is None:
            token = await store.run(devices.enroll, store, device_id, officer, SystemClock().now())
        else:
            token = await store.run(devices.rotate, store, device_id)
        walk = Walk(route=load_route(route), seed=len(cameras))
        cameras.append(
            AxisBodycam(base, device_id, token, media=media, walk=walk, loop_cache=cache)
        )
    _out("encoding the cameras' video loops (once)…")
    await asyncio.gather(*(camera.prepare() for camera in cameras))

    async def script(camera: AxisBodycam, press: float, drop: float | None, stop: float) -> None:
        steps: list[tuple[Any, ...]] = [(press * duration, "press")]
        if drop is not None:
            # the link comes back within the grace window whatever the demo's length
            lost = min(DROP_SECONDS * duration, config.sessions.grace_seconds / 2)
            steps.append((drop * duration, "drop", lost))
        steps.append((stop * duration, "press"))
        await camera.run_timeline(steps)

    started = time.monotonic()
    tasks = [
        asyncio.create_task(script(cam, press, drop, stop))
        for cam, (_, _, _, press, drop, stop) in zip(cameras, CAMERAS, strict=True)
    ]
    status = asyncio.create_task(_status(app, started))
    narrator = asyncio.create_task(_narrate(app[live_key].events))
    code = 0
    try:
        await asyncio.gather(*tasks)
    except (asyncio.CancelledError, KeyboardInterrupt):
        _out("\nstopping…")
    except Exception as err:  # noqa: BLE001 a simulated camera failed: say so, clean up
        _out(f"\ndemo stopped: {err}")
        code = 1
    finally:
        status.cancel()
        narrator.cancel()
        for camera in cameras:
            with contextlib.suppress(Exception):
                await camera.close()
        await asyncio.sleep(0.5)  # let the last DELETEs end their sessions
        sessions = [
            s for s in await store.run(store.list_sessions) if s.device_id.startswith("demo-cam-")
        ]
        health = app[health_key].report()
        await runner.cleanup()
        await cameras_sim.close()

    _out(f"\ncity cameras: {health['summary']} (availability {health['availability']})")
    _out(f"\n{len(sessions)} demo sessions in {config.data_dir}. See them with:")
    _out(f"  .venv/bin/bodycam sessions list --data-dir {config.data_dir}")
    if sessions:
        last = sessions[-1].id
        _out(f"  .venv/bin/bodycam sessions show {last} --data-dir {config.data_dir}")
        _out(f"  .venv/bin/bodycam sessions verify {last} --data-dir {config.data_dir}")
        _out(
            f"Export it as a supervisor on requisition (user {DEMO_SUPERVISOR},"
            f" password {supervisor_password}), then check the bundle:"
        )
        _out(
            f"  .venv/bin/bodycam export {last} --reference DEMO-1 --reason démonstration"
            f" --user {DEMO_SUPERVISOR} --out demo-export --data-dir {config.data_dir}"
        )
        _out("  .venv/bin/bodycam verify demo-export")
    return code


def _demo_account(store: Store, name: str, role: str) -> str:
    """One of the demo's accounts, with a new random password each run (a worker thread:
    hashing takes a while)."""
    password = secrets.token_urlsafe(9)
    if store.call(store.get_user, name) is None:
        users.add(store, name, role, password, "CSU de démonstration", SystemClock().now())
    else:
        users.set_password(store, name, password)
    return password


async def _end_leftovers(config: Config) -> None:
    """End the sessions an interrupted demo left open (killed, or the machine stopped): a
    new demo starts new sessions rather than continue last time's, whose recordings stay."""
    store = open_store(config)
    try:
        demo_devices = {device for device, *_ in CAMERAS}
        left = [
            s
            for s in await store.run(store.list_sessions)
            if s.device_id in demo_devices and s.state != SessionState.ENDED
        ]
        now = SystemClock().now()
        for session in left:
            await store.run(store.end_session, session.id, EndReason.LINK_LOST, now)
    finally:
        await asyncio.to_thread(store.close)
    if left:
        _out(f"{len(left)} sessions left open by an interrupted demo: ended")


async def _start_city(config: Config) -> AxisCameraSimulator | None:
    """Import the demo city, and start the simulator that plays its cameras (None: the data
    directory holds a real registry, which the demo must not replace)."""
    document = json.loads((CITY / "cameras.geojson").read_text(encoding="utf-8"))
    places = json.loads((CITY / "places.geojson").read_text(encoding="utf-8"))
    ours = {f["properties"]["id"] for f in document["features"]}
    store = open_store(config)
    try:
        registry = load_cameras(await store.run(store.camera_features))
        theirs = [c.id for c in registry if c.id not in ours]
        if theirs:
            _out(
                f"{config.data_dir} holds a camera registry that is not the demo's"
                f" ({', '.join(theirs[:3])}…): run the demo with --data-dir demo-data"
            )
            return None
        password = secrets.token_urlsafe(12)
        simulator = AxisCameraSimulator.from_geojson(document, "root", password)
        await simulator.start()
        simulator.set_online(OFFLINE_CAMERA, False)
        for feature in document["features"]:  # the registry points at the simulator's port
            props = feature["properties"]
            props["vapix_url"] = simulator.base_url(props["id"])
            props["mjpeg_url"] = simulator.base_url(props["id"]) + "axis-cgi/mjpg/video.cgi"
            props["credentials_ref"] = "demo"
        cameras = await asyncio.to_thread(import_cameras, store, document, "demo cameras")
        await asyncio.to_thread(import_places, store, places, "demo places")
    finally:
        await asyncio.to_thread(store.close)
    credentials = config.camera_credentials_path
    credentials.write_text(f'[demo]\nusername = "root"\npassword = "{password}"\n')
    credentials.chmod(0o600)
    _out(
        f"demo city: {len(cameras)} cameras of Metz's centre simulated on port"
        f" {simulator.port} ({OFFLINE_CAMERA} switched off)"
    )
    return simulator


async def _narrate(events: EventStream) -> None:
    """Print what an operator would see change: cameras chosen for each officer."""
    with events.subscribe() as subscription:
        while (event := await subscription.get()) is not None:
            if event.type != "selection":
                continue
            data = event.data
            chosen = ", ".join(f"{c['camera_id']} ({c['reason']})" for c in data["cameras"])
            _out(f"  cameras for {data['session_id'][:24]}…: {chosen or 'none (session over)'}")


async def _status(app: web.Application, started: float) -> None:
    metrics = app[metrics_key]
    store = app[store_key]
    while True:
        await asyncio.sleep(5)
        live = await store.run(store.list_sessions, SessionState.LIVE)
        frames = metrics.frames.labels("video")._value.get()
        segments = metrics.segments._value.get()
        moves = metrics.ptz_commands.labels("sent")._value.get()
        _out(
            f"[{time.monotonic() - started:5.0f} s] live: "
            f"{', '.join(s.device_id for s in live) or 'none'}; "
            f"{frames:.0f} video frames received, {segments:.0f} segments sealed,"
            f" {moves:.0f} PTZ moves"
        )
        for session in live:
            officer = app[tracker_key].officer(session.id)
            if officer is not None and officer.address is not None:
                _out(f"    {session.device_id} ({session.officer}): {officer.address}")
        sys.stdout.flush()
