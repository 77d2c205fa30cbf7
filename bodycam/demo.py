"""`bodycam demo`: the gateway and three simulated body cameras walking around Metz.

Everything runs in one process on the embedded defaults (SQLite under the data directory,
no Redis). Officers press their buttons at staggered times; one loses its 4G link for a few
seconds and comes back into the same session; at the end every camera stops and the demo
prints how to list and export what was recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any

from aiohttp import web

from . import devices
from .clock import SystemClock
from .config import Config
from .gateway.app import create_app
from .gateway.keys import metrics_key, store_key
from .models import SessionState

logger = logging.getLogger(__name__)

# (device, officer, route, press at, link drop at, stop at), as fractions of the demo's
# length, so that any length keeps the order: press, (drop and reconnect), stop.
CAMERAS = [
    ("demo-cam-1", "Brigadier Lefèvre", "metz-mandela", 0.05, None, 0.85),
    ("demo-cam-2", "Gardien Rossi", "metz-charrons", 0.15, 0.45, 0.92),
    ("demo-cam-3", "Brigadier-chef Nguyen", "metz-comedie", 0.25, None, 1.0),
]
DROP_SECONDS = 0.1  # of the demo's length, within the 60 s grace window


def _out(text: str) -> None:
    print(text, flush=True)


async def run_demo(config: Config, duration: float) -> int:
    """Run the demo for `duration` seconds (Ctrl-C stops it early)."""
    from simulators.axis_bodycam import AxisBodycam
    from simulators.gps import Walk, load_route
    from simulators.media import LoopCache, MediaSettings

    duration = max(duration, 20.0)
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        _out(
            f"cannot listen on {config.server.host}:{config.server.port}: {err.strerror}."
            " Try --port 8090."
        )
        return 1
    base = f"http://{config.server.host}:{config.server.port}"
    store = app[store_key]
    _out(f"bodycam gateway on {base} (WHIP endpoint {base}/whip), data in {config.data_dir}")

    cache = LoopCache()
    media = MediaSettings(codec="h264", width=640, height=360, fps=30, encode="loop")
    cameras: list[AxisBodycam] = []
    for device_id, officer, route, *_ in CAMERAS:
        if store.get_device(device_id) is None:
            token = devices.enroll(store, device_id, officer, SystemClock().now())
        else:
            token = devices.rotate(store, device_id)
        walk = Walk(route=load_route(route), seed=len(cameras))
        cameras.append(
            AxisBodycam(base, device_id, token, media=media, walk=walk, loop_cache=cache)
        )
    _out("encoding the cameras' video loops (once)…")
    await asyncio.gather(*(camera.prepare() for camera in cameras))

    async def script(camera: AxisBodycam, press: float, drop: float | None, stop: float) -> None:
        steps: list[tuple[Any, ...]] = [(press * duration, "press")]
        if drop is not None:
            steps.append((drop * duration, "drop", DROP_SECONDS * duration))
        steps.append((stop * duration, "press"))
        await camera.run_timeline(steps)

    started = time.monotonic()
    tasks = [
        asyncio.create_task(script(cam, press, drop, stop))
        for cam, (_, _, _, press, drop, stop) in zip(cameras, CAMERAS, strict=True)
    ]
    status = asyncio.create_task(_status(app, started))
    code = 0
    try:
        await asyncio.gather(*tasks)
    except (asyncio.CancelledError, KeyboardInterrupt):
        _out("\nstopping…")
    except Exception as err:  # a simulated camera failed: say so, then clean up as usual
        _out(f"\ndemo stopped: {err}")
        code = 1
    finally:
        status.cancel()
        for camera in cameras:
            with contextlib.suppress(Exception):
                await camera.close()
        await asyncio.sleep(0.5)  # let the last DELETEs end their sessions
        sessions = [s for s in store.list_sessions() if s.device_id.startswith("demo-cam-")]
        await runner.cleanup()

    _out(f"\n{len(sessions)} demo sessions in {config.data_dir}. See them with:")
    _out(f"  .venv/bin/bodycam sessions list --data-dir {config.data_dir}")
    if sessions:
        last = sessions[-1].id
        _out(f"  .venv/bin/bodycam sessions show {last} --data-dir {config.data_dir}")
        _out(
            f"  .venv/bin/bodycam sessions export {last} --out {last}.mkv"
            f" --data-dir {config.data_dir}"
        )
    return code


async def _status(app: web.Application, started: float) -> None:
    metrics = app[metrics_key]
    store = app[store_key]
    while True:
        await asyncio.sleep(5)
        live = await store.run(store.list_sessions, SessionState.LIVE)
        frames = metrics.frames.labels("video")._value.get()
        segments = metrics.segments._value.get()
        _out(
            f"[{time.monotonic() - started:5.0f} s] live: "
            f"{', '.join(s.device_id for s in live) or 'none'}; "
            f"{frames:.0f} video frames received, {segments:.0f} segments sealed"
        )
        sys.stdout.flush()
