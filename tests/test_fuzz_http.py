"""Fuzzing the gateway's protocol and API inputs (issue 13): WHIP and WHEP offers, telemetry
messages, every JSON body of the API, GeoJSON imports.

Each target sends hypothesis' cases to a real gateway on loopback (its real store, real
aiortc peers, the real simulator for a live camera) and holds, for every case: no 5xx, a 4xx
says what is wrong, the gateway still answers /healthz, nothing logged at ERROR (an
exception the gateway did not handle); and at the end of the target, the test process's RSS
grew by less than a generous bound. Cases per target and figures are printed at the end of
the run (conftest.py's summary). `./dev fuzz` runs the same targets with many more cases.

As in tests/test_fuzz_media.py, the gateway and the peers start once per test and hypothesis
draws its cases on a worker thread, each case running on the test's loop: the loop (media,
DTLS, ICE consent, the gateway's watches) keeps running between cases and while hypothesis
generates or shrinks, which a loop stopped between examples would not.

The Chromium offers in tests/data/ are real: Chromium 156 (Debian's, headless, fake media
devices) asked for a sendonly camera offer with a `telemetry` data channel (WHIP) and a
recvonly video + audio offer (WHEP), in a loopback-only namespace, gathering complete.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import io
import json
import math
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bodycam.config import Config
from bodycam.evidence.keyring import Keyring
from bodycam.gateway import telemetry
from bodycam.gateway.app import create_app
from bodycam.gateway.appkeys import tracker_key
from bodycam.gateway.tracking import City
from bodycam.geo import registry
from bodycam.models import Position
from bodycam.store import SqliteStore
from simulators.axis_bodycam import AxisBodycam

from .evidence_data import record_session
from .fuzzing import Replay, ServerErrors, Target, examples, fuzzing
from .helpers import Gateway, ShiftedClock, add_login, live_of, small_media, start_gateway, wait_for
from .whip_client import make_offer, publish

DATA = Path(__file__).parent / "data"
# the recording the API target reads is made on a fixed date, the gateway on a clock of it
RECORDED = datetime(2026, 11, 2, 9, tzinfo=UTC)
SDP = "application/sdp"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)
CASE_SECONDS = 60
# Over every limit of the gateway (64 KB bodies, 4 KB telemetry), yet small enough that the
# one C call that makes or parses it (bytes * n, json) holds the GIL a few ms: on any thread
# a longer one stops the gateway's loop too (faketime's slower clock made 1 MB cases do it).
HUGE_BYTES = 256 * 1024

T = TypeVar("T")

# The cases are drawn on a worker thread whose C calls hold the GIL the loop needs (see
# conftest.py's loop check): half a second, not 100 ms; a hostile input that held the
# gateway's loop longer would still fail the test.
pytestmark = pytest.mark.loop_budget(0.5)


# what every case must leave true


@dataclasses.dataclass
class Run:
    """A target's figures and the server errors seen, over all its cases."""

    target: Target
    errors: ServerErrors

    async def send(
        self,
        http: aiohttp.ClientSession,
        gateway: Gateway,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        kind: str = "",
    ) -> tuple[int, str, dict[str, str]]:
        """Send one case (`kind`: what it is, for the figures); check the invariants; the
        status, body text and headers."""
        data = None if body is None else io.BytesIO(body)  # aiohttp warns of large bytes
        async with http.request(method, gateway.url + path, data=data, headers=headers) as response:
            status, text = response.status, (await response.read()).decode(errors="replace")
            got = dict(response.headers)
        self.target.answered(status, kind)
        assert status < 500, f"{method} {path}: {status} {text[:500]}"
        if status >= 400:
            assert text.strip(), f"{method} {path}: {status} without a word of why"
            if response.content_type == "application/json":
                assert json.loads(text)["error"], text
        await self.still_serving(http, gateway)
        return status, text, got

    async def still_serving(self, http: aiohttp.ClientSession, gateway: Gateway) -> None:
        """The gateway answers /healthz, and logged no error since the last case."""
        async with http.get(gateway.url + "/healthz") as health:
            assert health.status == 200, await health.text()
        self.clean()

    def clean(self) -> None:
        logged = self.errors.take()
        self.target.server_errors += len(logged)
        assert not logged, "the gateway logged errors:\n" + "\n".join(logged[:3])


async def fuzz_on_loop(
    strategy: st.SearchStrategy[T],
    case: Callable[[T], Coroutine[Any, Any, None]],
    max_examples: int,
    fixed: tuple[T, ...] = (),
) -> None:
    """Hypothesis draws `strategy` on a worker thread; each case (and each `fixed` one first)
    runs as `case(value)` on this loop, where the gateway and the peers live."""
    loop = asyncio.get_running_loop()

    def cases() -> None:  # building the test, too, is none of the loop's time
        @settings(max_examples=max_examples)
        @given(strategy)
        def each(value: T) -> None:
            asyncio.run_coroutine_threadsafe(case(value), loop).result(CASE_SECONDS)

        for value in fixed:
            each = example(value)(each)
        each()

    await asyncio.to_thread(cases)


# SDP offers, mutated


EDGE_TOKENS = (
    "",
    " ",
    "0",
    "-1",
    "65536",
    "4294967296",
    "99999999999999999999999999",
    "1e308",
    "NaN",
    "%s%n",
    "\t",
    "=",
    ":",
    "a=",
    "m=",
    "IN IP6 ::1",
    "UDP/TLS/RTP/SAVPF",
    "\u00e9\u00e8\u4e2d",
    "\x00",
)
CONTENT_TYPES = (
    "text/plain",
    "application/json",
    "application/sdp; charset=iso-8859-1",
    "APPLICATION/SDP",
    "application/sdpx",
    "multipart/form-data; boundary=x",
    "",
)


def sdp_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").split("\n")


@st.composite
def line_edits(draw: st.DrawFn, offer: str) -> str:
    """Deletions, duplications, swaps and rewritten values of an offer's lines."""
    lines = sdp_lines(offer)
    for _ in range(draw(st.integers(1, 6))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(("delete", "duplicate", "swap", "value", "number")))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines[i:i] = [lines[i]] * draw(st.integers(1, 50))
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "value":
            head = re.match(r"^[a-z]=([a-z-]+:)?", lines[i])
            keep = head[0] if head else ""
            value = draw(st.sampled_from(EDGE_TOKENS) | st.text(max_size=40))
            lines[i] = keep + value
        else:
            numbers = list(re.finditer(r"\d+", lines[i]))
            if numbers:
                m = draw(st.sampled_from(numbers))
                new = draw(st.sampled_from(("0", "-1", "65536", "4294967296", "9" * 30)))
                lines[i] = lines[i][: m.start()] + new + lines[i][m.end() :]
    return draw(st.sampled_from(("\r\n", "\n", "\r"))).join(lines)


@st.composite
def offer_bodies(draw: st.DrawFn, offers: list[str]) -> tuple[str, bytes, str]:
    """A mutated real offer: the kind of mutation, the body and its Content-Type."""
    offer = draw(st.sampled_from(offers))
    kind = draw(
        st.sampled_from(("lines", "bytes", "truncate", "huge", "non_utf8", "m_lines", "type"))
    )
    content_type = SDP
    body = offer.encode()
    if kind == "lines":
        body = draw(line_edits(offer)).encode()
    elif kind == "bytes":
        flipped = bytearray(body)
        for _ in range(draw(st.integers(1, 20))):
            at = draw(st.integers(0, len(flipped) - 1))
            flipped[at] ^= draw(st.integers(1, 127))  # non-UTF-8 is a kind of its own
        body = bytes(flipped)
    elif kind == "truncate":
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif kind == "huge":  # over the 64 KB limit, said or not by Content-Length
        body += b"a=x-pad:" + b"x" * draw(st.integers(64 * 1024, HUGE_BYTES)) + b"\r\n"
    elif kind == "non_utf8":
        at = draw(st.integers(0, len(body)))
        junk = draw(st.sampled_from((b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80" * 9)))
        body = body[:at] + junk + body[at:]
    elif kind == "m_lines":
        section = draw(
            st.sampled_from(
                (
                    "m=audio 9 RTP/AVP 0\r\n",
                    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\na=sendonly\r\n",
                    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
                )
            )
        )
        body += (section * draw(st.integers(100, 4000))).encode()
    else:
        content_type = draw(st.sampled_from(CONTENT_TYPES))
    return kind, body, content_type


async def real_offers(chromium: str, **kinds: Any) -> list[str]:
    """The aiortc offer (as the simulator makes it) and Chromium's."""
    if kinds.get("recvonly"):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
    else:
        pc, _ = await make_offer()
    offer = pc.localDescription.sdp
    await pc.close()
    return [offer, (DATA / chromium).read_bytes().decode("ascii")]  # CRLF kept


async def drop_created(
    http: aiohttp.ClientSession, gateway: Gateway, location: str, headers: dict[str, str]
) -> None:
    """An offer the mutation left acceptable made a session or a view: end it, so that the
    next case is not a 409."""
    async with http.delete(gateway.url + location, headers=headers) as done:
        assert done.status == 200, await done.text()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
        yield session


@pytest.fixture
async def device_auth(gateway: Gateway) -> dict[str, str]:
    return {"Authorization": f"Bearer {await gateway.enroll('cam-fuzz')}"}


async def test_whip_offers(
    gateway: Gateway, http: aiohttp.ClientSession, device_auth: dict[str, str]
) -> None:
    offers = await real_offers("chromium_whip_offer.sdp")
    with fuzzing("WHIP offers") as (target, errors):
        run = Run(target, errors)

        async def case(offer: tuple[str, bytes, str]) -> None:
            kind, body, content_type = offer
            headers = {**device_auth, "Content-Type": content_type} if content_type else device_auth
            status, _, got = await run.send(http, gateway, "POST", "/whip", body, headers, kind)
            if status == 201:
                await drop_created(http, gateway, got["Location"], device_auth)

        await fuzz_on_loop(offer_bodies(offers), case, examples(200))


# WHEP: viewers' offers to a live session


@pytest.fixture
async def live_session(gateway: Gateway) -> AsyncIterator[str]:
    """A camera (the simulator) publishing for the whole test: its session id."""
    token = await gateway.enroll("cam-live")
    async with AxisBodycam(gateway.url, "cam-live", token, media=small_media()) as camera:
        await camera.press()
        [session] = await gateway.store.run(gateway.store.list_sessions)
        yield session.id
        await camera.press()


async def test_whep_offers(
    gateway: Gateway, http: aiohttp.ClientSession, live_session: str
) -> None:
    offers = await real_offers("chromium_whep_offer.sdp", recvonly=True)
    path = f"/whep/{live_session}"
    with fuzzing("WHEP offers") as (target, errors):
        run = Run(target, errors)

        async def case(offer: tuple[str, bytes, str]) -> None:
            kind, body, content_type = offer
            auth = gateway.auth
            headers = {**auth, "Content-Type": content_type} if content_type else auth
            status, _, got = await run.send(http, gateway, "POST", path, body, headers, kind)
            if status == 201:
                await drop_created(http, gateway, got["Location"], auth)
            assert len(live_of(gateway, live_session).views) == 0  # no view left behind

        await fuzz_on_loop(offer_bodies(offers), case, examples(80))


# telemetry: the parser alone, then through a real data channel

NUMBER_TOKENS = ("NaN", "Infinity", "-Infinity", "1e308", "-1e308", "1e999", "-0", "-0.0", "0")
TELEMETRY_KEYS: tuple[str, ...] = ("type", "lat", "lon", "accuracy", "heading", "speed", "time")
TELEMETRY_KEYS += ("percent", "serial", "model", "firmware", "action")
TYPES = ("position", "battery", "button", "hello", "selfie", "", "POSITION")

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(10**400), 10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from((0.0, -0.0, 1e308, -1e308, 5e-324, 2**53 + 1))
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
times = st.sampled_from(
    (
        "2026-11-22T10:00:00.250Z",
        "2026-11-22T10:00:00",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+01:00",
        "2026-02-30T10:00:00Z",
        "yesterday",
        "",
    )
) | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())


@st.composite
def telemetry_objects(draw: st.DrawFn) -> str:
    """A JSON object of the telemetry's shape, every key right, wrong or missing."""
    fields: dict[str, str] = {"type": json.dumps(draw(st.sampled_from(TYPES) | json_values))}
    valid = {
        "lat": st.floats(-90, 90),
        "lon": st.floats(-180, 180),
        "accuracy": st.floats(0, 100_000),
        "heading": st.floats(0, 360),
        "speed": st.floats(0, 100),
        "percent": st.floats(0, 100),
        "time": times,
        "serial": st.text(max_size=120),
        "model": st.text(max_size=20),
        "firmware": st.text(max_size=20),
        "action": st.just("press"),
    }
    for key in TELEMETRY_KEYS[1:]:
        how = draw(st.sampled_from(("valid", "valid", "absent", "token", "wrong")))
        if how == "valid":
            fields[key] = json.dumps(draw(valid[key]))
        elif how == "token":  # what json.dumps never writes but a parser may take
            fields[key] = draw(st.sampled_from(NUMBER_TOKENS))
        elif how == "wrong":
            fields[key] = json.dumps(draw(json_values))
    for extra in draw(st.lists(st.text(max_size=10), max_size=3)):
        fields[extra] = json.dumps(draw(json_values))
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in fields.items()) + "}"


def nested(depth: int, opener: str) -> str:
    closer = {"[": "]", '{"a": ': "}"}[opener]
    return opener * depth + "1" + closer * depth


telemetry_messages: st.SearchStrategy[str | bytes] = st.one_of(
    telemetry_objects(),
    json_values.map(lambda v: json.dumps(v)),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.builds(nested, st.integers(1, 10_000), st.sampled_from(("[", '{"a": '))),
    st.integers(4000, HUGE_BYTES).map(lambda n: json.dumps({"type": "hello", "serial": "x" * n})),
    st.sampled_from(NUMBER_TOKENS),
)


def telemetry_outcome(raw: str | bytes) -> str:
    """What the parser made of `raw`: a message's type, or "refused"; its positions checked."""
    try:
        message = telemetry.parse(raw, 4096)
    except telemetry.TelemetryError as err:
        return "refused" if str(err) else "refused without a reason"
    if isinstance(message, Position):
        assert -90 <= message.lat <= 90
        assert -180 <= message.lon <= 180
        assert math.isfinite(message.accuracy_m)
        assert message.time.tzinfo is not None
    return type(message).__name__


def test_telemetry_parser() -> None:
    """Every message is a Message or a TelemetryError that says why; positions in range; and
    the parser keeps nothing of what it is given (under 16 KB over a replay of the cases)."""
    with fuzzing("telemetry parser", rss_bound=False) as (target, _):
        replay: Replay[str | bytes] = Replay()

        @settings(max_examples=examples(1000))
        @given(raw=telemetry_messages)
        @example(raw=b"")
        @example(raw="")
        def case(raw: str | bytes) -> None:
            target.answered(telemetry_outcome(raw))
            assert "refused without a reason" not in target.answers
            replay.keep(raw)

        case()
        target.retained_bytes = replay.retained(telemetry_outcome)
        assert target.retained_bytes < 16 * 1024, f"the parser kept {target.retained_bytes} B"


def handled(gateway: Gateway, session_id: str) -> int:
    """Telemetry messages the gateway has dealt with so far, valid or not."""
    registry_ = gateway.metrics.registry
    valid = sum(
        registry_.get_sample_value("bodycam_telemetry_messages_total", {"type": kind}) or 0
        for kind in ("position", "battery", "buttonpress", "hello")
    )
    return int(valid) + live_of(gateway, session_id).invalid_telemetry


# The longest message a case sends over the channel. aiortc's sender refuses more than the
# 256 KB its peer announces (ValueError in send), and the gateway refuses anything over 4 KB
# by its length alone; but aiortc reassembles the message first, on the loop the gateway and
# the publisher share, in one callback (256 KB held it 130 ms): 64 KB, what a browser takes
# by default, reaches the same refusal.
SCTP_MAX_MESSAGE = 65_536


def fits_the_channel(raw: str | bytes) -> str | bytes:
    encoded = raw.encode() if isinstance(raw, str) else raw
    return raw if len(encoded) <= SCTP_MAX_MESSAGE else encoded[:SCTP_MAX_MESSAGE]


@pytest.fixture
async def telemetry_channel(gateway: Gateway) -> AsyncIterator[tuple[str, Any]]:
    """A camera (aiortc's test tracks) published, its telemetry channel open."""
    token = await gateway.enroll("cam-tele")
    pc, channel = await publish(gateway.url, token)
    [session] = await gateway.store.run(gateway.store.list_sessions)
    yield session.id, channel
    await pc.close()


async def test_telemetry_channel(
    gateway: Gateway, http: aiohttp.ClientSession, telemetry_channel: tuple[str, Any]
) -> None:
    """Every message sent is dealt with (counted valid or invalid), the session stays live,
    the channel open. Empty messages are cases like any other: aiortc sends them (PPIDs 56
    and 57 with one byte), the gateway counts them invalid (not JSON)."""
    session_id, channel = telemetry_channel
    with fuzzing("telemetry over a data channel") as (target, errors):
        run = Run(target, errors)

        async def case(raw: str | bytes) -> None:
            try:
                ends = isinstance(telemetry.parse(raw, 4096), telemetry.ButtonPress)
            except telemetry.TelemetryError:
                ends = False
            if ends:  # a button press ends the session, as it should: not a case for this target
                return
            before = handled(gateway, session_id)
            channel.send(raw)
            await wait_for(
                lambda: handled(gateway, session_id) > before,
                within=10,
                what=lambda: f"a message of {len(raw)} bytes was not dealt with",
            )
            target.answered("handled", "empty" if not raw else "")
            assert live_of(gateway, session_id).state == "live"
            assert channel.readyState == "open"
            await run.still_serving(http, gateway)

        messages = telemetry_messages.map(fits_the_channel)
        await fuzz_on_loop(messages, case, examples(100), fixed=(b"", "", "{}"))


# every JSON body of the API


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str  # {camera}, {session}, {hold}: filled from PATH_VALUES
    keys: dict[str, st.SearchStrategy[Any]]  # each key's good values


texts = st.sampled_from(("PV 2027/118", "réquisition du parquet", "operator", "cam-9", "s1", ""))
ROUTES = {
    "login": Route("POST", "/api/v1/login", {"name": texts, "password": st.text(max_size=30)}),
    "take_control": Route(
        "PUT",
        "/api/v1/cameras/{camera}/control",
        {"seconds": st.integers(1, 600), "notice": texts},
    ),
    "move": Route(
        "POST",
        "/api/v1/cameras/{camera}/ptz",
        {"pan": st.floats(-180, 180), "tilt": st.floats(-90, 90), "zoom": st.integers(1, 9999)},
    ),
    "start_viewing": Route(  # in-console playback of a recording, with a reason and a range
        "POST",
        "/api/v1/recordings/{session}/viewings",
        {"reason": texts, "from": times, "to": times},
    ),
    "place_hold": Route(
        "POST", "/api/v1/recordings/{session}/holds", {"reference": texts, "reason": texts}
    ),
    "lift_hold": Route(
        "POST",
        "/api/v1/recordings/{session}/holds/{hold}/lift",
        {"reference": texts, "reason": texts},
    ),
    "create_export": Route(
        "POST",
        "/api/v1/exports",
        {"sessions": st.lists(st.sampled_from(("s1", "nope")), max_size=3), "reference": texts},
    ),
    "add_user": Route(
        "POST",
        "/api/v1/users",
        {
            "name": st.text(max_size=20),
            "role": st.sampled_from(("operator", "supervisor", "auditor", "root")),
            "service": texts,
            "password": st.text(max_size=30),
        },
    ),
    "add_device": Route("POST", "/api/v1/devices", {"id": st.text(max_size=70), "officer": texts}),
}
PATH_VALUES = {
    "camera": ("ptz-1", "fixed-1", "nocam", "%00", "x" * 300),
    "session": ("s1", "nope", "%2e%2e", "9" * 30),
    "hold": ("1", "999", "abc", "-1", "0", "99999999999999999999999"),
}
wrong_values = st.one_of(
    json_values,
    st.sampled_from((10**400, -(10**400), 1e308, -0.0, math.nan, math.inf, 2**63, 2**64)),
    st.integers(1000, 60_000).map(lambda n: "é" * n),
)


def readers_of_json(handler: Any) -> bool:
    source = inspect.getsource(handler)
    return "json_body(" in source or "json.loads(" in source


def test_the_json_routes_are_all_fuzzed(tmp_path: Path) -> None:
    """A new route that reads a JSON body cannot be left out of the target."""
    app = create_app(Config.load(None, environ={}, data_dir=str(tmp_path)))
    reading = {r.handler.__name__ for r in app.router.routes() if readers_of_json(r.handler)}
    assert reading == set(ROUTES)


@st.composite
def api_bodies(draw: st.DrawFn, route: Route) -> tuple[str, bytes, str]:
    """What kind of body, the body, its Content-Type."""
    kind = draw(st.sampled_from(("keys", "keys", "json", "bytes", "deep", "huge", "type")))
    content_type = "application/json"
    if kind == "keys":
        value: Any = {}
        for key, good in route.keys.items():
            how = draw(st.sampled_from(("good", "good", "absent", "wrong")))
            if how != "absent":
                value[key] = draw(good if how == "good" else wrong_values)
        for extra in draw(st.lists(st.text(max_size=10), max_size=2)):
            value[extra] = draw(json_values)
        body = json.dumps(value).encode()
    elif kind == "json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=300))
    elif kind == "deep":
        body = nested(
            draw(st.integers(500, 10_000)), draw(st.sampled_from(("[", '{"a": ')))
        ).encode()
    elif kind == "huge":
        body = json.dumps({"x": "x" * draw(st.integers(64 * 1024, HUGE_BYTES))}).encode()
    else:
        body = b'{"name": "x"}'
        content_type = draw(st.sampled_from(CONTENT_TYPES))
    return kind, body, content_type


@pytest.fixture
async def api_gateway(street_config: Config) -> AsyncIterator[Gateway]:
    """A gateway with the street's cameras (simulated) and a recorded session, s1; failed
    logins answered at once (the fuzzer fails many)."""
    config = dataclasses.replace(
        street_config, auth=dataclasses.replace(street_config.auth, failure_delay_seconds=0.0)
    )
    store = SqliteStore(config.database_path)
    keyring = await store.run(Keyring.load, config, store)
    await record_session(config, store, keyring, "s1", RECORDED)
    store.close()
    gateway = await start_gateway(
        create_app(config, ShiftedClock(RECORDED + timedelta(hours=1))), config
    )
    token = await add_login(gateway.store, "durand", "supervisor", clock=gateway.clock)
    gateway.auth = {"Authorization": f"Bearer {token}"}
    try:
        yield gateway
    finally:
        await gateway.server.close()


@st.composite
def api_cases(draw: st.DrawFn) -> tuple[str, str, tuple[str, bytes, str]]:
    """A route's name, its path with values filled in, and a body for it."""
    name = draw(st.sampled_from(sorted(ROUTES)))
    route = ROUTES[name]
    path = route.path.format(
        **{k: quote(draw(st.sampled_from(v)), safe="%") for k, v in PATH_VALUES.items()}
    )
    return name, path, draw(api_bodies(route))


async def test_api_json_bodies(api_gateway: Gateway, http: aiohttp.ClientSession) -> None:
    # The RSS this target adds is glibc's heap, not the gateway's objects: 500 requests of
    # one 1 MB body (413) grow the process by 30 MB, then no more, while tracemalloc's traced
    # total stays under 2 MB; 500 of 60 000 "é" or ten thousand deep, by nothing (measured
    # on issue 13). The bound in fuzzing.py holds with room.
    with fuzzing("API JSON bodies") as (target, errors):
        run = Run(target, errors)

        async def case(drawn: tuple[str, str, tuple[str, bytes, str]]) -> None:
            name, path, (kind, body, content_type) = drawn
            headers = dict(api_gateway.auth)
            if content_type:
                headers["Content-Type"] = content_type
            method = ROUTES[name].method
            await run.send(http, api_gateway, method, path, body, headers, f"{name} {kind}")

        await fuzz_on_loop(api_cases(), case, examples(300))


# GeoJSON imports (`bodycam cameras import`, `bodycam places import`), then the city rebuilt


def near(dx: float, dy: float) -> list[float]:
    return [6.1764 + dx / 1000, 49.1196 + dy / 1000]


coordinates = st.one_of(
    st.builds(near, st.floats(-5, 5), st.floats(-5, 5)),
    st.lists(
        st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**400), 10**400),
        max_size=4,
    ),
    json_values,
)
rings = st.lists(coordinates, max_size=8).map(lambda r: r + r[:1])  # closed, if it can be
BOW_TIE = [near(0, 0), near(1, 1), near(1, 0), near(0, 1), near(0, 0)]
geometries = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ("Point", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "Nope")
        )
        | json_values,
        "coordinates": st.one_of(
            coordinates,
            st.lists(coordinates, max_size=6),
            st.lists(rings, max_size=3),
            st.lists(st.lists(rings, max_size=2), max_size=2),
            st.sampled_from(([BOW_TIE], [[]], [], [[near(0, 0)] * 4], [[[math.nan, 0]] * 4])),
        ),
    }
)
properties = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(("cam-1", "cam-2", "bad id", "")) | json_values,
        "name": texts | json_values,
        "kind": st.sampled_from(("fixed", "ptz", "dome", "x")) | json_values,
        "heading_deg": st.floats(0, 360) | wrong_values,
        "fov_deg": st.floats(1, 360) | wrong_values,
        "range_m": st.floats(1, 5000) | wrong_values,
        "privacy_masks": st.lists(geometries, max_size=2) | json_values,
        "vapix_url": st.sampled_from(("http://10.0.0.1", "ftp://x", "http://u:p@h")) | json_values,
    },
)
features = st.fixed_dictionaries(
    {
        "type": st.sampled_from(("Feature", "feature")) | json_values,
        "geometry": geometries | json_values | st.sampled_from(([1], "Point", 7)),
        "properties": properties | json_values,
    }
)
documents = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("FeatureCollection"), "features": st.lists(features, max_size=6)}
    ),
    json_values,
)


def long_street(points: int) -> dict[str, Any]:
    line = [near(i / 100, 0) for i in range(points)]
    geometry = {"type": "LineString", "coordinates": line}
    feature = {"type": "Feature", "geometry": geometry, "properties": {"name": "Rue Longue"}}
    return {"type": "FeatureCollection", "features": [feature]}


geojson_texts = st.one_of(
    documents.map(lambda d: json.dumps(d)),
    st.builds(nested, st.integers(500, 10_000), st.sampled_from(("[", '{"a": '))),
    st.binary(max_size=200),
    # 20 000 points (1 MB of JSON): 100 000 held the GIL over 100 ms in json.loads alone
    st.just(0).map(lambda _: json.dumps(long_street(20_000))),
)


async def test_geojson_imports(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    """A document is imported or refused with GeoJSONError (a 422 for a person), and what
    is imported the gateway builds its city from and serves; imports and the cities built
    from them keep nothing once replaced (under 256 KB over a replay of 300 cases).

    The bound is not the RSS: 3,000 cases of streets of up to 20,000 points, parsed on a
    thread (its own malloc arena), grew it by 110 MB with nothing of them alive."""
    store = gateway.store
    loop = asyncio.get_running_loop()
    with fuzzing("GeoJSON imports", rss_bound=False) as (target, errors):
        run = Run(target, errors)
        replay: Replay[tuple[str | bytes, bool]] = Replay(size=300)

        async def serve_city() -> City:
            """What the gateway's watch does after an import: the city rebuilt, served."""
            tracker = gateway.app[tracker_key]
            old, tracker.city = tracker.city, await City.load(store)
            for path in ("/api/v1/cameras", "/api/v1/cameras/selection?lat=49.1196&lon=6.1764"):
                async with http.get(gateway.url + path, headers=gateway.auth) as response:
                    assert response.status == 200, await response.text()
            await run.still_serving(http, gateway)
            return old  # dropped on the fuzzer's thread: a 20 000-point street takes time

        def import_one(text: str | bytes, cameras: bool) -> str:
            # parsing and importing on this thread, as `bodycam cameras import` does in its
            # own process: none of it is the gateway's loop's work
            what = "cameras" if cameras else "places"
            load = registry.import_cameras if cameras else registry.import_places
            try:
                document = registry.load_json(text, "fuzz.geojson")
                load(store, document, "fuzz.geojson")
            except registry.GeoJSONError as err:
                return f"{what} " + ("refused" if "fuzz.geojson" in str(err) else "unnamed")
            asyncio.run_coroutine_threadsafe(serve_city(), loop).result(CASE_SECONDS)
            return f"{what} imported"

        def nothing_imported() -> None:
            for load in (registry.import_cameras, registry.import_places):
                load(store, {"type": "FeatureCollection", "features": []}, "empty.geojson")
            asyncio.run_coroutine_threadsafe(serve_city(), loop).result(CASE_SECONDS)

        @settings(max_examples=examples(100))
        @given(text=geojson_texts, cameras=st.booleans())
        def case(text: str | bytes, cameras: bool) -> None:
            what, outcome = import_one(text, cameras).split()
            target.answered(outcome, what)
            assert target.answers[f"{what} unnamed"] == 0, "an error that names no file"
            replay.keep((text, cameras))

        await asyncio.to_thread(case)
        target.retained_bytes = await asyncio.to_thread(
            replay.retained, lambda c: import_one(*c), nothing_imported
        )
        assert target.retained_bytes < 256 * 1024, f"imports kept {target.retained_bytes} B"
