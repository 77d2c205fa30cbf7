"""The gateway's VAPIX client against the Axis camera simulator, errors included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bodycam.errors import ConfigError
from bodycam.gateway.vapix import (
    CameraAuthFailed,
    CameraError,
    CameraNotConfigured,
    CameraRefused,
    CameraUnreachable,
    Login,
    Vapix,
    load_credentials,
)
from bodycam.geo.ptz import Aim
from bodycam.models import Camera, CameraKind
from bodycam.ui.feeds import Feed
from simulators.axis_camera import AxisCameraSimulator, SimCamera

from .helpers import wait_for


@pytest.fixture
async def sim() -> AsyncIterator[AxisCameraSimulator]:
    cameras = [
        SimCamera("ptz-1", "Place de la Comédie", kind="ptz", password="s3cret"),
        SimCamera("fixed-1", "Rue Serpenoise", kind="fixed", password="s3cret"),
    ]
    async with AxisCameraSimulator(cameras) as simulator:
        yield simulator


@pytest.fixture
async def vapix() -> AsyncIterator[Vapix]:
    client = Vapix({"csu": Login("root", "s3cret"), "old": Login("root", "wrong")}, 2.0)
    yield client
    await client.close()


def camera(sim: AxisCameraSimulator, cid: str, ref: str = "csu", **kwargs: str) -> Camera:
    kind = CameraKind(sim.camera(cid).kind)
    url = kwargs.pop("vapix_url", sim.base_url(cid).rstrip("/"))  # the slash is optional
    return Camera(cid, cid, kind, 49.1, 6.1, 0, 60, 100, vapix_url=url, credentials_ref=ref)


async def test_device_info(sim: AxisCameraSimulator, vapix: Vapix) -> None:
    info = await vapix.device_info(camera(sim, "ptz-1"))
    assert info.serial == sim.camera("ptz-1").serial
    assert info.model == "Q6075-E"
    assert info.firmware


async def test_move_then_read_back_the_position(sim: AxisCameraSimulator, vapix: Vapix) -> None:
    ptz = camera(sim, "ptz-1")
    await vapix.move(ptz, Aim(-123.45, -12.5, 2500))
    assert sim.camera("ptz-1").moves == [(-123.45, -12.5, 2500.0)]
    assert await vapix.position(ptz) == Aim(-123.45, -12.5, 2500)


async def test_wrong_password(sim: AxisCameraSimulator, vapix: Vapix) -> None:
    with pytest.raises(CameraAuthFailed, match="camera ptz-1: credentials 'old' refused"):
        await vapix.device_info(camera(sim, "ptz-1", ref="old"))


async def test_offline_camera(sim: AxisCameraSimulator, vapix: Vapix) -> None:
    sim.set_online("ptz-1", False)
    with pytest.raises(
        CameraUnreachable, match=r"camera ptz-1: no answer from http://127\.0\.0\.1"
    ):
        await vapix.move(camera(sim, "ptz-1"), Aim(0, 0, 1))
    sim.set_online("ptz-1", True)
    await vapix.move(camera(sim, "ptz-1"), Aim(0, 0, 1))


async def test_nothing_listens(vapix: Vapix, unused_tcp_port: int) -> None:
    dead = Camera(
        "gone", "gone", CameraKind.PTZ, 49.1, 6.1, 0, 60, 100,
        vapix_url=f"http://127.0.0.1:{unused_tcp_port}/", credentials_ref="csu",
    )  # fmt: skip
    with pytest.raises(CameraUnreachable, match="camera gone: no answer"):
        await vapix.device_info(dead)


async def test_a_fixed_camera_refuses_ptz(sim: AxisCameraSimulator, vapix: Vapix) -> None:
    with pytest.raises(CameraRefused, match=r"camera fixed-1: axis-cgi/com/ptz\.cgi answered 400"):
        await vapix.move(camera(sim, "fixed-1"), Aim(10, 0, 1))


@pytest.mark.parametrize(
    ("ref", "url", "message"),
    [
        ("nobody", None, "camera ptz-1: no credentials named 'nobody'"),
        ("csu", "", "camera ptz-1: no VAPIX URL in the registry"),
    ],
)
async def test_not_configured(
    sim: AxisCameraSimulator, vapix: Vapix, ref: str, url: str | None, message: str
) -> None:
    cam = camera(sim, "ptz-1", ref=ref, **({} if url is None else {"vapix_url": url}))
    with pytest.raises(CameraNotConfigured, match=message):
        await vapix.device_info(cam)


def test_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "camera-credentials.toml"
    assert load_credentials(path) == {}  # none yet: cameras are "not configured"
    path.write_text('[csu-metz]\nusername = "root"\npassword = "p"\n')
    assert load_credentials(path) == {"csu-metz": Login("root", "p")}
    path.write_text('[csu-metz]\nusername = "root"\n')
    with pytest.raises(ConfigError, match=r"\[csu-metz\] needs username and password"):
        load_credentials(path)
    path.write_text("[csu-metz\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_credentials(path)


# hostile answers (issue 13; tests/test_fuzz_vapix.py draws many more)


async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def hostile_camera(server: TestServer) -> Camera:
    return Camera(
        "hostile", "hostile", CameraKind.PTZ, 49.1, 6.1, 0, 60, 100,
        vapix_url=str(server.make_url("/cam/")), credentials_ref="csu",
    )  # fmt: skip


async def test_a_redirect_is_refused_not_followed(vapix: Vapix) -> None:
    """The Digest middleware would answer the other host's challenge with our credentials."""
    stolen: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        stolen.append(request.headers.get("Authorization", ""))
        return web.Response(status=401, headers={"WWW-Authenticate": 'Digest realm="x", nonce="n"'})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(str(other.make_url("/steal")))

    other, server = await serve(elsewhere), await serve(redirect)
    cam = hostile_camera(server)
    try:
        with pytest.raises(CameraRefused, match=r"camera hostile: .*answered 302"):
            await vapix.device_info(cam)
        with pytest.raises(CameraRefused, match=r"camera hostile: .*answered 302"):
            await vapix.move(cam, Aim(0, 0, 1))
        with pytest.raises(CameraRefused, match=r"camera hostile: .*answered 302"):
            async with vapix.mjpeg(cam, "640x360", 5):
                pass
        assert stolen == []
    finally:
        await server.close()
        await other.close()


def connections_in_use(vapix: Vapix) -> int:
    """Connections the client's sessions hold for a response not yet released."""
    sessions = [vapix._session, vapix._streams]
    return sum(len(s.connector._acquired) for s in sessions if s and s.connector)


async def watch(vapix: Vapix, cam: Camera) -> None:
    async with vapix.mjpeg(cam, "640x360", 5):
        pass


@pytest.mark.parametrize(
    "challenge",
    [
        'Digest realm="x", nonce="n", algorithm=SHA-512-256, qop="auth"',  # aiohttp lacks it
        'Digest realm="x"',  # no nonce
    ],
)
async def test_every_answer_of_a_refusing_camera_is_closed(vapix: Vapix, challenge: str) -> None:
    """aiohttp's Digest middleware raises with a 401 it cannot answer in hand and leaves
    it unclosed: the client closes it, so no connection is left in use (./dev fuzz)."""
    done = asyncio.Event()

    async def refuse(request: web.Request) -> web.StreamResponse:
        # a body that does not end: a response is only released once it is read or closed
        response = web.StreamResponse(status=401, headers={"WWW-Authenticate": challenge})
        await response.prepare(request)
        await response.write(b"refused")
        await done.wait()
        return response

    server = await serve(refuse)
    cam = hostile_camera(server)
    try:
        for attempt in (vapix.device_info(cam), watch(vapix, cam)):
            try:
                await attempt
            except CameraError:  # checked while the error, and what it holds, is alive
                assert connections_in_use(vapix) == 0
            else:
                raise AssertionError("the camera's refusal was not an error")
    finally:
        done.set()
        await server.close()


async def test_deeply_nested_device_info_is_refused(vapix: Vapix) -> None:
    async def nested(request: web.Request) -> web.Response:
        return web.Response(text="[" * 50_000, content_type="application/json")

    server = await serve(nested)
    try:
        with pytest.raises(CameraRefused, match="camera hostile: basicdeviceinfo answer is not"):
            await vapix.device_info(hostile_camera(server))
    finally:
        await server.close()


async def test_an_answer_in_pieces_is_read_whole(vapix: Vapix) -> None:
    """One read gave only what had arrived: a slow camera's JSON was cut, and refused."""
    body = b'{"data": {"propertyList": {"SerialNumber": "ACCC8E000001", "ProdNbr": "Q6075-E"}}}'

    async def slowly(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for start in range(0, len(body), 20):
            await response.write(body[start : start + 20])
            await asyncio.sleep(0.02)
        await response.write_eof()
        return response

    server = await serve(slowly)
    try:
        info = await vapix.device_info(hostile_camera(server))
        assert (info.serial, info.model) == ("ACCC8E000001", "Q6075-E")
    finally:
        await server.close()


MJPEG_HEAD = {"Content-Type": "multipart/x-mixed-replace; boundary=b"}
JPEG = b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9"
PICTURE = b"--b\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(JPEG), JPEG)


async def stream(first: bytes, then: bytes, open_streams: list[int]) -> TestServer:
    """A camera's MJPEG: one good picture, `first`, then `then` every second."""

    async def mjpeg(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers=MJPEG_HEAD)
        await response.prepare(request)
        open_streams[0] += 1
        try:
            await response.write(PICTURE + first)
            while then and request.transport is not None and not request.transport.is_closing():
                await response.write(then)
                await asyncio.sleep(1.0)
        finally:
            open_streams[0] -= 1
        return response

    return await serve(mjpeg)


async def test_a_trickling_picture_stream_ends_with_its_last_viewer(vapix: Vapix) -> None:
    """A byte a second: each read in time, the next picture never whole, and the idle check
    ran only after a picture: the camera's stream stayed open for ever, watched or not."""
    open_streams = [0]
    server = await stream(b"--b\r\nContent-Type: image/jpeg\r\n\r\n", b"\x00", open_streams)
    ended = asyncio.Event()
    feed = Feed(hostile_camera(server), vapix, lambda _: ended.set())
    try:
        feed.viewers = 1
        assert await feed.next_frame(0, 5) == (1, JPEG)
        feed.viewers = 0  # the last viewer leaves
        async with asyncio.timeout(2.0 + 2):  # the picture's bound (the request timeout)
            await ended.wait()
        await wait_for(lambda: open_streams == [0], 3)
    finally:
        await feed.close()
        await server.close()


@pytest.mark.parametrize(
    ("first", "error"),
    [
        (b"--b\r\nContent-Type: text/html\r\n\r\n<html>login</html>\r\n--b\r\n", "not a JPEG"),
        (b"--b\r\n" + b"X-A: b\r\n" * 200, "bad MJPEG: 400"),  # aiohttp's BadHttpMessage
    ],
)
async def test_a_hostile_picture_stream_is_a_camera_error(
    vapix: Vapix, first: bytes, error: str
) -> None:
    server = await stream(first, b"", [0])
    feed = Feed(hostile_camera(server), vapix, lambda _: None)
    try:
        feed.viewers = 1
        async with asyncio.timeout(5):
            while not feed.error:
                await feed.next_frame(feed.seq, 1)
        assert feed.error.startswith("camera hostile: "), feed.error
        assert error in feed.error, feed.error
    finally:
        await feed.close()
        await server.close()
