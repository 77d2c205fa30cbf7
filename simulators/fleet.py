"""Many simulated body cameras in one process, for load tests and benchmarks.

As a library::

    reports = await run_fleet("http://127.0.0.1:8080", devices, duration=30.0)

As a program (the final JSON on stdout is for a parent process to read)::

    python -m simulators.fleet --gateway http://127.0.0.1:8080 --devices-file devices.json \\
        --duration 30 [--stats-port 9100]

`devices.json` is a list of ``{"id": ..., "token": ...}``. Cameras go live one after the
other (`stagger` seconds apart), stay live for `duration` seconds after the last one went
live (or until SIGINT/SIGTERM), then press their button again and switch off.

Video is loop-encoded by default and every camera shares one `LoopCache` and one label, so
the loop is encoded once per process however many cameras there are: the fleet then costs
only packetizing, encryption and pacing, as real cameras cost a gateway nothing to encode.
With `--stats-port` the running fleet answers ``GET /stats`` with its counters (frames sent
so far, per camera and in total, and its event-loop lag), so a benchmark can measure what
was sent over a window of its choosing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators import configure_logging
from simulators.axis_bodycam import AxisBodycam
from simulators.media import LoopCache, MediaSettings
from simulators.whip import WhipError

logger = logging.getLogger(__name__)

FLEET_LABEL = "fleet"  # one label: every camera replays the same encoded loop
LAG_INTERVAL = 0.05  # seconds between two event-loop lag probes


@dataclass(frozen=True)
class Device:
    """An enrolled device the fleet will simulate."""

    id: str
    token: str


@dataclass
class CameraReport:
    """What one camera of the fleet did."""

    id: str
    state: str
    frames_sent: int
    audio_packets: int
    reconnects: int
    error: str | None


def load_devices(path: str | Path) -> list[Device]:
    """Read a JSON list of ``{"id": ..., "token": ...}`` objects."""
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a JSON list of {{id, token}} objects")
    try:
        return [Device(str(entry["id"]), str(entry["token"])) for entry in raw]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: every entry needs an id and a token ({err!r})") from None


class LoopLag:
    """How late the event loop wakes up: a saturated sender shows here before anywhere else."""

    def __init__(self, interval: float = LAG_INTERVAL) -> None:
        self.interval = interval
        self.samples = 0
        self.total = 0.0
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin probing (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._probe())

    async def stop(self) -> None:
        """Stop probing."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            late = max(0.0, loop.time() - due)
            self.samples += 1
            self.total += late
            self.worst = max(self.worst, late)


class Fleet:
    """Simulated cameras sharing one encoded loop, started and stopped together."""

    def __init__(
        self,
        gateway: str,
        devices: Sequence[Device],
        media: MediaSettings | None = None,
        *,
        stagger: float = 0.2,
        loop_cache: LoopCache | None = None,
    ) -> None:
        self.gateway = gateway
        self.media = media or MediaSettings(encode="loop")
        self.stagger = stagger
        self.lag = LoopLag()
        self.errors: dict[str, str] = {}
        cache = loop_cache or LoopCache()
        self.cameras = [
            AxisBodycam(
                gateway, d.id, d.token, media=self.media, loop_cache=cache, label=FLEET_LABEL
            )
            for d in devices
        ]

    async def start(self) -> int:
        """Encode the shared loop, then press each camera in turn; return how many went live."""
        self.lag.start()
        # The first prepare() encodes the loop; the others wait for it in the shared cache.
        await asyncio.gather(*(cam.prepare() for cam in self.cameras))
        await asyncio.gather(
            *(self._press_at(i * self.stagger, cam) for i, cam in enumerate(self.cameras))
        )
        live = sum(cam.state == "live" for cam in self.cameras)
        logger.info("fleet: %d of %d cameras live", live, len(self.cameras))
        return live

    async def _press_at(self, delay: float, cam: AxisBodycam) -> None:
        # Scheduled from a common start, so one slow answer does not push the others back.
        await asyncio.sleep(delay)
        try:
            await cam.press()
        except (WhipError, ValueError) as err:
            self.errors[cam.device_id] = str(err)
            logger.warning("%s: cannot go live: %s", cam.device_id, err)

    async def stop(self) -> None:
        """Press the button of every live camera, then switch them all off."""
        await asyncio.gather(*(cam.close() for cam in self.cameras), return_exceptions=True)
        await self.lag.stop()

    def reports(self) -> list[CameraReport]:
        """Per-camera counters, now."""
        return [
            CameraReport(
                id=cam.device_id,
                state=cam.state,
                frames_sent=cam.frames_sent,
                audio_packets=cam.counters.audio_packets,
                reconnects=cam.reconnects,
                error=self.errors.get(cam.device_id) or cam.last_error,
            )
            for cam in self.cameras
        ]

    def snapshot(self) -> dict[str, Any]:
        """Counters for a benchmark: totals, per camera, and event-loop lag so far."""
        reports = self.reports()
        return {
            "time": time.time(),
            "cameras": len(reports),
            "live": sum(r.state == "live" for r in reports),
            "frames_sent": sum(r.frames_sent for r in reports),
            "audio_packets": sum(r.audio_packets for r in reports),
            "lag_samples": self.lag.samples,
            "lag_total_seconds": self.lag.total,
            "lag_worst_seconds": self.lag.worst,
            "per_camera": [asdict(r) for r in reports],
        }


async def run_fleet(
    gateway: str,
    devices: Sequence[Device],
    media: MediaSettings | None = None,
    *,
    duration: float | None = None,
    stagger: float = 0.2,
    stop: asyncio.Event | None = None,
    on_fleet: Callable[[Fleet], Awaitable[None]] | None = None,
) -> list[CameraReport]:
    """Start the cameras (staggered), keep them live, stop them; return what each sent.

    Live time ends `duration` seconds after the last press, or when `stop` is set,
    whichever comes first (with neither, only cancellation ends it). `on_fleet` is awaited
    with the fleet before the cameras start, e.g. to serve its counters.
    """
    fleet = Fleet(gateway, devices, media, stagger=stagger)
    if on_fleet is not None:
        await on_fleet(fleet)
    stop = stop or asyncio.Event()
    try:
        await fleet.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
    finally:
        # Shielded: a cancelled fleet still says goodbye, so the gateway ends its sessions.
        await asyncio.shield(fleet.stop())
    return fleet.reports()


async def serve_stats(fleet: Fleet, port: int) -> web.AppRunner:
    """Answer ``GET /stats`` on 127.0.0.1:`port` with the fleet's counters."""

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(fleet.snapshot())

    app = web.Application()
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the fleet."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators.fleet", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--gateway", required=True, help="gateway base URL (or its /whip URL)")
    parser.add_argument(
        "--devices-file", required=True, help='JSON list of {"id": ..., "token": ...}'
    )
    parser.add_argument("--codec", choices=("h264", "vp8"), default="h264")
    parser.add_argument("--size", type=_size, default=(1280, 720), help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--encode", choices=("loop", "live"), default="loop")
    parser.add_argument(
        "--duration", type=float, help="seconds live after the last press (default: until signal)"
    )
    parser.add_argument("--stagger", type=float, default=0.2, help="seconds between two presses")
    parser.add_argument("--stats-port", type=int, help="serve GET /stats on 127.0.0.1:PORT")
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the fleet the options describe; return the final report."""
    media = MediaSettings(
        codec=args.codec, width=args.size[0], height=args.size[1], fps=args.fps, encode=args.encode
    )
    devices = load_devices(args.devices_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runners: list[web.AppRunner] = []

    async def on_fleet(fleet: Fleet) -> None:
        if args.stats_port is not None:
            runners.append(await serve_stats(fleet, args.stats_port))

    started = time.time()
    try:
        reports = await run_fleet(
            args.gateway,
            devices,
            media,
            duration=args.duration,
            stagger=args.stagger,
            stop=stop,
            on_fleet=on_fleet,
        )
    finally:
        for runner in runners:
            await runner.cleanup()
    return {
        "gateway": args.gateway,
        "seconds": round(time.time() - started, 3),
        "frames_sent": sum(r.frames_sent for r in reports),
        "cameras": [asdict(r) for r in reports],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m simulators.fleet`: prints the final report as JSON."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        report = asyncio.run(run(args))
    except (OSError, ValueError) as err:
        logger.error("fleet: %s", err)
        return 2
    print(json.dumps(report))
    return 0 if all(c["error"] is None for c in report["cameras"]) else 1


if __name__ == "__main__":
    sys.exit(main())
