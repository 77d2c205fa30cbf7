"""Soak benchmark: whether a loaded gateway stays flat (memory, fds, threads, tasks) for a long run.

One run, by default 30 minutes:

1. a `bodycam serve` process on a free port with a fresh data directory (as bench/ingest.py);
2. a fleet of simulated cameras (simulators/fleet.py, loop-encoded H.264 + Opus, one sender
   process up to 16 cameras, two above), all live for the whole run, recording;
3. an operator logged in (``POST /api/v1/login``) with the console's WebSocket open
   (``/ui/ws``), every message read and counted; it reconnects (counted) if it is closed;
4. WHEP viewers, each of a different camera, open for the whole run: aiortc peers whose
   receivers are tapped (bodycam.media.tap) to count encoded frames without decoding them,
   as four decoders of 720p would take the soak process a core the gateway needs;
5. after a warm-up, every ``--sample-seconds`` the gateway process is read: VmRSS, open file
   descriptors (/proc/PID/fd), threads (/proc/PID/status), asyncio tasks (the
   ``bodycam_event_loop_tasks`` gauge of /metrics when the gateway has it, "n/a" otherwise),
   its CPU and its event-loop thread's, the machine's busy cores; and per interval, scaled
   to a minute: video frames the fleet sent and the gateway received (frame loss), frames
   recorded, console messages, frames the viewers got (all of them, and the slowest one).

At the end: one row per sample; for each series its least-squares slope per hour, the means
of the first and last thirds of the run, and a verdict. A series is "flat" when the drift
its fitted line makes over the run (|slope| × span) is within its noise: the larger of twice
the residual standard deviation around the line and a floor for what the series can resolve
(`FLOORS`: 5 MB or 1 % of RSS, 2 fds, 2 threads, 5 tasks, 2 % of a rate, 0.5 point of loss);
otherwise it "grows" or "shrinks". Fewer than 5 samples give no verdict. Then the sanity
figures: segments recorded, frames dropped, each viewer's and the console's totals, and the
warnings and errors of the gateway's log.

Loss is the difference of two counters read back to back; the gateway publishes its frame
counts twice a second, so an interval's loss is exact only to about ±0.5 s of frames per
camera (±0.6 % seen over 30 s): the loss floor above.

Picture size, measured on this 2-core machine (aiortc 1.16, others' jobs running too): 20
cameras at 1280x720p30 cost the gateway 0.45–0.52 cores (its event-loop thread 37–41 % of a
core), the two sender processes 0.26–0.28 cores, with no frame lost beyond the counters'
noise and every viewer at 30 frames/s: it does not saturate 2 cores, so 720p stays the
default; ``--size 640x360`` is there for a busier machine. Disk: 20 cameras record about
1.8 MB/s, some 3.3 GB in 30 minutes (deleted at the end with the rest of the run's folder).

Memory that grows by design until it is full (the report prints what to expect): the
officers' tracks (`geo.track_points` fixes each, 3600 by default, ~0.3 KB a fix: ~22 MB/h
for 20 cameras during the first hour; ``--track-points 120`` fills them in the warm-up) and
the in-process event history (`REPLAY_EVENTS` events, ~1.2 KB each, full after 10,000 /
(cameras × 1 fix/s) seconds of live cameras: about 8 minutes for 20).

Asyncio tasks can only be counted inside the gateway. It needs, in bodycam/metrics.py::

    self.event_loop_tasks = Gauge(
        "bodycam_event_loop_tasks", "Tasks of the gateway's event loop", registry=r
    )
    self.event_loop_tasks.set_function(lambda: len(asyncio.all_tasks()))

(evaluated at each scrape, on the event loop's thread where /metrics is rendered); until it
exists the tasks column says "n/a".

It prints figures and asserts nothing::

    python -m bench.soak [--minutes 30] [--cameras 20] [--viewers 4] [--sample-seconds 60]
                         [--warmup 120] [--size 1280x720] [--json FILE] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yarl
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from bench.ingest import (
    BODYCAM,
    FLEET_SPLIT,
    START_TIMEOUT,
    FleetProc,
    enroll,
    free_port,
    http_get,
    start_gateway,
    stop_process,
    wait_http,
    wait_live,
)
from bench.measure import Samples, cpu_seconds, machine_ticks, parse_metrics, rss_mb, sample
from bodycam import users
from bodycam.media.tap import EncodedFrame, tap_receivers
from bodycam.store import SqliteStore

REPO = Path(__file__).resolve().parents[1]
CORES = os.cpu_count() or 1
OPERATOR = "soak-operator"
PASSWORD = "soak operator password"  # (a fresh database of the run's own)
TASKS_GAUGE = "bodycam_event_loop_tasks"
# glibc's heap (bodycam/heap.py): bytes in use growing is a leak, bytes kept free growing is
# fragmentation that `server.heap_trim_seconds` gives back
HEAP_GAUGES = ("bodycam_heap_in_use_bytes", "bodycam_heap_free_bytes")
STAGGER = 0.2  # seconds between two presses, as bench/ingest.py
LIVE_TIMEOUT_BASE = 45.0
MIN_VERDICT_SAMPLES = 5
REPLAY_EVENTS = 10_000  # bodycam/live/base.py: events the in-process stream keeps
FIX_BYTES, EVENT_BYTES = 305, 1180  # a Position in a track, a position Event (tracemalloc)
# RSS climbs for the first two minutes or so of 20 live cameras (segments, jitter buffers,
# allocator arenas filling), then levels: sampling starts after that.
WARMUP = 120.0
RECONNECT_DELAY = 1.0


# --- the viewers and the console ----------------------------------------------------------


def _ignore_report(_kind: str, _ntp: float, _rtp: int) -> None:
    pass


class Viewer:
    """A WHEP viewer of one session that counts the encoded frames it receives."""

    def __init__(self, session_id: str, device_id: str) -> None:
        self.session_id = session_id
        self.device_id = device_id
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.location = ""
        self.video_frames = 0
        self.audio_frames = 0
        self.keyframes = 0

    def _on_frame(self, frame: EncodedFrame) -> None:
        if frame.kind == "video":
            self.video_frames += 1
            self.keyframes += frame.keyframe
        else:
            self.audio_frames += 1

    async def open(self, http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
        """Offer recvonly video and audio to /whep/{session}; apply the answer."""
        for kind in ("video", "audio"):
            self.pc.addTransceiver(kind, direction="recvonly")
        tap_receivers(self.pc, _ignore_report, self._on_frame)  # before any media
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with http.post(
            f"{url}/whep/{self.session_id}",
            data=self.pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp", **headers},
        ) as response:
            if response.status != 201:
                raise RuntimeError(
                    f"WHEP {self.device_id}: {response.status} {await response.text()}"
                )
            answer = await response.text()
            self.location = str(response.url.join(yarl.URL(response.headers["Location"])))
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def close(self, http: aiohttp.ClientSession, headers: dict[str, str]) -> None:
        """End the view (DELETE), then the peer connection."""
        if self.location:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.delete(self.location, headers=headers):
                    pass
        await self.pc.close()


@dataclass
class Console:
    """An operator's console: its WebSocket read to the end, every message counted."""

    messages: int = 0
    by_type: collections.Counter[str] = field(default_factory=collections.Counter)
    reconnects: int = 0
    closes: list[str] = field(default_factory=list)
    last_id: str | None = None

    async def run(self, http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
        """Read until cancelled; reconnect after a close, from the last event applied."""
        while True:
            query = f"?after={self.last_id}" if self.last_id else ""
            try:
                async with http.ws_connect(f"{url}/ui/ws{query}", headers=headers) as ws:
                    async for message in ws:
                        if message.type == aiohttp.WSMsgType.TEXT:
                            self._count(json.loads(message.data))
                    self.closes.append(f"closed with {ws.close_code}")
            except (aiohttp.ClientError, OSError) as err:
                self.closes.append(f"{type(err).__name__}: {err}")
            self.reconnects += 1
            await asyncio.sleep(RECONNECT_DELAY)

    def _count(self, data: dict[str, Any]) -> None:
        self.messages += 1
        self.by_type[str(data.get("type"))] += 1
        self.last_id = data.get("id") or data.get("last_id") or self.last_id


# --- what is read at each sample ----------------------------------------------------------


@dataclass
class Reading:
    """Cumulative counters and instant figures, read at one instant."""

    t: float
    rss_mb: float
    fds: int
    threads: int
    tasks: float | None
    heap_mb: float | None
    heap_free_mb: float | None
    gateway_cpu: float
    loop_cpu: float
    fleet_cpu: float
    machine: tuple[int, int]
    sent: int
    received: float
    recorded: float
    live: float
    viewers_open: float
    console: int
    viewer_frames: list[int]


@dataclass
class Row:
    """One sample: the gateway's state now, and per-minute rates over the interval before."""

    minute: float
    rss_mb: float
    fds: int
    threads: int
    tasks: float | None
    heap_mb: float | None
    heap_free_mb: float | None
    live: int
    viewers_open: int
    gateway_cores: float | None = None
    loop_share: float | None = None
    fleet_cores: float | None = None
    machine_cores: float | None = None
    sent_per_min: float | None = None
    received_per_min: float | None = None
    loss_percent: float | None = None
    recorded_per_min: float | None = None
    console_per_min: float | None = None
    viewer_frames_per_min: float | None = None
    slowest_viewer_per_min: float | None = None


def proc_counts(pid: int) -> tuple[int, int]:
    """(open file descriptors, threads) of a process."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE)
    return fds, int(found.group(1)) if found else 0


def tasks_of(metrics: Samples) -> float | None:
    """The gateway's asyncio task count, if its /metrics has the gauge."""
    return metrics.get((TASKS_GAUGE, ()))


def heap_of(metrics: Samples) -> tuple[float | None, float | None]:
    """The gateway's C heap in use and kept free (MB), if its /metrics has them."""
    found = [metrics.get((name, ())) for name in HEAP_GAUGES]
    return tuple(None if v is None or math.isnan(v) else v / 1e6 for v in found)  # type: ignore[return-value]


def read(
    pid: int, url: str, fleets: list[FleetProc], console: Console, viewers: list[Viewer]
) -> Reading:
    """Everything at one instant (blocking: run it in a thread)."""
    sent = sum(int(f.stats()["frames_sent"]) for f in fleets)
    metrics = parse_metrics(http_get(url + "/metrics"))
    fds, threads = proc_counts(pid)
    heap_mb, heap_free_mb = heap_of(metrics)
    return Reading(
        t=time.monotonic(),
        rss_mb=rss_mb(pid),
        fds=fds,
        threads=threads,
        tasks=tasks_of(metrics),
        heap_mb=heap_mb,
        heap_free_mb=heap_free_mb,
        gateway_cpu=cpu_seconds(pid),
        loop_cpu=cpu_seconds(pid, pid),  # the main thread runs the event loop
        fleet_cpu=sum(cpu_seconds(f.process.pid) for f in fleets),
        machine=machine_ticks(),
        sent=sent,
        received=sample(metrics, "bodycam_ingest_frames_total", kind="video"),
        recorded=sample(metrics, "bodycam_recorded_frames_total", kind="video"),
        live=sample(metrics, "bodycam_sessions_live"),
        viewers_open=sample(metrics, "bodycam_viewers"),
        console=console.messages,
        viewer_frames=[v.video_frames for v in viewers],
    )


def row_of(now: Reading, before: Reading | None, start: float) -> Row:
    """A table row: `now`'s instant figures, and rates since `before` (none for the first)."""
    row = Row(
        minute=(now.t - start) / 60,
        rss_mb=now.rss_mb,
        fds=now.fds,
        threads=now.threads,
        tasks=now.tasks,
        heap_mb=now.heap_mb,
        heap_free_mb=now.heap_free_mb,
        live=int(now.live),
        viewers_open=int(now.viewers_open),
    )
    if before is None:
        return row
    span = now.t - before.t
    per_min = 60 / span
    row.gateway_cores = (now.gateway_cpu - before.gateway_cpu) / span
    row.loop_share = (now.loop_cpu - before.loop_cpu) / span
    row.fleet_cores = (now.fleet_cpu - before.fleet_cpu) / span
    busy, total = (a - b for a, b in zip(now.machine, before.machine, strict=True))
    row.machine_cores = CORES * busy / total if total else 0.0
    sent, received = now.sent - before.sent, now.received - before.received
    row.sent_per_min = sent * per_min
    row.received_per_min = received * per_min
    row.loss_percent = 100 * (1 - received / sent) if sent else None
    row.recorded_per_min = (now.recorded - before.recorded) * per_min
    row.console_per_min = (now.console - before.console) * per_min
    got = [a - b for a, b in zip(now.viewer_frames, before.viewer_frames, strict=True)]
    row.viewer_frames_per_min = sum(got) * per_min
    row.slowest_viewer_per_min = min(got) * per_min if got else None
    return row


# --- one run --------------------------------------------------------------------------------


@dataclass
class Run:
    """What the run saw, filled in as it goes (so that Ctrl-C still reports it)."""

    rows: list[Row] = field(default_factory=list)
    viewers: list[Viewer] = field(default_factory=list)
    console: Console = field(default_factory=Console)
    live: int = 0
    rss_idle_mb: float = 0.0  # before any camera
    rss_live_mb: float = 0.0  # once all are live, before the viewers and the warm-up
    notes: list[str] = field(default_factory=list)
    segments: int = 0
    segment_bytes: int = 0
    recorded_frames: int | None = None
    dropped: dict[str, float] = field(default_factory=dict)
    log_levels: collections.Counter[str] = field(default_factory=collections.Counter)
    log_problems: collections.Counter[str] = field(default_factory=collections.Counter)


def prepare(data_dir: Path, cameras: int) -> list[dict[str, str]]:
    """Enrol the cameras and make the operator's account in a fresh database."""
    devices = enroll(data_dir, cameras)
    store = SqliteStore(data_dir / "bodycam.sqlite3")
    try:
        now = datetime.datetime.now(datetime.UTC)
        users.add(store, OPERATOR, "operator", PASSWORD, "Police municipale", now)
    finally:
        store.close()
    return devices


def start_fleets(cameras: list[dict[str, str]], url: str, work: Path, size: str) -> list[FleetProc]:
    """The sender processes (two above FLEET_SPLIT cameras), live until SIGTERM."""
    procs = 1 if len(cameras) <= FLEET_SPLIT else 2
    fleets = []
    for k in range(procs):
        devices_file = work / f"devices-{k}.json"
        devices_file.write_text(json.dumps(cameras[k::procs]))
        port = free_port()
        argv = [
            *(sys.executable, "-m", "simulators.fleet", "--gateway", url),
            *("--devices-file", str(devices_file), "--stats-port", str(port)),
            *("--size", size, "--stagger", str(STAGGER * procs)),
        ]
        out = work / f"fleet-{k}.json"
        with out.open("wb") as stdout, (work / f"fleet-{k}.log").open("wb") as stderr:
            process = subprocess.Popen(argv, cwd=REPO, stdout=stdout, stderr=stderr)
        fleets.append(FleetProc(process, f"http://127.0.0.1:{port}/stats", out))
    return fleets


async def log_in(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    """The operator's login, as the console page does it; returns the Bearer header."""
    body = {"name": OPERATOR, "password": PASSWORD}
    async with http.post(f"{url}/api/v1/login", json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"login: {response.status} {await response.text()}")
        token = (await response.json())["token"]
    return {"Authorization": f"Bearer {token}"}


async def live_sessions(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> list[tuple[str, str]]:
    """(device id, session id) of the live sessions, in device order."""
    async with http.get(f"{url}/api/v1/alerts", headers=headers) as response:
        alerts = await response.json()
    return sorted((a["device_id"], a["session_id"]) for a in alerts if a["session_state"] == "live")


async def soak(
    run: Run,
    args: argparse.Namespace,
    url: str,
    gateway: subprocess.Popen[bytes],
    fleets: list[FleetProc],
) -> None:
    """Log in, open the console and the viewers, warm up, sample until the end."""
    timeout = LIVE_TIMEOUT_BASE + args.cameras * STAGGER
    run.live = await asyncio.to_thread(wait_live, url, "bodycam", args.cameras, timeout, gateway)
    run.rss_live_mb = rss_mb(gateway.pid)
    if run.live < args.cameras:
        run.notes.append(f"only {run.live} of {args.cameras} sessions went live")
    async with aiohttp.ClientSession() as http:
        headers = await log_in(http, url)
        console_task = asyncio.create_task(run.console.run(http, url, headers))
        try:
            sessions = await live_sessions(http, url, headers)
            if len(sessions) < args.viewers:
                run.notes.append(f"{args.viewers} viewers asked, {len(sessions)} live sessions")
            for device_id, session_id in sessions[: args.viewers]:
                viewer = Viewer(session_id, device_id)
                run.viewers.append(viewer)
                await viewer.open(http, url, headers)
            await asyncio.sleep(args.warmup)
            await sample_until_end(run, args, url, gateway.pid, fleets)
        finally:
            console_task.cancel()
            await asyncio.gather(console_task, return_exceptions=True)
            await asyncio.gather(
                *(v.close(http, headers) for v in run.viewers), return_exceptions=True
            )


async def sample_until_end(
    run: Run, args: argparse.Namespace, url: str, pid: int, fleets: list[FleetProc]
) -> None:
    """A reading every `sample_seconds`, on schedule (a slow reading does not shift the rest)."""
    count = max(1, round(args.minutes * 60 / args.sample_seconds))
    before: Reading | None = None
    start = time.monotonic()
    for k in range(count + 1):
        await asyncio.sleep(max(0.0, start + k * args.sample_seconds - time.monotonic()))
        now = await asyncio.to_thread(read, pid, url, fleets, run.console, run.viewers)
        if before is None:
            start = now.t
        row = row_of(now, before, start)
        run.rows.append(row)
        print(format_row(row), file=sys.stderr, flush=True)
        before = now


def final_metrics(run: Run, url: str) -> None:
    """After the fleet has stopped: the frames recorded and dropped over the whole run."""
    with contextlib.suppress(OSError):
        time.sleep(1.0)  # let the DELETEs land before reading what was recorded
        after = parse_metrics(http_get(url + "/metrics"))
        run.recorded_frames = int(sample(after, "bodycam_recorded_frames_total", kind="video"))
        run.dropped = {
            dict(labels).get("reason", "?"): v
            for (name, labels), v in after.items()
            if name == "bodycam_recording_dropped_frames_total"
        }


def count_segments(run: Run, work: Path) -> None:
    """The recordings on disk, once the gateway has sealed them and stopped."""
    files = [f for f in (work / "data" / "recordings").glob("**/*") if f.is_file()]
    run.segments = len(files)
    run.segment_bytes = sum(f.stat().st_size for f in files)


def read_log(run: Run, log: Path) -> None:
    """Count the gateway's log lines by level; keep its warnings and errors, without ids."""
    if not log.exists():
        return
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
            level, message = str(entry.get("level", "?")).lower(), str(entry.get("message", ""))
        except ValueError:
            level, message = "text", line
        run.log_levels[level] += 1
        if level not in ("info", "debug"):
            # session ids and numbers vary: group the messages by their shape
            shape = re.sub(r"[0-9a-f]{8,}|\d+(\.\d+)?", "#", message)[:160]
            run.log_problems[f"{level}: {shape}"] += 1


# --- the report -----------------------------------------------------------------------------

# Noise floors: what a series cannot resolve, below any drift worth the name. (absolute,
# share of the mean): the larger one applies.
FLOORS: dict[str, tuple[float, float]] = {
    "rss_mb": (5.0, 0.01),  # allocator arenas come and go by MBs
    "fds": (2.0, 0.0),  # our own scrape's connection, a view's socket in its handshake
    "threads": (2.0, 0.0),  # to_thread workers start on demand
    "tasks": (5.0, 0.0),  # a request's tasks while it is served
    "heap_mb": (5.0, 0.01),
    "heap_free_mb": (5.0, 0.01),
    "loss_percent": (0.5, 0.0),
    "console_per_min": (0.0, 0.02),
    "viewer_frames_per_min": (0.0, 0.02),
    "recorded_per_min": (0.0, 0.02),
}
UNITS = {
    "rss_mb": "MB",
    "fds": "fds",
    "threads": "threads",
    "tasks": "tasks",
    "heap_mb": "MB",
    "heap_free_mb": "MB",
    "loss_percent": "points",
    "console_per_min": "msg/min",
    "viewer_frames_per_min": "frames/min",
    "recorded_per_min": "frames/min",
}


@dataclass
class Trend:
    """A series' least-squares line and its verdict."""

    series: str
    points: int
    slope_per_hour: float | None = None
    first_third: float | None = None
    last_third: float | None = None
    noise: float | None = None
    drift: float | None = None
    verdict: str = "n/a"


def fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least squares y = a + b·x: (a, b, residual standard deviation)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    a = my - b * mx
    residuals = [y - (a + b * x) for x, y in zip(xs, ys, strict=True)]
    sd = math.sqrt(sum(r * r for r in residuals) / (n - 2)) if n > 2 else 0.0
    return a, b, sd


def trend(rows: list[Row], series: str) -> Trend:
    """Slope per hour, thirds' means and verdict of one column of the table."""
    points = [
        (row.minute / 60, float(value))
        for row in rows
        if (value := getattr(row, series)) is not None
    ]
    result = Trend(series, len(points))
    if len(points) < 2:
        return result
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    _, slope, sd = fit(xs, ys)
    third = max(1, len(ys) // 3)
    mean = sum(ys) / len(ys)
    floor, share = FLOORS[series]
    result.slope_per_hour = slope
    result.first_third = sum(ys[:third]) / third
    result.last_third = sum(ys[-third:]) / third
    result.noise = max(2 * sd, floor, share * abs(mean))
    result.drift = slope * (xs[-1] - xs[0])
    if len(points) < MIN_VERDICT_SAMPLES:
        result.verdict = f"too few samples ({len(points)})"
    elif abs(result.drift) <= result.noise:
        result.verdict = "flat"
    else:
        result.verdict = "grows" if result.drift > 0 else "shrinks"
    return result


def _num(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


HEADER = (
    f"{'min':>5} {'RSS MB':>7} {'fds':>4} {'thr':>4} {'tasks':>5} {'heap':>6} {'free':>6}"
    f" {'live':>4} {'views':>5}"
    f" {'gw cores':>8} {'loop %':>6} {'fleet':>5} {'machine':>7}"
    f" {'sent/min':>8} {'recv/min':>8}"
    f" {'loss %':>6} {'rec/min':>8} {'console/min':>11} {'viewers/min':>11} {'slowest':>7}"
)


def format_row(r: Row) -> str:
    return (
        f"{r.minute:>5.1f} {r.rss_mb:>7.1f} {r.fds:>4} {r.threads:>4} {_num(r.tasks):>5}"
        f" {_num(r.heap_mb, 1):>6} {_num(r.heap_free_mb, 1):>6}"
        f" {r.live:>4} {r.viewers_open:>5} {_num(r.gateway_cores, 2):>8}"
        f" {_num(None if r.loop_share is None else 100 * r.loop_share):>6}"
        f" {_num(r.fleet_cores, 2):>5} {_num(r.machine_cores, 2):>7}"
        f" {_num(r.sent_per_min):>8} {_num(r.received_per_min):>8}"
        f" {_num(r.loss_percent, 2):>6} {_num(r.recorded_per_min):>8}"
        f" {_num(r.console_per_min):>11} {_num(r.viewer_frames_per_min):>11}"
        f" {_num(r.slowest_viewer_per_min):>7}"
    )


def trends(run: Run) -> list[Trend]:
    return [trend(run.rows, series) for series in FLOORS]


def print_report(run: Run, args: argparse.Namespace, interrupted: bool) -> None:
    print()
    span = run.rows[-1].minute if run.rows else 0.0
    print(
        f"soak: {args.cameras} cameras ({args.size} p30 H.264 + Opus, loop-encoded),"
        f" {len(run.viewers)} WHEP viewers, 1 console; {span:.1f} min sampled every"
        f" {args.sample_seconds:g} s after {args.warmup:g} s warm-up; {CORES} cores"
        + (" (interrupted)" if interrupted else "")
    )
    print(
        f"gateway RSS: {run.rss_idle_mb:.0f} MB idle, {run.rss_live_mb:.0f} MB once all"
        " cameras were live (before the viewers and the warm-up)"
    )
    print(HEADER)
    print("-" * len(HEADER))
    for row in run.rows:
        print(format_row(row))
    print(
        "rates are per minute over the interval before the row; gw cores: the gateway's CPU,"
        " heap/free: the C heap's MB in use and kept free; loop %: its event-loop thread's"
        " share of a core; fleet: the senders' CPU; machine:"
        f" busy cores of {CORES}; slowest: the viewer that got least"
    )
    print()
    print(
        f"{'series':<22} {'slope/h':>10} {'':<10} {'first 1/3':>10} {'last 1/3':>10}"
        f" {'drift':>9} {'noise':>9}  verdict"
    )
    for t in trends(run):
        unit = UNITS[t.series]
        print(
            f"{t.series:<22} {_num(t.slope_per_hour, 2):>10} {unit + '/h':<10}"
            f" {_num(t.first_third, 1):>10} {_num(t.last_third, 1):>10}"
            f" {_num(t.drift, 2):>9} {_num(t.noise, 2):>9}  {t.verdict}"
        )
    print(
        "drift: what the fitted line gains over the run; noise: max(2 × residual sd, the"
        " series' floor); flat when |drift| <= noise"
    )
    print(by_design(args))
    if not any(r.tasks is not None for r in run.rows):
        print(f"tasks: n/a, the gateway's /metrics has no {TASKS_GAUGE} gauge (see the docstring)")
    print()
    print_sanity(run)


def by_design(args: argparse.Namespace) -> str:
    """What RSS gains by design while the bounded buffers fill, to compare its slope with."""
    tracks = args.cameras * args.track_points * FIX_BYTES / 1e6
    history = REPLAY_EVENTS * EVENT_BYTES / 1e6
    return (
        f"RSS by design: officers' tracks ~{tracks:.0f} MB in all, full after"
        f" {args.track_points / 60:.0f} min (geo.track_points, 1 fix/s); event history"
        f" ~{history:.0f} MB in all, full after"
        f" ~{REPLAY_EVENTS / args.cameras / 60:.0f} min of live cameras"
    )


def print_sanity(run: Run) -> None:
    dropped = ", ".join(f"{k} {v:.0f}" for k, v in sorted(run.dropped.items())) or "none"
    print(
        f"sanity: {run.live} sessions live; {run.segments} segments"
        f" ({run.segment_bytes / 1e6:.1f} MB), {_num(run.recorded_frames)} video frames recorded,"
        f" dropped: {dropped}"
    )
    for v in run.viewers:
        print(
            f"  viewer of {v.device_id}: {v.video_frames} video frames ({v.keyframes} key),"
            f" {v.audio_frames} audio"
        )
    c = run.console
    types = ", ".join(f"{k} {n}" for k, n in c.by_type.most_common())
    print(f"  console: {c.messages} messages ({types}); {c.reconnects} reconnects")
    for close in c.closes[:5]:
        print(f"    console {close}")
    levels = ", ".join(f"{k} {n}" for k, n in sorted(run.log_levels.items())) or "empty"
    print(f"  gateway log: {levels}")
    for problem, n in run.log_problems.most_common(10):
        print(f"    {n}× {problem}")
    for note in run.notes:
        print(f"  note: {note}")


def report_json(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "args": vars(args),
        "cores": CORES,
        "rows": [asdict(r) for r in run.rows],
        "trends": [asdict(t) for t in trends(run)],
        "live": run.live,
        "rss_idle_mb": run.rss_idle_mb,
        "rss_live_mb": run.rss_live_mb,
        "segments": run.segments,
        "segment_bytes": run.segment_bytes,
        "recorded_frames": run.recorded_frames,
        "dropped": run.dropped,
        "viewers": [
            {
                "device_id": v.device_id,
                "video_frames": v.video_frames,
                "keyframes": v.keyframes,
                "audio_frames": v.audio_frames,
            }
            for v in run.viewers
        ],
        "console": {
            "messages": run.console.messages,
            "by_type": dict(run.console.by_type),
            "reconnects": run.console.reconnects,
            "closes": run.console.closes,
        },
        "log_levels": dict(run.log_levels),
        "log_problems": dict(run.log_problems),
        "notes": run.notes,
    }


# --- entry point ----------------------------------------------------------------------------


def _size(text: str) -> str:
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise argparse.ArgumentTypeError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 640x360")
    return f"{int(width)}x{int(height)}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the benchmark."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="sampled time (default 30)")
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--viewers", type=int, default=4, help="each of a different camera")
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument(
        "--warmup", type=float, default=WARMUP, help="seconds after the viewers open, not sampled"
    )
    parser.add_argument("--size", type=_size, default="1280x720", help="cameras' WIDTHxHEIGHT")
    parser.add_argument(
        "--track-points",
        type=int,
        default=3600,
        help="the gateway's geo.track_points (default 3600, an hour): 120 fills the officers'"
        " tracks within the warm-up, so that what still grows is not by design",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.cameras < 1 or args.viewers < 0 or args.sample_seconds <= 0 or args.minutes <= 0:
        parser.error("--cameras >= 1, --viewers >= 0, --minutes and --sample-seconds > 0")
    return args


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m bench.soak`."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    run = Run()
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    (work / "data").mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    gateway: subprocess.Popen[bytes] | None = None
    fleets: list[FleetProc] = []
    interrupted = False
    try:
        cameras = prepare(work / "data", args.cameras)
        # (the gateway inherits this process's environment)
        os.environ["BODYCAM_GEO_TRACK_POINTS"] = str(args.track_points)
        gateway = start_gateway(BODYCAM, work, port)
        wait_http(url + "/metrics", gateway, START_TIMEOUT)
        run.rss_idle_mb = rss_mb(gateway.pid)
        fleets = start_fleets(cameras, url, work, args.size)
        for fleet in fleets:
            wait_http(fleet.stats_url, fleet.process, START_TIMEOUT)
        print(f"soak: gateway pid {gateway.pid}, log {work / 'gateway.log'}", file=sys.stderr)
        print(HEADER, file=sys.stderr, flush=True)
        asyncio.run(soak(run, args, url, gateway, fleets))
    except KeyboardInterrupt:
        interrupted = True
    except (RuntimeError, OSError, aiohttp.ClientError) as err:
        run.notes.append(f"run failed: {type(err).__name__}: {err}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        for fleet in fleets:
            stop_process(fleet.process)
        if gateway is not None:
            if gateway.poll() is None:
                final_metrics(run, url)
            stop_process(gateway)
            count_segments(run, work)
            if gateway.returncode not in (0, -signal.SIGTERM):
                run.notes.append(f"gateway exited with {gateway.returncode}")
        read_log(run, work / "gateway.log")
        if args.keep:
            run.notes.append(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_report(run, args, interrupted)
    if args.json:
        Path(args.json).write_text(json.dumps(report_json(run, args), indent=2))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
