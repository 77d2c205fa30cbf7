"""Simulated Axis cameras over real HTTP on loopback, with aiohttp's own Digest middleware."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from PIL import Image

from simulators.axis_camera import AxisCameraSimulator, SimCamera, synthetic_cameras
from simulators.digest import NonceState, NonceStore

ROOT = Path(__file__).resolve().parents[1]
INFO = "axis-cgi/basicdeviceinfo.cgi"
PTZ = "axis-cgi/com/ptz.cgi"
IMAGE = "axis-cgi/jpg/image.cgi"
VIDEO = "axis-cgi/mjpg/video.cgi"
ALL_PROPERTIES = {"apiVersion": "1.0", "method": "getAllProperties"}


@pytest.fixture
async def sim() -> AsyncIterator[AxisCameraSimulator]:
    cameras = [
        SimCamera("fixed-1", "Rue Serpenoise"),
        SimCamera("ptz-1", "Place de la Comédie", kind="ptz", password="s3cret"),
        SimCamera("dome-1", "Gare", kind="dome", username="viewer"),
    ]
    async with AxisCameraSimulator(cameras) as simulator:
        yield simulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


async def vapix(
    session: aiohttp.ClientSession,
    sim: AxisCameraSimulator,
    camera_id: str,
    path: str,
    method: str = "GET",
    **kwargs: Any,
) -> tuple[aiohttp.ClientResponse, bytes]:
    """One request with the camera's credentials, through aiohttp's DigestAuthMiddleware."""
    camera = sim.camera(camera_id)
    digest = aiohttp.DigestAuthMiddleware(camera.username, camera.password)
    url = sim.base_url(camera_id) + path
    async with session.request(method, url, middlewares=(digest,), **kwargs) as resp:
        return resp, await resp.read()


def mjpeg_parts(body: bytes) -> list[bytes]:
    """The JPEGs of an Axis multipart stream, checking every part's framing."""
    parts = []
    while body:
        head, _, rest = body.partition(b"\r\n\r\n")
        boundary, content_type, content_length = head.split(b"\r\n")
        assert (boundary, content_type) == (b"--myboundary", b"Content-Type: image/jpeg")
        length = int(content_length.removeprefix(b"Content-Length: "))
        assert rest[length : length + 2] == b"\r\n"
        parts.append(rest[:length])
        body = rest[length + 2 :]
    return parts


def authorization(challenge: str, camera: SimCamera, uri: str, nc: str, nonce: str = "") -> str:
    """A Digest Authorization computed here, independently of the simulator and of aiohttp."""
    fields = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge.removeprefix("Digest ")))
    hash_fn = hashlib.sha256 if fields["algorithm"] == "SHA-256" else hashlib.md5
    nonce = nonce or fields["nonce"]

    def h(text: str) -> str:
        return hash_fn(text.encode()).hexdigest()

    ha1 = h(f"{camera.username}:{fields['realm']}:{camera.password}")
    response = h(f"{ha1}:{nonce}:{nc}:c0ffee:auth:{h(f'GET:{uri}')}")
    return (
        f'Digest username="{camera.username}", realm="{fields["realm"]}", nonce="{nonce}", '
        f'uri="{uri}", algorithm={fields["algorithm"]}, response="{response}", qop=auth, '
        f'nc={nc}, cnonce="c0ffee"'
    )


async def test_basicdeviceinfo_all_properties_through_the_digest_middleware(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession
) -> None:
    for camera_id, product in (
        ("fixed-1", "P1468-LE"),
        ("ptz-1", "Q6075-E"),
        ("dome-1", "M4308-PLE"),
    ):
        resp, body = await vapix(session, sim, camera_id, INFO, "POST", json=ALL_PROPERTIES)
        assert resp.status == 200
        reply = json.loads(body)
        assert reply["apiVersion"] == "1.0"
        properties = reply["data"]["propertyList"]
        assert properties["SerialNumber"] == sim.camera(camera_id).serial
        assert re.fullmatch(r"ACCC8E[0-9A-F]{6}", properties["SerialNumber"])
        assert (properties["Brand"], properties["ProdNbr"]) == ("AXIS", product)


async def test_basicdeviceinfo_get_properties_returns_only_those_asked(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession
) -> None:
    request = {
        "apiVersion": "1.0",
        "context": "gateway",
        "method": "getProperties",
        "params": {"propertyList": ["SerialNumber", "ProdNbr"]},
    }
    resp, body = await vapix(session, sim, "ptz-1", INFO, "POST", json=request)
    assert resp.status == 200
    assert json.loads(body) == {
        "apiVersion": "1.0",
        "context": "gateway",
        "method": "getProperties",
        "data": {
            "propertyList": {"SerialNumber": sim.camera("ptz-1").serial, "ProdNbr": "Q6075-E"}
        },
    }
    _, body = await vapix(
        session, sim, "ptz-1", INFO, "POST", json={"method": "getSupportedVersions"}
    )
    assert json.loads(body)["data"] == {"apiVersions": ["1.3"]}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"apiVersion": "1.0", "method": "reboot"}', 2102),
        (b"{not json", 2101),
        (b"[1, 2]", 2101),
        (b'{"apiVersion": "2.0", "method": "getAllProperties"}', 2100),
        (b'{"method": "getAllProperties"}', 2103),
        (b'{"apiVersion": "1.0", "method": "getProperties"}', 2103),
        (
            b'{"apiVersion": "1.0", "method": "getProperties", "params": {"propertyList": ["X"]}}',
            2104,
        ),
        (b'{"apiVersion": "1.0", "padding": "' + b"x" * 70_000 + b'"}', 2107),
    ],
    ids=[
        "unknown-method",
        "bad-json",
        "not-object",
        "version",
        "no-version",
        "no-list",
        "unknown-property",
        "too-large",
    ],
)
async def test_basicdeviceinfo_errors_are_vapix_json_errors(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession, payload: bytes, code: int
) -> None:
    headers = {"Content-Type": "application/json"}
    resp, body = await vapix(session, sim, "fixed-1", INFO, "POST", data=payload, headers=headers)
    assert resp.status == 200
    reply = json.loads(body)
    assert reply["error"]["code"] == code
    assert reply["error"]["message"]
    assert "data" not in reply


async def test_without_credentials_every_cgi_challenges_with_digest(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession
) -> None:
    camera = sim.camera("fixed-1")
    for path in (INFO, f"{PTZ}?pan=10", IMAGE, VIDEO, "axis-cgi/param.cgi"):
        async with session.get(sim.base_url(camera.id) + path) as resp:
            assert resp.status == 401, path
            md5, sha256 = resp.headers.getall("WWW-Authenticate")
        assert md5.startswith(f'Digest realm="AXIS_{camera.serial}", nonce="')
        assert "algorithm=MD5" in md5
        assert 'qop="auth"' in md5
        assert "stale" not in md5
        assert "algorithm=SHA-256" in sha256
        assert re.search(r'nonce="[0-9a-f]{32}"', md5)


@pytest.mark.parametrize(("username", "password"), [("root", "pass"), ("admin", "s3cret")])
async def test_wrong_credentials_get_401_and_move_nothing(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession, username: str, password: str
) -> None:
    digest = aiohttp.DigestAuthMiddleware(username, password)
    for _ in range(2):  # the second time the middleware tries its stored challenge first
        url = sim.base_url("ptz-1") + f"{PTZ}?pan=50"
        async with session.get(url, middlewares=(digest,)) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Digest ")
    assert sim.camera("ptz-1").moves == []
    assert sim.camera("ptz-1").pan == 0.0


async def test_digest_by_hand_sha256_replay_stale_nonce_and_wrong_uri(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession
) -> None:
    camera = sim.camera("ptz-1")
    uri = f"/ptz-1/{PTZ}?query=position"
    url = f"http://127.0.0.1:{sim.port}{uri}"
    async with session.get(url) as resp:
        challenge = resp.headers.getall("WWW-Authenticate")[1]
    first = {"Authorization": authorization(challenge, camera, uri, "00000001")}
    async with session.get(url, headers=first) as resp:
        assert resp.status == 200
        assert (await resp.text()).startswith("pan=0.0000\n")
    async with session.get(url, headers=first) as resp:  # replayed: same nonce count
        assert resp.status == 401
        assert "stale" not in resp.headers["WWW-Authenticate"]
    second = {"Authorization": authorization(challenge, camera, uri, "00000002")}
    async with session.get(url, headers=second) as resp:
        assert resp.status == 200
    unknown = {"Authorization": authorization(challenge, camera, uri, "00000001", nonce="ab" * 16)}
    async with session.get(url, headers=unknown) as resp:  # right password, nonce not ours
        assert resp.status == 401
        assert "stale=true" in resp.headers["WWW-Authenticate"]
    elsewhere = {"Authorization": authorization(challenge, camera, f"/ptz-1/{IMAGE}", "00000003")}
    async with session.get(url, headers=elsewhere) as resp:
        assert resp.status == 400


def test_nonce_store_expires_bounds_and_detects_replays() -> None:
    store = NonceStore(ttl=300.0, capacity=3)
    nonce = store.issue("cam", now=0.0)
    assert store.check(nonce, "cam", 1, now=10.0) is NonceState.VALID
    assert store.check(nonce, "cam", 1, now=11.0) is NonceState.REPLAYED
    assert store.check(nonce, "other", 2, now=12.0) is NonceState.STALE
    assert store.check(nonce, "cam", 2, now=300.0) is NonceState.VALID
    assert store.check(nonce, "cam", 3, now=300.5) is NonceState.STALE  # expired
    oldest, *newer = [store.issue("cam", now=400.0 + i) for i in range(4)]
    assert store.check(oldest, "cam", 1, now=404.0) is NonceState.STALE  # evicted
    assert all(store.check(n, "cam", 1, now=404.0) is NonceState.VALID for n in newer)


async def test_ptz_move_then_query_position(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession
) -> None:
    move = {"pan": "12.34", "tilt": "-5", "zoom": "1", "camera": "1"}
    resp, body = await vapix(session, sim, "ptz-1", PTZ, params=move)
    assert (resp.status, body) == (204, b"")
    resp, body = await vapix(session, sim, "ptz-1", PTZ, params={"query": "position"})
    assert (resp.status, resp.content_type) == (200, "text/plain")
    assert body == b"pan=12.3400\ntilt=-5.0000\nzoom=1\n"
    resp, _ = await vapix(session, sim, "ptz-1", PTZ, params={"zoom": "2500"})
    assert resp.status == 204
    assert sim.camera("ptz-1").moves == [(12.34, -5.0, 1.0), (12.34, -5.0, 2500.0)]


@pytest.mark.parametrize(
    ("camera_id", "params", "message"),
    [
        ("ptz-1", {"pan": "abc"}, "Error: pan must be a number in [-180, 180], got 'abc'"),
        (
            "ptz-1",
            {"pan": "10", "tilt": "-91"},
            "Error: tilt must be a number in [-90, 90], got '-91'",
        ),
        ("ptz-1", {"zoom": "0"}, "Error: zoom must be a number in [1, 9999], got '0'"),
        ("ptz-1", {"pan": "nan"}, "Error: pan must be a number in [-180, 180], got 'nan'"),
        ("ptz-1", {"rpan": "10"}, "Error: unsupported parameter 'rpan'"),
        ("ptz-1", {"query": "limits"}, "Error: query must be 'position'"),
        ("ptz-1", {}, "Error: give pan, tilt or zoom"),
        ("fixed-1", {"pan": "10"}, "Error: this camera has no PTZ"),
        ("dome-1", {"query": "position"}, "Error: this camera has no PTZ"),
    ],
)
async def test_ptz_refusals_are_400_with_a_message_and_move_nothing(
    sim: AxisCameraSimulator,
    session: aiohttp.ClientSession,
    camera_id: str,
    params: dict[str, str],
    message: str,
) -> None:
    resp, body = await vapix(session, sim, camera_id, PTZ, params=params)
    assert (resp.status, resp.content_type) == (400, "text/plain")
    assert body.decode().startswith(message)
    assert sim.camera(camera_id).moves == []
    assert sim.camera(camera_id).pan == 0.0


async def test_image_cgi_is_a_jpeg_of_the_requested_size(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession
) -> None:
    for params, size in (({"resolution": "320x180"}, (320, 180)), ({}, (640, 360))):
        resp, body = await vapix(session, sim, "dome-1", IMAGE, params=params)
        assert (resp.status, resp.content_type) == (200, "image/jpeg")
        with Image.open(io.BytesIO(body)) as image:
            assert (image.format, image.size) == ("JPEG", size)


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        (IMAGE, {"resolution": "100x50"}, "resolution"),
        (IMAGE, {"resolution": "1920x1200"}, "resolution"),
        (IMAGE, {"resolution": "wide"}, "resolution"),
        (VIDEO, {"resolution": "640x"}, "resolution"),
        (VIDEO, {"fps": "0"}, "fps"),
        (VIDEO, {"fps": "31"}, "fps"),
        (VIDEO, {"duration": "-1"}, "duration"),
    ],
)
async def test_bad_picture_parameters_are_400_naming_them(
    sim: AxisCameraSimulator,
    session: aiohttp.ClientSession,
    path: str,
    params: dict[str, str],
    name: str,
) -> None:
    resp, body = await vapix(session, sim, "fixed-1", path, params=params)
    assert resp.status == 400
    assert body.decode().startswith(f"Error: {name} must be")


async def test_mjpeg_stream_for_a_duration_is_well_framed_jpegs(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    params = {"fps": "10", "duration": "1", "resolution": "320x180"}
    resp, body = await vapix(session, sim, "ptz-1", VIDEO, params=params)
    elapsed = loop.time() - start
    assert resp.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=myboundary"
    parts = mjpeg_parts(body)
    assert 5 <= len(parts) <= 11
    for jpeg in parts:
        with Image.open(io.BytesIO(jpeg)) as image:
            image.load()
            assert image.size == (320, 180)
    assert 0.8 < elapsed < 3.0


async def test_viewers_share_one_render_a_second_and_the_loop_stays_free(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession
) -> None:
    # 1080p renders run on a thread: a render on the loop would hold it for longer than
    # the 100 ms the suite allows a callback (conftest.no_blocked_event_loop)
    params = {"fps": "10", "duration": "1", "resolution": "1920x1080"}
    streams = await asyncio.gather(
        *(vapix(session, sim, "ptz-1", VIDEO, params=params) for _ in range(20))
    )
    assert all(len(mjpeg_parts(body)) >= 5 for _, body in streams)
    assert 1 <= sim.renders <= 3  # one per second of the clock, however many watch


async def test_mjpeg_stream_stops_when_the_viewer_leaves(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession
) -> None:
    camera = sim.camera("fixed-1")
    digest = aiohttp.DigestAuthMiddleware(camera.username, camera.password)
    resp = await session.get(sim.base_url(camera.id) + f"{VIDEO}?fps=30", middlewares=(digest,))
    assert resp.status == 200
    assert (await resp.content.readexactly(14)) == b"--myboundary\r\n"
    assert sim.streams == 1
    resp.close()
    for _ in range(50):
        if sim.streams == 0:
            break
        await asyncio.sleep(0.02)
    assert sim.streams == 0


async def test_offline_camera_drops_connections_until_back_online(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession
) -> None:
    loop = asyncio.get_running_loop()
    sim.set_online("fixed-1", False)
    start = loop.time()
    with pytest.raises(aiohttp.ClientConnectionError):
        await vapix(session, sim, "fixed-1", IMAGE)
    assert loop.time() - start < 2.0
    resp, _ = await vapix(session, sim, "dome-1", IMAGE)  # the others are unaffected
    assert resp.status == 200
    sim.set_online("fixed-1", True)
    resp, _ = await vapix(session, sim, "fixed-1", IMAGE)
    assert resp.status == 200


async def test_camera_going_offline_cuts_its_stream(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession
) -> None:
    camera = sim.camera("dome-1")
    digest = aiohttp.DigestAuthMiddleware(camera.username, camera.password)
    async with session.get(sim.base_url(camera.id) + VIDEO, middlewares=(digest,)) as resp:
        await resp.content.readexactly(1000)
        sim.set_online(camera.id, False)
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(resp.read(), 5)


async def test_control_endpoints_switch_cameras_and_list_them(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession
) -> None:
    control = f"http://127.0.0.1:{sim.port}/_sim/"
    async with session.post(control + "ptz-1/offline") as resp:
        assert resp.status == 204
    with pytest.raises(aiohttp.ClientConnectionError):
        await vapix(session, sim, "ptz-1", PTZ, params={"query": "position"})
    async with session.get(control + "cameras") as resp:
        listing = await resp.json()
    assert {c["id"]: (c["kind"], c["online"], c["moves"]) for c in listing} == {
        "fixed-1": ("fixed", True, 0),
        "ptz-1": ("ptz", False, 0),
        "dome-1": ("dome", True, 0),
    }
    async with session.post(control + "ptz-1/online") as resp:
        assert resp.status == 204
    resp, _ = await vapix(session, sim, "ptz-1", PTZ, params={"query": "position"})
    assert resp.status == 200
    async with session.post(control + "nope/offline") as resp:
        assert resp.status == 404


async def test_unknown_camera_is_404_and_unknown_cgi_404_after_auth(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession
) -> None:
    async with session.get(f"http://127.0.0.1:{sim.port}/nope/{IMAGE}") as resp:
        assert resp.status == 404
    resp, body = await vapix(session, sim, "fixed-1", "axis-cgi/param.cgi?action=list")
    assert resp.status == 404
    assert b"not simulated" in body


async def test_three_hundred_cameras_answer_concurrently(session: aiohttp.ClientSession) -> None:
    cameras = synthetic_cameras(300, "root", "pass")
    limit = asyncio.Semaphore(50)
    async with AxisCameraSimulator(cameras) as sim:

        async def serial_of(camera: SimCamera) -> str:
            async with limit:
                resp, body = await vapix(session, sim, camera.id, INFO, "POST", json=ALL_PROPERTIES)
            assert resp.status == 200
            return str(json.loads(body)["data"]["propertyList"]["SerialNumber"])

        serials = await asyncio.gather(*(serial_of(camera) for camera in cameras))
    assert serials == [camera.serial for camera in cameras]
    assert len(set(serials)) == 300
    assert [c.kind for c in cameras[:4]] == ["fixed", "ptz", "dome", "fixed"]


def test_from_geojson_builds_cameras_with_their_kinds() -> None:
    def feature(properties: dict[str, Any]) -> dict[str, Any]:
        point = {"type": "Point", "coordinates": [6.1757, 49.1197]}
        return {"type": "Feature", "geometry": point, "properties": properties}

    document = {
        "type": "FeatureCollection",
        "features": [
            feature({"id": "metz-cam-01", "name": "Place Saint-Louis", "kind": "ptz"}),
            feature({"id": "metz-cam-02", "kind": "dome"}),
            feature({"id": "metz-cam-03", "name": "Gare", "kind": "fixed"}),
        ],
    }
    sim = AxisCameraSimulator.from_geojson(document, username="viewer", password="pw", port=0)
    assert [(c.id, c.kind) for c in sim.cameras] == [
        ("metz-cam-01", "ptz"),
        ("metz-cam-02", "dome"),
        ("metz-cam-03", "fixed"),
    ]
    assert sim.camera("metz-cam-02").name == "metz-cam-02"
    assert (sim.camera("metz-cam-01").username, sim.camera("metz-cam-01").password) == (
        "viewer",
        "pw",
    )
    with pytest.raises(KeyError):
        sim.camera("metz-cam-04")
    with pytest.raises(ValueError, match="kind"):
        AxisCameraSimulator.from_geojson(
            {**document, "features": [feature({"id": "a", "kind": "bullet"})]}
        )
    with pytest.raises(ValueError, match="FeatureCollection"):
        AxisCameraSimulator.from_geojson({"type": "Feature"})
    with pytest.raises(ValueError, match="camera id"):
        SimCamera("_sim", "reserved for the control endpoints")


@pytest.mark.parametrize("move", [{"pan": "90"}, {"tilt": "-10"}, {"zoom": "5000"}])
async def test_picture_follows_the_ptz_position(
    sim: AxisCameraSimulator, session: aiohttp.ClientSession, move: dict[str, str]
) -> None:
    async def picture() -> tuple[bytes, np.ndarray]:
        _, body = await vapix(session, sim, "ptz-1", IMAGE, params={"resolution": "320x180"})
        with Image.open(io.BytesIO(body)) as image:  # rows 40-140: clear of the overlays
            return body, np.asarray(image.convert("L"), dtype=np.int16)[40:140]

    before, scene = await picture()
    _, same_scene = await picture()
    resp, _ = await vapix(session, sim, "ptz-1", PTZ, params=move)
    assert resp.status == 204
    after, moved_scene = await picture()
    assert before != after
    assert np.abs(scene - same_scene).mean() < 1.0
    assert np.abs(scene - moved_scene).mean() > 3.0


async def test_command_line_prints_base_urls_and_serves(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    cameras = tmp_path / "cameras.geojson"
    features = [
        {"type": "Feature", "geometry": None, "properties": {"id": "cam-a", "kind": "ptz"}},
        {"type": "Feature", "geometry": None, "properties": {"id": "cam-b", "kind": "dome"}},
    ]
    cameras.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    command = ["-m", "simulators.axis_camera", "--cameras", str(cameras), "--port", "0"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *command,
        "--password",
        "pw",
        "--offline",
        "cam-b",
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        lines = [
            (await asyncio.wait_for(process.stdout.readline(), 20)).decode().split() for _ in "ab"
        ]
        assert [line[0] for line in lines] == ["cam-a", "cam-b"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/cam-a/", lines[0][1])
        digest = aiohttp.DigestAuthMiddleware("root", "pw")
        async with session.get(
            lines[0][1] + f"{PTZ}?query=position", middlewares=(digest,)
        ) as resp:
            assert resp.status == 200
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(lines[1][1] + IMAGE, middlewares=(digest,))
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
