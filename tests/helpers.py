"""Helpers shared by the test modules: a gateway handle, logins, media settings, waiting,
a clock. Fixtures live in conftest.py; no test module imports another one.

The store is reached as the gateway reaches it: `await store.run(...)` from a test's event
loop, `store.call(...)` from a synchronous test.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import json
import logging
import math
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import av
import numpy as np
import psycopg
import pytest
import redis
import redis.asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from bodycam import devices, users
from bodycam.clock import Clock, SystemClock
from bodycam.config import Config
from bodycam.gateway.app import create_app
from bodycam.gateway.appkeys import clock_key, metrics_key, sessions_key, store_key
from bodycam.gateway.media import LocalMedia
from bodycam.gateway.sessions import LiveSession, SessionManager
from bodycam.metrics import Metrics
from bodycam.models import Session, SessionState
from bodycam.store import Store
from simulators.media import MediaSettings

PASSWORD = "correct horse battery"


class ShiftedClock:
    """Wall-clock time that starts at a fixed moment and then runs at the real pace.

    A gateway started on it believes the date is `start`: a test that records on a fixed
    date and then starts a gateway gives it this clock, so that nothing it decides (the
    purge, statistics of "this year", login expiry) depends on the day the suite runs.
    Monotonic time is the real one.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ShiftedClock needs an aware datetime")
        self._start = start
        self._origin = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._origin)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class Gateway:
    """A running gateway and what tests need to talk to it."""

    config: Config
    server: TestServer
    app: web.Application
    auth: dict[str, str] = field(default_factory=dict)  # an operator's login headers

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def store(self) -> Store:
        return self.app[store_key]

    @property
    def sessions(self) -> SessionManager:
        return self.app[sessions_key]

    @property
    def metrics(self) -> Metrics:
        return self.app[metrics_key]

    @property
    def clock(self) -> Clock:
        return self.app[clock_key]

    async def enroll(self, device_id: str, officer: str = "") -> str:
        """Enrol a body camera; returns its token."""
        now = self.clock.now()
        return await self.store.run(devices.enroll, self.store, device_id, officer, now)

    async def login(self, name: str = "dupont", role: str = "operator") -> dict[str, str]:
        """Headers of a person logged in with `role` (the account is made on first use)."""
        token = await add_login(self.store, name, role, clock=self.clock)
        return {"Authorization": f"Bearer {token}"}


async def start_gateway(app: web.Application, config: Config) -> Gateway:
    """Serve `app` on loopback; the gateway's operator `dupont` is logged in (`auth`)."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    gateway = Gateway(config, server, app)
    gateway.auth = await gateway.login()
    return gateway


@contextlib.asynccontextmanager
async def node_pair(
    data_dir: Callable[[str], Path], **overrides: Any
) -> AsyncIterator[tuple[Gateway, Gateway]]:
    """Two gateway nodes in this process, "a" and "b", on one Redis (a key prefix of
    their own), each on the data folder `data_dir(name)` gives."""
    require_redis()
    prefix = f"bodycam-test:{secrets.token_hex(8)}:"
    started: list[Gateway] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            config = make_config(
                data_dir(name),
                redis_url=REDIS_URL,
                redis_key_prefix=prefix,
                node_id=f"node-{name}",
                node_url=f"http://127.0.0.1:{port}",
                **overrides,
            )
            server = TestServer(create_app(config), host="127.0.0.1", port=port)
            await server.start_server()
            started.append(Gateway(config, server, server.app))
        yield started[0], started[1]
    finally:
        for gateway in started:
            await gateway.server.close()
        await delete_keys(prefix)


async def session_of(store: Store, session_id: str) -> Session:
    """A session the test knows exists (an assertion, not a None, if it does not)."""
    session = await store.run(store.get_session, session_id)
    assert session is not None, f"no session {session_id} in the catalogue"
    return session


def live_of(gateway: Gateway, session_id: str) -> LiveSession:
    """A session the gateway holds live (or interrupted)."""
    live = gateway.sessions.session(session_id)
    assert live is not None, f"session {session_id} is not held by the gateway"
    return live


# `./dev test` runs the suite twice, BODYCAM_MEDIA_WORKERS=0 then 2: media in the test's
# process, then in two worker processes (for the gateways a test starts in its own process,
# as for the `bodycam serve` it starts, which read the variable themselves)
MEDIA_WORKERS = os.environ.get("BODYCAM_MEDIA_WORKERS", "0")

# a test that looks inside a session's media (`media_of`) runs in the suite's run with the
# media in process only (skipped before it starts anything, which it would leave open)
media_in_process = pytest.mark.skipif(
    MEDIA_WORKERS != "0", reason="looks inside a session's media: runs with media workers = 0"
)


def media_of(gateway: Gateway, session_id: str) -> LocalMedia:
    """The media of a live session in the test's own process (`[media] workers = 0`): its
    connection, recorder and relay, for a test that looks inside them (`media_in_process`)."""
    media = live_of(gateway, session_id).media
    assert isinstance(media, LocalMedia), f"session {session_id}'s media is not in process"
    return media


async def add_login(
    store: Store, name: str, role: str, token: str | None = None, clock: Clock | None = None
) -> str:
    """An account (if new) and a login token for it, straight in the store."""
    now = (clock or SystemClock()).now()
    if await store.run(store.get_user, name) is None:
        await asyncio.to_thread(users.add, store, name, role, PASSWORD, "Police municipale", now)
    found = await store.run(store.get_user, name)
    assert found is not None
    if token is None:
        return await store.run(users.open_login, store, found[0], now, timedelta(hours=1))
    await store.run(store.add_login, users.login_hash(token), name, now, now + timedelta(hours=1))
    return token


def small_media(codec: str = "h264", loop_seconds: int = 3) -> MediaSettings:
    """320x240 loop-mode media with a flash and beep every second.

    Loop mode encodes the frames before going live, so the camera sends every one of them
    on time even on a busy CI machine, and a counter gap can only be the gateway's.
    """
    return MediaSettings(
        codec=codec,
        width=320,
        height=240,
        fps=30,
        encode="loop",
        loop_seconds=loop_seconds,
        flash_interval=1.0,
        flash_offset=0.5,
    )


Check = Callable[[], bool | Awaitable[bool]]


async def wait_for(
    predicate: Check, within: float = 10.0, what: Callable[[], object] | None = None
) -> None:
    """Poll until `predicate()` holds (it may be a coroutine function), or fail saying what
    was seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met in {within} s: {what() if what else ''}")
        await asyncio.sleep(0.05)


async def wait_for_store(
    store: Store, check: Callable[[Store], bool], within: float = 10.0
) -> None:
    """Poll until `check(store)`, run on the store's thread, holds."""
    await wait_for(lambda: store.run(check, store), within)


async def wait_for_session(
    store: Store, session_id: str, state: SessionState, within: float = 10.0
) -> None:
    """Poll until the catalogue has the session in `state`."""

    def reached(store: Store) -> bool:
        session = store.get_session(session_id)
        return session is not None and session.state == state

    await wait_for_store(store, reached, within)


def make_config(data_dir: Path, **overrides: Any) -> Config:
    overrides.setdefault("media_workers", MEDIA_WORKERS)
    return Config.load(None, environ={}, data_dir=str(data_dir), **overrides)


class ConsoleSocket:
    """The console's WebSocket: every message it was sent, and whether it was closed."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.closed: tuple[int | None, str] | None = None
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(message.data))
        self.closed = (self.ws.close_code, str(self.ws.exception() or ""))

    def count(self, type_: str) -> int:
        return sum(1 for m in self.messages if m["type"] == type_)

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self.reader, 5)

    def data_of(self, type_: str) -> list[dict[str, Any]]:
        """The data of every event of that type, in order."""
        return [m["data"] for m in self.messages if m["type"] == type_]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve_process(
    data: Path, port: int, log: Path, **environ: str
) -> asyncio.subprocess.Process:
    """A real `bodycam serve` process on `data` (BODYCAM_* settings in `environ`), its
    stderr appended to `log`; returned once /healthz answers."""
    env = {**os.environ, "BODYCAM_LOG_FORMAT": "text", **environ}
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bodycam",
            "serve",
            "--data-dir",
            str(data),
            "--port",
            str(port),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_fd,
        )
    finally:
        os.close(log_fd)
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return process
            except aiohttp.ClientError:
                pass
            assert process.returncode is None, f"gateway exited at startup (see {log})"
            assert time.monotonic() < deadline, f"gateway did not start (see {log})"
            await asyncio.sleep(0.1)


def under_faketime() -> bool:
    """Whether this process runs under libfaketime (the suite's second run in .ci/run)."""
    return "faketime" in os.environ.get("LD_PRELOAD", "")


def no_outage_under_faketime(what: str) -> None:
    """Skip a test that waits out a server's outage when it runs under libfaketime.

    libfaketime moves the monotonic clock: a timed lock wait (a client's pool or writer
    thread waiting while its server is down) computes its deadline 400 days away and never
    ends, and the test hangs until pytest-timeout kills it, leaving its gateway unclosed.
    Such a test reads no date; the suite's first run has it (.ci/run)."""
    if under_faketime():
        pytest.skip(f"a {what} outage cannot be waited out under libfaketime")


def without_faketime(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for a program that is not ours (redis-server, PostgreSQL tools): the
    suite's faketime run moves our clock, not theirs."""
    return {
        name: value
        for name, value in environ.items()
        if name != "LD_PRELOAD" and not name.startswith("FAKETIME")
    }


# encoded media, made by real encoders


def encode(codec: str, width: int, height: int, frames: int = 3, **options: str) -> list[bytes]:
    """Frames of noise encoded by a real encoder (libx264, libvpx), one payload each."""
    encoder: Any = av.CodecContext.create(codec, "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.options = options
    out: list[bytes] = []
    for i in range(frames):
        picture = np.random.default_rng(i).integers(0, 255, (height, width, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in encoder.encode(frame)]
    out += [bytes(p) for p in encoder.encode(None)]
    return out


# a real Redis for the live-state runs (CI starts one; elsewhere the runs are skipped)

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@cache
def redis_problem() -> str | None:
    """Why the Redis runs cannot happen here, or None."""
    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2) as client:
            client.ping()
    except redis.RedisError as err:
        return f"no Redis at {REDIS_URL} ({err})"
    return None


def cannot_run(problem: str, tests: str, hint: str = "") -> NoReturn:
    """Skip a test that this machine cannot run, saying why; fail it under CI, which must
    run every test (`.ci/run` installs and starts what they need)."""
    if os.environ.get("CI"):
        pytest.fail(f"{problem}: CI must run {tests}")
    pytest.skip(f"{problem}{hint}")


def require_redis() -> None:
    problem = redis_problem()
    if problem is not None:
        cannot_run(problem, "the Redis tests", ": Redis runs skipped (start redis-server)")


async def delete_keys(prefix: str) -> None:
    async with redis.asyncio.Redis.from_url(REDIS_URL) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)


class OwnRedis:
    """A redis-server of the test's own on a free port, which the test can stop and start."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            # Redis is not ours: under the suite's faketime run it must keep the real clock
            # (libfaketime inside redis-server recurses into clock_gettime and never starts).
            env=without_faketime(os.environ),
        )
        for _ in range(200):
            try:
                with redis.Redis(port=self.port, socket_connect_timeout=0.1) as client:
                    client.ping()
                    return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise AssertionError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


# a real PostgreSQL for the store's second backend (CI starts one; elsewhere: skipped)

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@cache
def postgres_problem() -> str | None:
    """Why the PostgreSQL runs cannot happen here, or None."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as err:
        return f"no PostgreSQL at {POSTGRES_URL} ({str(err).strip()})"
    return None


def require_postgres() -> None:
    problem = postgres_problem()
    if problem is not None:
        cannot_run(problem, "the PostgreSQL tests", ": PostgreSQL runs skipped (start a server)")


def with_database(url: str, name: str) -> str:
    """The same server, another database."""
    head, _, tail = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{tail}" if tail else "")


def with_schema(url: str, schema: str) -> str:
    """A URL whose connections work in `schema` (each test gets one of its own)."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


# Chromium in a loopback-only network namespace

REPO = Path(__file__).resolve().parent.parent


def browser_available() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    if not Path("/usr/bin/chromium").exists():
        return "Debian's chromium is not installed (apt-get install chromium)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare and ip (util-linux, iproute2) are needed for a loopback-only namespace"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return "cannot create a network namespace (unshare -n): run as root"
    return None


def run_scenario(module: str, out: Path, timeout: float = 180) -> dict[str, Any]:
    """Run a browser scenario in a loopback-only namespace; its printed JSON result."""
    missing = browser_available()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)  # CI installs everything: a missing piece is a broken CI
        pytest.skip(missing)
    command = f"ip link set lo up; exec {sys.executable} -m {module} {out}"
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# the event loop held too long (asyncio's debug mode reports it; conftest fails the test)

SLOW_CALLBACK_SECONDS = 0.1  # what asyncio's debug mode reports (loop.slow_callback_duration)

# aiortc's sender packetizes, protects and sends a whole encoded frame in one step of its
# `_run_rtp` task: a simulated camera's keyframe takes up to ~60 ms of it on this idle
# machine and 0.13-0.17 s on a loaded CI run. The frame's size sets that, not a blocking
# call; the step gets this budget (issue 14 moves that work into media workers). A step
# that blocked the loop (a file written, a lock awaited) would still show far past it.
SENDER_FRAME_STEP = "coro=<RTCRtpSender._run_rtp()"
SENDER_FRAME_STEP_SECONDS = 0.5


class GarbageCollections:
    """When the garbage collector ran (monotonic start, seconds): a full collection of the
    test process's heap takes up to ~90 ms here, which is not the callback's doing.

    A pause is written down as it starts (its length open until it ends): the loop's
    thread may report its slow callback before the thread that collected gets to say it
    has finished."""

    def __init__(self) -> None:
        self.pauses: deque[list[float]] = deque(maxlen=256)
        self._current: list[float] | None = None
        gc.callbacks.append(self._observe)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._current = self._begin()
        elif self._current is not None:
            self._end(self._current)

    def _begin(self) -> list[float]:
        pause = [time.monotonic(), math.inf]
        self.pauses.append(pause)
        return pause

    @staticmethod
    def _end(pause: list[float]) -> None:
        pause[1] = time.monotonic() - pause[0]

    @contextlib.contextmanager
    def walking_the_heap(self) -> Iterator[None]:
        """A test's own walk of the heap (gc.collect, gc.get_objects) holds the interpreter
        like a collection, from whichever thread: counted as one, not as the loop's."""
        pause = self._begin()
        try:
            yield
        finally:
            self._end(pause)

    def within(self, start: float, end: float) -> float:
        """Seconds of collection between two monotonic moments."""
        return sum(
            max(0.0, min(end, t + d) - max(start, t))
            for t, d in list(self.pauses)
            if t < end and t + d > start
        )


GC = GarbageCollections()


class SlowCallbacks(logging.Handler):
    """Collects asyncio's debug-mode reports of callbacks that held the loop too long, less
    the garbage collector's share of that time."""

    def __init__(self, budget: float = SLOW_CALLBACK_SECONDS) -> None:
        super().__init__(logging.WARNING)
        self.budget = budget
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        took = re.search(r" took (\d+\.\d+) seconds$", message)
        if not message.startswith("Executing ") or took is None:
            return
        end = time.monotonic()  # asyncio logs the moment the callback returns
        held = float(took[1]) - GC.within(end - float(took[1]), end)
        budget = self.budget
        if SENDER_FRAME_STEP in message:
            budget = max(budget, SENDER_FRAME_STEP_SECONDS)
        if held >= budget:
            self.seen.append(f"{message} ({held:.3f} s without garbage collection)")
