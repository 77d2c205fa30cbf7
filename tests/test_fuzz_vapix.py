"""Fuzzing the gateway's VAPIX client (issue 13): a hostile camera behind every path that
reaches one — health polling (device info), PTZ moves (manual and automatic) and the picture
stream a console tile opens (`/ui/cameras/{id}/mjpeg`).

The camera is an aiohttp server of the test's own that answers each request with raw bytes
(status line, headers, body, paced as the case says): slow, huge, endless, malformed,
redirecting, refusing Digest forever. It is registered in the gateway's camera registry as
any camera is, with a VAPIX URL and a credentials reference. Each request it gets is written
down (how long the gateway held it, how many bytes the camera could push) so that every one
can be bounded; a second server stands where redirects point, and must never be reached.
Servers and gateway start once per test; each hypothesis case is one hostile answer.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bodycam.config import Config
from bodycam.gateway.appkeys import health_key, tracker_key
from bodycam.geo.registry import import_cameras
from bodycam.models import Device, Position
from bodycam.store import SqliteStore
from bodycam.ui import feeds as feeds_module
from bodycam.ui.routes import FIRST_FRAME_SECONDS, FRAME_WAIT_SECONDS, feeds_key
from simulators.axis_camera import AxisCameraSimulator, SimCamera

from .fuzzing import ServerErrors, Target, examples, fuzzing
from .geo_scene import at
from .helpers import Gateway, make_config, wait_for

TIMEOUT = 1.0  # cameras.request_timeout_seconds of the gateway under test
SLACK = 1.5  # a loaded 2-core machine in asyncio's debug mode
PASSWORD = "s3cret-fuzz"
# What a camera can push into a request the gateway gives up on: what it reads (64 KiB of an
# answer, a 4 MiB picture) and the loopback socket buffers (a few MiB each way).
BYTES_BOUND = 16 * 1024 * 1024
# A picture stream lingers this long after its last viewer: the linger, a retry, and the
# bounded attempts on either side of it.
STREAM_AFTER_VIEWERS = feeds_module.LINGER_SECONDS + feeds_module.RETRY_SECONDS + 3 * TIMEOUT
SERVER_CAP = 60.0  # the hostile camera gives up by itself after this: a bug, asserted
TILES = [f"tile-{n}" for n in range(20)]  # picture cases rotate, so streams linger apart
MANUAL, AUTO, GOOD = "ptz-manual", "ptz-auto", "good"

# the hostile camera

# The cases are drawn on a worker thread whose C calls hold the GIL the loop needs (see
# conftest.py's loop check): half a second, not 100 ms; a hostile input that held the
# gateway's loop longer would still fail the test.
pytestmark = pytest.mark.loop_budget(0.5)


@dataclass(frozen=True)
class Answer:
    """What the hostile camera sends back to one request: `head` at once, then `body` in
    chunks of `chunk` bytes with `pause` seconds before each, then `endless` again and
    again (up to `limit` bytes), or a stall (`stall`), until the gateway leaves."""

    kind: str
    head: bytes
    body: bytes = b""
    chunk: int = 1 << 16
    pause: float = 0.0
    endless: bytes = b""
    limit: float = math.inf
    stall: bool = False
    challenge: bool = False  # a Digest 401 to a request without Authorization, first

    def __repr__(self) -> str:  # bodies of 100 kB: their start and size say enough
        def cut(data: bytes) -> str:
            return f"{data[:120]!r}{f' ({len(data)} bytes)' if len(data) > 120 else ''}"

        return (
            f"Answer({self.kind!r}, head={cut(self.head)}, body={cut(self.body)},"
            f" chunk={self.chunk}, pause={self.pause}, endless={cut(self.endless)},"
            f" limit={self.limit}, stall={self.stall}, challenge={self.challenge})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # what hypothesis prints
        printer.text(repr(self))


@dataclass
class Visit:
    """One request the gateway made to the hostile camera."""

    camera: str
    path: str
    authorized: bool
    started: float
    ended: float = math.inf
    written: int = 0
    overran: bool = False  # the camera gave up first (SERVER_CAP): the gateway never left


def head(status: bytes, *headers: bytes) -> bytes:
    return b"\r\n".join([status, *headers]) + b"\r\n\r\n"


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256)) * 8 + b"\xff\xd9"
MJPEG_TYPE = b"Content-Type: multipart/x-mixed-replace; boundary=myboundary"
DEVICE_INFO = json.dumps(
    {
        "apiVersion": "1.3",
        "data": {"propertyList": {"SerialNumber": "ACCC8E000001", "ProdNbr": "Q6075-E"}},
    }
).encode()
CHALLENGE = head(
    b"HTTP/1.1 401 Unauthorized",
    b'WWW-Authenticate: Digest realm="hostile", nonce="n0nce", algorithm=MD5, qop="auth"',
    b"Content-Length: 0",
    b"Connection: close",
)


def part(payload: bytes, *headers: bytes, boundary: bytes = b"--myboundary") -> bytes:
    return boundary + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + payload + b"\r\n"


PICTURE = part(JPEG, b"Content-Type: image/jpeg", b"Content-Length: %d" % len(JPEG))


def json_answer(body: bytes, kind: str, **kwargs: Any) -> Answer:
    status = head(
        b"HTTP/1.1 200 OK", b"Content-Type: application/json", b"Content-Length: %d" % len(body)
    )
    return Answer(kind, status, body, **kwargs)


def good_answer(path: str) -> Answer:
    """What a working camera answers on each CGI (the default, between cases)."""
    if path.endswith("basicdeviceinfo.cgi"):
        return json_answer(DEVICE_INFO, "good")
    if path.endswith("ptz.cgi"):
        return Answer("good", head(b"HTTP/1.1 204 No Content"))
    return Answer("good", head(b"HTTP/1.1 200 OK", MJPEG_TYPE), endless=PICTURE, pause=0.1)


class HostileCamera:
    """Cameras under `/{camera}/…` that answer what `answers[camera]` says, raw."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.visits: list[Visit] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, camera: str) -> str:
        return f"http://127.0.0.1:{self.port}/{camera}/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{camera}/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def open_requests(self, camera: str) -> list[Visit]:
        return [v for v in self.visits if v.camera == camera and v.ended == math.inf]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        camera, path = request.match_info["camera"], request.match_info["path"]
        answer = self.answers.get(camera) or good_answer(path)
        transport = request.transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        visit = Visit(camera, path, "Authorization" in request.headers, loop.time())
        self.visits.append(visit)
        try:
            if answer.challenge and not visit.authorized:
                await self._send(visit, transport, CHALLENGE)
            else:
                await self._play(visit, transport, answer)
        finally:
            visit.ended = loop.time()
            transport.close()
        # never sent: the answer was written raw and the transport is closed
        raise web.HTTPServiceUnavailable()

    async def _play(self, visit: Visit, transport: asyncio.Transport, answer: Answer) -> None:
        deadline = visit.started + SERVER_CAP
        loop = asyncio.get_running_loop()
        if not await self._send(visit, transport, answer.head):
            return
        for start in range(0, len(answer.body), answer.chunk):
            # (sleep(0) too: a body byte by byte must not hold the loop it shares)
            await asyncio.sleep(answer.pause)
            if not await self._send(visit, transport, answer.body[start : start + answer.chunk]):
                return
        while (answer.endless or answer.stall) and visit.written < answer.limit:
            if loop.time() > deadline:
                visit.overran = True
                return
            await asyncio.sleep(answer.pause or (0.05 if answer.stall else 0))
            if not await self._send(visit, transport, answer.endless):
                return

    @staticmethod
    async def _send(visit: Visit, transport: asyncio.Transport, data: bytes) -> bool:
        """Write, waiting while the gateway does not read; False once it has left."""
        if transport.is_closing():
            return False
        transport.write(data)
        visit.written += len(data)
        while transport.get_write_buffer_size() > 1 << 18:
            if transport.is_closing():
                return False
            await asyncio.sleep(0.005)
        return not transport.is_closing()


class Elsewhere:
    """Where a redirect points: it challenges for Digest, and counts who came."""

    def __init__(self) -> None:
        self.visits: list[str] = []
        self.server: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        async def steal(request: web.Request) -> web.Response:
            self.visits.append(f"{request.method} {request.path_qs} {dict(request.headers)}")
            return web.Response(status=401, headers={"WWW-Authenticate": CHALLENGE_VALUE})

        app = web.Application()
        app.router.add_route("*", "/{path:.*}", steal)
        self.server = web.AppRunner(app, access_log=None)
        await self.server.setup()
        await web.TCPSite(self.server, "127.0.0.1", 0).start()
        self.port = self.server.addresses[0][1]

    async def close(self) -> None:
        if self.server is not None:
            await self.server.cleanup()


CHALLENGE_VALUE = 'Digest realm="elsewhere", nonce="other", algorithm=MD5, qop="auth"'

# hostile answers: fixed scenarios, then drawn ones


def scenarios(elsewhere: int, port: int, camera: str) -> list[Answer]:
    """The named hostile answers every target gets, whatever it draws."""
    here = b"Location: http://127.0.0.1:%d/%s/axis-cgi/again" % (port, camera.encode())
    ok = b"HTTP/1.1 200 OK"
    mjpeg = head(ok, MJPEG_TYPE)
    return [
        Answer("stalled head", b"HTTP/1.1 200 OK\r\n", stall=True),
        Answer("head one byte a second", b"", head(ok, MJPEG_TYPE) + PICTURE * 3, 1, 1.0),
        Answer("body one byte a second", mjpeg, PICTURE * 3, chunk=1, pause=1.0),
        json_answer(DEVICE_INFO, "json one byte a second", chunk=1, pause=1.0),
        Answer("stalled body", head(ok, b"Content-Length: 1000"), b"{", stall=True),
        Answer(
            "100 MB body",
            head(ok, b"Content-Type: application/json", b"Content-Length: 104857600"),
            endless=b" " * 65536,
            limit=100 * 1024 * 1024,
        ),
        Answer("endless multipart", mjpeg, endless=PICTURE),
        Answer(
            "a part with no end",
            mjpeg,
            b"--myboundary\r\nContent-Type: image/jpeg\r\n\r\n" + JPEG[:100],
            endless=b"\x00" * 65536,
        ),
        Answer("broken boundaries", mjpeg, endless=part(JPEG, boundary=b"--otherboundary")),
        Answer("endless preamble", mjpeg, endless=b"no boundary here\r\n" * 100),
        Answer("endless part headers", mjpeg, b"--myboundary\r\n", endless=b"X-A: b\r\n" * 1000),
        Answer("long part header lines", mjpeg, b"--myboundary\r\n", endless=b"X" * 65536),
        Answer("missing content type", head(ok), PICTURE * 3, endless=PICTURE, pause=0.1),
        Answer(
            "part of 2**40 bytes",
            mjpeg,
            b"--myboundary\r\nContent-Type: image/jpeg\r\nContent-Length: 1099511627776\r\n\r\n",
            endless=b"\xff" * 65536,
        ),
        Answer("non-JPEG parts", mjpeg, endless=part(b"<html>a login page</html>"), pause=0.05),
        Answer("200 with HTML", head(ok, b"Content-Type: text/html"), b"<html>Login</html>"),
        Answer("garbage headers", b"HTTP/1.1 200 OK\r\n\x00\xff: \x01\r\nContent-Type\r\n\r\n{"),
        Answer("header section never ends", b"HTTP/1.1 200 OK\r\n", endless=b"X-A: b\r\n"),
        json_answer(b"[" * 100_000, "deeply nested JSON"),
        json_answer(b'{"data": {"propertyList": ' * 30_000, "deeply nested objects"),
        Answer(
            "redirect elsewhere",
            head(b"HTTP/1.1 302 Found", b"Location: http://127.0.0.1:%d/steal" % elsewhere),
            challenge=True,
        ),
        Answer("redirect loop", head(b"HTTP/1.1 307 Temporary Redirect", here)),
        Answer("Digest never accepts", CHALLENGE),
        Answer("401 without a challenge", head(b"HTTP/1.1 401 Unauthorized")),
        Answer("not HTTP", b"SSH-2.0-OpenSSH_9.2\r\n", endless=b"\x00" * 1024),
    ]


STATUS_LINES = [
    b"HTTP/1.1 200 OK", b"HTTP/1.1 204 No Content", b"HTTP/1.1 301 Moved", b"HTTP/1.1 302 Found",
    b"HTTP/1.1 304 Not Modified", b"HTTP/1.1 401 Unauthorized", b"HTTP/1.1 404 Not Found",
    b"HTTP/1.1 500 Internal Server Error", b"HTTP/1.0 200 OK", b"HTTP/1.1 999 Odd",
    b"HTTP/1.1 200", b"HTTP/2 200", b"ICY 200 OK", b"", b"HTTP/1.1 -1 Minus",
]  # fmt: skip
HEADER_LINES = [
    b"Content-Type: application/json", b"Content-Type: text/html; charset=utf-8", MJPEG_TYPE,
    b"Content-Type: multipart/x-mixed-replace",
    b"Content-Type: multipart/x-mixed-replace; boundary=",
    b"Content-Type: multipart/x-mixed-replace; boundary=" + b"b" * 5000,
    b"Content-Type: multipart/mixed; boundary=myboundary", b"Content-Type: image/jpeg",
    b"Content-Type: \xff\xfe", b"Content-Length: 1099511627776", b"Content-Length: -1",
    b"Content-Length: abc", b"Content-Length: 0", b"Content-Length: 5\r\nContent-Length: 7",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked", b"Content-Encoding: gzip",
    b"Content-Encoding: br", b"Connection: keep-alive", b"Connection: close",
    b"WWW-Authenticate: Basic realm=x", b'WWW-Authenticate: Digest realm="x"',
    b'WWW-Authenticate: Digest realm="x", nonce="n", algorithm=SHA-512-256, qop="auth-int"',
    b"X-Huge: " + b"a" * 100_000, b"no colon in this line", b" a folded continuation",
]  # fmt: skip
PART_HEADERS = [
    b"Content-Type: image/jpeg", b"Content-Type: text/plain", b"Content-Length: 1099511627776",
    b"Content-Length: 0", b"Content-Length: -5", b"Content-Length: 10", b"Content-Length: x",
    b"Content-Transfer-Encoding: base64", b"Content-Encoding: gzip", b"garbage",
    b"Content-Type: multipart/mixed; boundary=inner",
]  # fmt: skip
JSON_BODIES = [
    DEVICE_INFO, b"[" * 100_000, b"{}", b"[]", b"null", b'"\\ud800"', b"\xff\xfe{",
    b'{"error": {"code": 2100, "message": "no"}}', b'{"error": null}', b'{"data": []}',
    b'{"data": {"propertyList": []}}', b'{"data": {"propertyList": {"SerialNumber": 1e999}}}',
    b'{"data": {"propertyList": {"SerialNumber": ' + b"9" * 5000 + b"}}}", b"NaN",
]  # fmt: skip


@st.composite
def mjpeg_body(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        boundary = draw(st.sampled_from([b"--myboundary", b"--other", b"myboundary", b"--"]))
        headers = draw(st.lists(st.sampled_from(PART_HEADERS), max_size=3))
        payload = draw(
            st.sampled_from([JPEG, JPEG[:50], b"", b"<html/>"]) | st.binary(max_size=300)
        )
        parts.append(part(payload, *headers, boundary=boundary))
    closing = draw(st.sampled_from([b"", b"--myboundary--\r\n", b"--myboundary"]))
    return b"".join(parts) + closing


@st.composite
def hostile_answers(draw: st.DrawFn, elsewhere: int) -> Answer:
    """A status line, headers and a body drawn from pieces, sent at a drawn pace."""
    if draw(st.booleans()):  # an MJPEG stream, more or less: its parts are what is broken
        status, headers = b"HTTP/1.1 200 OK", [MJPEG_TYPE]
        body = draw(mjpeg_body())
        return Answer(
            "drawn MJPEG",
            head(status, *headers),
            body,
            chunk=draw(st.sampled_from([7, 1000, 1 << 16])),
            pause=draw(st.sampled_from([0.0, 0.0, 0.01, 0.2])),
            endless=draw(st.sampled_from([b"", PICTURE, part(b"not a picture")])),
        )
    status = draw(
        st.sampled_from(STATUS_LINES) | st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))
    )
    headers = draw(
        st.lists(
            st.sampled_from(
                [*HEADER_LINES, b"Location: http://127.0.0.1:%d/steal" % elsewhere, b"Location: ./"]
            )
            | st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"\r\n", b"")),
            max_size=5,
        )
    )
    body = draw(
        st.sampled_from(JSON_BODIES)
        | mjpeg_body()
        | st.binary(max_size=2000)
        | st.just(b"<html><body>Login</body></html>")
        | st.recursive(
            st.none() | st.integers() | st.text(max_size=20),
            lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        ).map(lambda v: json.dumps(v).encode())
    )
    endless = draw(
        st.sampled_from([b"", b"", b"", PICTURE, b"x" * 1000 + b"\r\n", b"\x00" * 65536])
    )
    return Answer(
        "drawn",
        head(status, *headers),
        body,
        chunk=draw(st.sampled_from([1, 7, 1000, 1 << 16])),
        pause=draw(st.sampled_from([0.0, 0.0, 0.0, 0.01, 0.2])),
        endless=endless,
        stall=not endless and draw(st.sampled_from([False, False, False, True])),
        challenge=draw(st.booleans()),
    )


# the gateway, its cameras all at the hostile camera (and one real simulator)


def feature(camera_id: str, kind: str, url: str, x: float, y: float) -> dict[str, Any]:
    lat, lon = at(x, y)
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {
            "id": camera_id, "name": f"Caméra {camera_id}", "kind": kind, "heading_deg": 0,
            "fov_deg": 60, "range_m": 150, "height_m": 8, "credentials_ref": "csu",
            "vapix_url": url,
        },
    }  # fmt: skip


@pytest.fixture
async def hostile() -> AsyncIterator[HostileCamera]:
    camera = HostileCamera()
    await camera.start()
    try:
        yield camera
    finally:
        await camera.close()


@pytest.fixture
async def elsewhere() -> AsyncIterator[Elsewhere]:
    server = Elsewhere()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def good_camera() -> AsyncIterator[AxisCameraSimulator]:
    async with AxisCameraSimulator([SimCamera(GOOD, GOOD, "fixed", password=PASSWORD)]) as sim:
        yield sim


@pytest.fixture
def gateway_config(
    tmp_path: Path, hostile: HostileCamera, good_camera: AxisCameraSimulator
) -> Config:
    """Health polled once at the start (the test polls), requests bounded by TIMEOUT."""
    config = make_config(
        tmp_path / "data",
        cameras_health_interval_seconds=3600,
        cameras_request_timeout_seconds=TIMEOUT,
    )
    features = [
        feature(MANUAL, "ptz", hostile.url(MANUAL), 0, -10),
        feature(AUTO, "ptz", hostile.url(AUTO), 0, -10),
        *(feature(tile, "fixed", hostile.url(tile), -300, 300) for tile in TILES),
        feature(GOOD, "fixed", good_camera.base_url(GOOD), 300, 300),
    ]
    store = SqliteStore(config.database_path)
    import_cameras(store, {"type": "FeatureCollection", "features": features}, "fuzz")
    store.close()
    config.camera_credentials_path.write_text(
        f'[csu]\nusername = "root"\npassword = "{PASSWORD}"\n'
    )
    config.camera_credentials_path.chmod(0o600)
    return config


Play = Callable[[Answer, Target, ServerErrors], Coroutine[Any, Any, None]]


async def run_target(
    name: str, ci_cases: int, play: Play, hostile: HostileCamera, elsewhere: Elsewhere, camera: str
) -> None:
    """Hypothesis draws answers on a worker thread; each case plays on this loop, where the
    gateway and the servers live; the named scenarios run first."""
    loop = asyncio.get_running_loop()
    with fuzzing(name) as (target, errors):

        @settings(max_examples=examples(ci_cases))
        @given(answer=hostile_answers(elsewhere.port))
        def case(answer: Answer) -> None:
            asyncio.run_coroutine_threadsafe(play(answer, target, errors), loop).result(120)

        for fixed in reversed(scenarios(elsewhere.port, hostile.port, camera)):
            case = example(answer=fixed)(case)
        await asyncio.to_thread(case)


async def settled(
    hostile: HostileCamera, elsewhere: Elsewhere, errors: ServerErrors, mark: int
) -> None:
    """Every request of the case over, each bounded in time and bytes; nothing went where a
    redirect pointed; nothing logged as an error."""
    visits = hostile.visits[mark:]
    await wait_for(lambda: all(v.ended < math.inf for v in visits), TIMEOUT + SLACK, lambda: visits)
    for visit in visits:
        assert not visit.overran, visit
        assert visit.ended - visit.started <= TIMEOUT + SLACK, visit
        assert visit.written <= BYTES_BOUND, visit
    assert not elsewhere.visits, elsewhere.visits
    assert not (logged := errors.take()), "\n".join(logged[:3])


def outcome(status: int) -> int | str:
    """An answer for the figures: 502 and 504 name a camera's failure; any other 5xx is the
    gateway's own (a server error in the table)."""
    return f"{status}" if status in (502, 504) else status


async def still_serving(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    async with http.get(f"{gateway.url}/healthz") as r:
        assert r.status == 200
    async with http.get(f"{gateway.url}/api/v1/cameras/health") as r:
        assert r.status == 200, await r.text()


def camera_error(status: int, body: Any, camera: str) -> None:
    """A refusal the console can show: the camera's fault, named, never a 500."""
    assert status in (502, 504), (status, body)
    assert body["error"].startswith(f"camera {camera}: "), body


# the targets


async def test_health_polling_of_a_hostile_camera(
    gateway: Gateway, hostile: HostileCamera, elsewhere: Elsewhere
) -> None:
    health = gateway.app[health_key]
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(headers=gateway.auth) as http:

        async def play(answer: Answer, target: Target, errors: ServerErrors) -> None:
            hostile.answers = {AUTO: answer}
            mark, started = len(hostile.visits), loop.time()
            await health.poll_all()  # what the gateway does every interval
            assert loop.time() - started <= 2 * TIMEOUT + SLACK  # (a Digest retry: two)
            report = health.report()
            check = {c["camera_id"]: c for c in report["cameras"]}[AUTO]
            assert check["state"] in ("up", "down", "auth_failed"), check
            if check["state"] != "up":
                assert check["error"].startswith(f"camera {AUTO}: "), check
            # the round is recorded for every camera, the hostile one's failure included
            assert all(c["checked_at"] for c in report["cameras"]), report["summary"]
            await settled(hostile, elsewhere, errors, mark)
            await still_serving(http, gateway)
            target.answered(check["state"], answer.kind)

        await run_target("VAPIX health polling", 25, play, hostile, elsewhere, AUTO)


async def test_ptz_moves_to_a_hostile_camera(
    gateway: Gateway, hostile: HostileCamera, elsewhere: Elsewhere
) -> None:
    tracker = gateway.app[tracker_key]
    commands = gateway.metrics.ptz_commands
    loop = asyncio.get_running_loop()
    device = Device("bc-fuzz", "Agent Fuzz", gateway.clock.now())
    first_fix = gateway.clock.now() - timedelta(days=1)  # 10 s a case: never in the future
    cases = 0

    def automatic() -> float:
        return float(commands.labels("sent")._value.get() + commands.labels("failed")._value.get())

    async with aiohttp.ClientSession(headers=gateway.auth) as http:
        control = f"{gateway.url}/api/v1/cameras/{MANUAL}/control"
        async with http.put(control, json={"seconds": 600}) as r:
            assert r.status == 200, await r.text()

        async def manual(pan: float) -> tuple[int, Any]:
            url = f"{gateway.url}/api/v1/cameras/{MANUAL}/ptz"
            async with http.post(url, json={"pan": pan, "tilt": -10, "zoom": 1}) as r:
                return r.status, await r.json() if r.status != 204 else None

        async def play(answer: Answer, target: Target, errors: ServerErrors) -> None:
            nonlocal cases
            cases += 1
            hostile.answers = {MANUAL: answer, AUTO: answer}
            mark, started, before = len(hostile.visits), loop.time(), automatic()
            # the officer crosses the street: 100 m in 10 s, the PTZ camera turns each time
            lat, lon = at(50 if cases % 2 else -50, 0)
            fix = Position(lat, lon, 5.0, first_fix + timedelta(seconds=10 * cases))
            tracker.fix("s-fuzz", device, fix)
            status, body = await manual(10 if cases % 2 else -10)
            assert loop.time() - started <= 2 * TIMEOUT + SLACK
            if status != 204:
                camera_error(status, body, MANUAL)
            await wait_for(lambda: automatic() > before, 2 * TIMEOUT + SLACK)
            await settled(hostile, elsewhere, errors, mark)
            await still_serving(http, gateway)
            target.answered(outcome(status), answer.kind)

        try:
            await run_target("VAPIX PTZ moves", 15, play, hostile, elsewhere, MANUAL)
        finally:
            tracker.end("s-fuzz")
    sent, failed = (commands.labels(o)._value.get() for o in ("sent", "failed"))
    assert sent + failed >= cases, (sent, failed, cases)  # every fix moved or failed, logged


async def test_picture_streams_from_a_hostile_camera(
    gateway: Gateway,
    hostile: HostileCamera,
    elsewhere: Elsewhere,
    good_camera: AxisCameraSimulator,
) -> None:
    feeds = gateway.app[feeds_key]
    loop = asyncio.get_running_loop()
    left: dict[str, float] = {}  # when each tile's last viewer left
    cases = 0

    async def upstream_closed(tile: str) -> None:
        """No stream to the camera stays open (nor comes back) once its viewers are gone."""
        if tile not in left:
            return
        await wait_for(
            lambda: not hostile.open_requests(tile) and tile not in feeds._feeds,
            STREAM_AFTER_VIEWERS + SLACK,
            lambda: hostile.open_requests(tile),
        )
        # when the camera's last stream ended, not when this case looked (cases later)
        visits = [v for v in hostile.visits if v.camera == tile]
        took = max(v.ended for v in visits) - left[tile]
        assert took <= STREAM_AFTER_VIEWERS + SLACK, (hostile.answers[tile], took, visits[-3:])
        assert not any(v.overran for v in hostile.visits if v.camera == tile)

    async def pictures(response: aiohttp.ClientResponse, most: int) -> list[bytes]:
        reader = aiohttp.MultipartReader(response.headers, response.content)
        found: list[bytes] = []
        while len(found) < most:
            async with asyncio.timeout(FRAME_WAIT_SECONDS + SLACK):
                part_ = await reader.next()
                if part_ is None:
                    break
                assert isinstance(part_, aiohttp.BodyPartReader)
                found.append(await part_.read())
        return found

    async with aiohttp.ClientSession(headers=gateway.auth) as http:

        async def play(answer: Answer, target: Target, errors: ServerErrors) -> None:
            nonlocal cases
            tile = TILES[cases % len(TILES)]
            cases += 1
            await upstream_closed(tile)  # its previous case's stream, ended in time
            hostile.answers[tile] = answer
            started = loop.time()
            async with http.get(f"{gateway.url}/ui/cameras/{tile}/mjpeg") as r:
                if r.status == 200:
                    assert r.content_type == "multipart/x-mixed-replace"
                    shown = await pictures(r, 3)
                    assert all(p.startswith(b"\xff\xd8") for p in shown), shown[:1]
                    result: int | str = f"200, {len(shown)} pictures"
                else:
                    assert loop.time() - started <= FIRST_FRAME_SECONDS + SLACK
                    camera_error(r.status, await r.json(), tile)
                    result = outcome(r.status)
            left[tile] = loop.time()
            assert not elsewhere.visits, elsewhere.visits
            assert not (logged := errors.take()), "\n".join(logged[:3])
            await still_serving(http, gateway)
            target.answered(result, answer.kind)

        await run_target("VAPIX picture streams", 15, play, hostile, elsewhere, TILES[0])
        for tile in TILES:
            await upstream_closed(tile)
        # and a camera that works still shows its pictures
        async with http.get(f"{gateway.url}/ui/cameras/{GOOD}/mjpeg") as r:
            assert r.status == 200
            [jpeg] = await pictures(r, 1)
            assert jpeg.startswith(b"\xff\xd8")
    for visit in hostile.visits:
        assert visit.ended < math.inf, visit
        assert not visit.overran, visit
