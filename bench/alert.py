"""Alert benchmark: how soon a console knows, and how soon an operator sees the officer.

In one process: the gateway on loopback with the Metz demo city (40 cameras, streets,
buildings), a console client on the WebSocket (`/ui/ws`, logged in as an operator), and
simulated Axis body cameras, one per round, each walking one of the demo routes. Each round:

1. press: the camera's button is pressed (WHIP offer and answer; ICE, DTLS and the data
   channel follow);
2. alert: the console receives the session's `alert` event;
3. ready: the console has the alert, the officer's position and the camera selection,
   which is what the operator's screen needs;
4. first frame: between 0.5 and 1.5 s later (past the session's first keyframe, as an
   operator who clicks an alert), a new viewer (WHEP, aiortc) is opened on the live
   session and its first video frame arrives, counted from the viewer's offer. The camera
   encodes live with a keyframe every 10 s, so the viewer waits for the keyframe its PLI
   asks for, as with a real camera.

The press's own time to return (`press`, until the WHIP answer is applied) is printed for
reference: the alert cannot come before the gateway has answered. Everything runs on one
event loop, the clients' work included. Figures only; it asserts nothing::

    python -m bench.alert [--rounds 30] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from bodycam import devices, users
from bodycam.clock import SystemClock
from bodycam.config import Config
from bodycam.demo import CITY
from bodycam.gateway.app import create_app
from bodycam.gateway.appkeys import store_key
from bodycam.geo.registry import import_cameras, import_places
from bodycam.store import open_store
from simulators.axis_bodycam import AxisBodycam
from simulators.gps import Walk, load_route
from simulators.media import LoopCache, MediaSettings
from tests.whep_client import watch

ROUTES = ("metz-mandela", "metz-charrons", "metz-comedie")
PASSWORD = "bench-password-1"
TARGET_MS = 300.0


@dataclass
class Figures:
    rounds: int = 0
    press_ms: list[float] = field(default_factory=list)
    alert_ms: list[float] = field(default_factory=list)
    ready_ms: list[float] = field(default_factory=list)
    first_frame_ms: list[float] = field(default_factory=list)


class ConsoleClient:
    """Stamps the arrival of each event kind per device, as a console would get them."""

    def __init__(self) -> None:
        self.arrivals: dict[str, dict[str, float]] = {}  # device id → event type → time
        self._device_of: dict[str, str] = {}  # session id → device id
        self.changed = asyncio.Event()

    async def run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        loop = asyncio.get_running_loop()
        async for message in ws:
            event = json.loads(message.data)
            now = loop.time()
            data = event.get("data") or {}
            if event["type"] == "alert":
                self._device_of[data["session_id"]] = data["device_id"]
            device = data.get("device_id") or self._device_of.get(data.get("session_id", ""))
            if device is None or (event["type"] == "selection" and not data["cameras"]):
                continue
            self.arrivals.setdefault(device, {}).setdefault(event["type"], now)
            self.changed.set()

    async def wait(self, device: str, kinds: set[str], within: float = 10.0) -> float:
        """When the last of `kinds` arrived for the device."""
        async with asyncio.timeout(within):
            while not kinds <= set(self.arrivals.get(device, {})):
                self.changed.clear()
                await self.changed.wait()
        return max(self.arrivals[device][k] for k in kinds)


def prepare_data(data_dir: Path, workers: str = "0") -> Config:
    config = Config.load(
        None, environ={}, data_dir=str(data_dir), log_level="warning", media_workers=workers
    )
    store = open_store(config)  # (on a worker thread: the store is reached with call)
    try:
        import_cameras(store, json.loads((CITY / "cameras.geojson").read_text()), "metz")
        import_places(store, json.loads((CITY / "places.geojson").read_text()), "metz")
        users.add(store, "bench", "operator", PASSWORD, "", SystemClock().now())
    finally:
        store.close()
    return config


async def run(args: argparse.Namespace, data_dir: Path) -> Figures:
    config = await asyncio.to_thread(prepare_data, data_dir, args.workers)  # a city import
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    store = runner.app[store_key]
    loop = asyncio.get_running_loop()
    figures = Figures()
    cache = LoopCache()
    media = MediaSettings(
        codec="h264", width=640, height=360, fps=30, encode="live", keyframe_interval=10.0
    )
    rng = random.Random(1)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{base}/api/v1/login", json={"name": "bench", "password": PASSWORD}
            ) as r:
                login = {"Authorization": f"Bearer {(await r.json())['token']}"}
            ws = await http.ws_connect(f"{base}/ui/ws", headers=login)
            console = ConsoleClient()
            reader = asyncio.create_task(console.run(ws))
            for i in range(args.rounds):
                device = f"bench-cam-{i}"
                now = SystemClock().now()
                token = await store.run(devices.enroll, store, device, f"Agent {i}", now)
                walk = Walk(route=load_route(ROUTES[i % len(ROUTES)]), seed=i)
                camera = AxisBodycam(base, device, token, media=media, walk=walk, loop_cache=cache)
                await camera.prepare()  # encoding the loop is not part of a press
                pressed = loop.time()
                await camera.press()
                figures.press_ms.append((loop.time() - pressed) * 1000)
                alert = await console.wait(device, {"alert"})
                ready = await console.wait(device, {"alert", "position", "selection"})
                figures.alert_ms.append((alert - pressed) * 1000)
                figures.ready_ms.append((ready - pressed) * 1000)
                sessions = await store.run(store.list_sessions)
                [session] = [s for s in sessions if s.device_id == device]
                await asyncio.sleep(rng.uniform(0.5, 1.5))
                asked = loop.time()
                view = await watch(base, session.id, login)
                while view.video_frames == 0:
                    if loop.time() - asked > 10:
                        raise RuntimeError(f"round {i}: no video frame for the viewer in 10 s")
                    await asyncio.sleep(0.002)
                figures.first_frame_ms.append((loop.time() - asked) * 1000)
                await view.close()
                await camera.close()
                figures.rounds += 1
                print(
                    f"round {i + 1:3}: press {figures.press_ms[-1]:6.0f} ms, alert"
                    f" {figures.alert_ms[-1]:6.0f} ms, ready {figures.ready_ms[-1]:6.0f} ms,"
                    f" first frame {figures.first_frame_ms[-1]:6.0f} ms",
                    flush=True,
                )
            reader.cancel()
            await ws.close()
    finally:
        await runner.cleanup()
    return figures


def summary(values: list[float]) -> dict[str, float]:
    array = np.array(values)
    return {
        "p50": float(np.percentile(array, 50)),
        "p95": float(np.percentile(array, 95)),
        "max": float(array.max()),
    }


def report(figures: Figures) -> dict[str, Any]:
    rows = {
        "press (WHIP answer applied)": figures.press_ms,
        "press → alert at the console": figures.alert_ms,
        "press → alert + position + selection": figures.ready_ms,
        "new viewer → first video frame": figures.first_frame_ms,
    }
    print(f"\n{figures.rounds} rounds, one body camera at a time, Metz demo city (40 cameras)")
    print(f"{'':40} {'p50':>8} {'p95':>8} {'max':>8}   (ms)")
    result = {}
    for name, values in rows.items():
        s = summary(values)
        result[name] = s
        print(f"{name:40} {s['p50']:8.0f} {s['p95']:8.0f} {s['max']:8.0f}")
    for name in ("press → alert + position + selection", "new viewer → first video frame"):
        p95 = result[name]["p95"]
        print(f"aim ≤ {TARGET_MS:.0f} ms p95: {name}: {p95 / TARGET_MS:.2f} of the aim")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--workers",
        default="0",
        help='[media] workers of the gateway (default 0: its media in process; "auto", 2...)',
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bodycam-bench-alert-") as tmp:
        figures = asyncio.run(run(args, Path(tmp)))
    result = report(figures)
    if args.json:
        args.json.write_text(json.dumps({"figures": asdict(figures), "summary": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
