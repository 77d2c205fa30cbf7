"""Axis fixed, PTZ and dome network cameras speaking VAPIX over HTTP, hundreds in one process.

Every camera lives under its own path prefix `/{camera_id}/` of one aiohttp server and answers,
behind RFC 7616 Digest authentication (MD5 or SHA-256, qop=auth, bounded expiring nonces),
`axis-cgi/basicdeviceinfo.cgi` (getAllProperties, getProperties, getSupportedVersions),
`axis-cgi/com/ptz.cgi` (absolute pan/tilt/zoom, query=position), `axis-cgi/mjpg/video.cgi`
and `axis-cgi/jpg/image.cgi`, whose picture is a cheap drawn scene that follows the camera's
pan, tilt and zoom, with its name and the clock. An offline camera resets the connection
instead of answering; `/_sim/...` lets other processes switch cameras off and on. Limits: no
RTSP, HTTPS, param.cgi, API discovery or events; one user per camera; PTZ moves are absolute
and instant; the picture changes once a second (MJPEG frames within a second repeat); an
offline camera resets connections at once where a dead host would let them time out.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import math
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import hdrs, web
from multidict import CIMultiDict

from . import configure_logging
from .axis_picture import View, render_jpeg
from .digest import DIGEST_FIELDS, HASHES, NonceState, NonceStore, digest_response, parse_digest

logger = logging.getLogger(__name__)

MAX_JSON_BODY = 64 * 1024
BOUNDARY = "myboundary"
MJPEG = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
API_VERSION = "1.3"  # of basicdeviceinfo
FIRMWARE = "11.11.0"
DEFAULT_SIZE, MIN_SIZE, MAX_SIZE = (640, 360), (160, 90), (1920, 1080)
PTZ_LIMITS = {"pan": (-180.0, 180.0), "tilt": (-90.0, 90.0), "zoom": (1.0, 9999.0)}
PRODUCTS = {  # kind: ProdNbr, ProdType, HardwareID
    "fixed": ("P1468-LE", "Bullet Camera", "9A1"),
    "ptz": ("Q6075-E", "PTZ Network Camera", "79C"),
    "dome": ("M4308-PLE", "Panoramic Camera", "A0F"),
}
_CAMERA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*")  # so `_sim` is never a camera


@dataclass
class SimCamera:
    """One simulated camera: identity, credentials, state, every absolute move received and
    how many device-info questions it answered (what a health poll asks)."""

    id: str
    name: str
    kind: str = "fixed"
    username: str = "root"
    password: str = "pass"
    online: bool = True
    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 1.0
    serial: str = ""
    moves: list[tuple[float, float, float]] = field(default_factory=list)
    info_requests: int = 0

    def __post_init__(self) -> None:
        if not _CAMERA_ID.fullmatch(self.id):
            raise ValueError(f"camera id must be letters, digits and . _ ~ -, got {self.id!r}")
        if self.kind not in PRODUCTS:
            raise ValueError(f"camera {self.id}: kind is fixed, ptz or dome, not {self.kind!r}")
        if not self.serial:
            self.serial = "ACCC8E" + hashlib.sha256(self.id.encode()).hexdigest()[:6].upper()

    @property
    def realm(self) -> str:
        return f"AXIS_{self.serial}"


CameraHandler = Callable[[web.Request, SimCamera], Awaitable[web.StreamResponse]]


class ParamError(ValueError):
    """A request parameter the camera refuses: a 400 carrying this message."""


def _well_formed(fields: Mapping[str, str], camera: SimCamera) -> bool:
    """Whether Digest fields are complete, qop=auth, and meant for this camera and its user."""
    return (
        all(name in fields for name in DIGEST_FIELDS)
        and (fields["username"], fields["realm"], fields["qop"])
        == (camera.username, camera.realm, "auth")
        and fields.get("algorithm", "MD5").upper() in HASHES
        and re.fullmatch(r"[0-9a-fA-F]{8}", fields["nc"]) is not None
    )


def device_properties(camera: SimCamera) -> dict[str, str]:
    """basicdeviceinfo's propertyList."""
    number, product_type, hardware = PRODUCTS[camera.kind]
    return {
        "Architecture": "aarch64",
        "Brand": "AXIS",
        "BuildDate": "Oct 14 2025 09:12",
        "HardwareID": hardware,
        "ProdFullName": f"AXIS {number} {product_type}",
        "ProdNbr": number,
        "ProdShortName": f"AXIS {number}",
        "ProdType": product_type,
        "SerialNumber": camera.serial,
        "Soc": "Axis Artpec-8",
        "Version": FIRMWARE,
        "WebURL": "http://www.axis.com",
    }


def _error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def device_info_reply(body: Mapping[str, Any], camera: SimCamera) -> dict[str, Any]:
    """basicdeviceinfo.cgi's JSON answer to one request; errors too are answered with 200."""
    reply: dict[str, Any] = {"apiVersion": str(body.get("apiVersion", API_VERSION))}
    reply |= {key: body[key] for key in ("context", "method") if key in body}
    method = body.get("method")
    if method == "getSupportedVersions":
        return reply | {"data": {"apiVersions": [API_VERSION]}}
    if "apiVersion" not in body:
        return reply | _error(2103, "Required parameter missing: apiVersion")
    if not re.fullmatch(r"1\.\d+", reply["apiVersion"]):
        return reply | _error(2100, f"API version not supported: {reply['apiVersion']!r}")
    if method == "getAllProperties":
        return reply | {"data": {"propertyList": device_properties(camera)}}
    if method != "getProperties":
        return reply | _error(2102, f"Method not supported: {method!r}")
    params = body.get("params")
    names = params.get("propertyList") if isinstance(params, dict) else None
    if not isinstance(names, list) or not names:
        return reply | _error(2103, "Required parameter missing: params.propertyList")
    known = device_properties(camera)
    unknown = [name for name in names if not isinstance(name, str) or name not in known]
    if unknown:
        return reply | _error(2104, f"Invalid parameter value specified: {unknown}")
    return reply | {"data": {"propertyList": {name: known[name] for name in names}}}


def parse_resolution(value: str | None) -> tuple[int, int]:
    """`resolution=WxH` within what the cameras offer (default 640x360)."""
    if value is None:
        return DEFAULT_SIZE
    match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", value)
    width, height = (int(match[1]), int(match[2])) if match else (0, 0)
    if not (MIN_SIZE[0] <= width <= MAX_SIZE[0] and MIN_SIZE[1] <= height <= MAX_SIZE[1]):
        raise ParamError(f"resolution must be WxH from 160x90 to 1920x1080, got {value!r}")
    return width, height


def parse_number(query: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    """The query parameter `name` as a number in [low, high], None if absent."""
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # NaN fails too
        raise ParamError(f"{name} must be a number in [{low:g}, {high:g}], got {raw!r}")
    return value


def format_position(camera: SimCamera) -> str:
    """`ptz.cgi?query=position` body: Axis `key=value` lines."""
    return f"pan={camera.pan:.4f}\ntilt={camera.tilt:.4f}\nzoom={camera.zoom:g}\n"


def _drop(request: web.BaseRequest) -> NoReturn:
    """Reset the connection without a word, as an unplugged camera would (minus the wait)."""
    if request.transport is not None:
        request.transport.abort()
    # Never sent: aiohttp's attempt to write it to the aborted transport fails quietly.
    raise web.HTTPServiceUnavailable()


class AxisCameraSimulator:
    """Many simulated Axis cameras behind one aiohttp server, each under `/{camera_id}/`."""

    def __init__(
        self, cameras: Iterable[SimCamera], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._cameras: dict[str, SimCamera] = {}
        for camera in cameras:
            if camera.id in self._cameras:
                raise ValueError(f"camera id {camera.id!r} appears twice")
            self._cameras[camera.id] = camera
        if len({c.serial for c in self._cameras.values()}) < len(self._cameras):
            raise ValueError("two cameras share a serial number: give one of them its own")
        self.host, self.port = host, port
        self.streams = 0  # MJPEG streams being served
        self._nonces = NonceStore()
        self._frames: dict[View, asyncio.Future[bytes]] = {}
        self.renders = 0  # pictures drawn (viewers of one camera and second share one)
        self._runner: web.AppRunner | None = None
        self._closing = False

    @classmethod
    def from_geojson(
        cls, document: dict[str, Any], username: str = "root", password: str = "pass", **kwargs: Any
    ) -> AxisCameraSimulator:
        """Cameras from a FeatureCollection whose features' properties give id, name, kind."""
        if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
            raise ValueError("cameras: a GeoJSON FeatureCollection is required")
        cameras = []
        for index, feature in enumerate(document.get("features") or []):
            props = feature.get("properties") if isinstance(feature, dict) else None
            if not isinstance(props, dict) or "id" not in props:
                raise ValueError(f"feature {index}: properties.id is required")
            camera_id, kind = str(props["id"]), str(props.get("kind", "fixed"))
            name = str(props.get("name") or camera_id)
            cameras.append(SimCamera(camera_id, name, kind, username=username, password=password))
        return cls(cameras, **kwargs)

    @property
    def cameras(self) -> list[SimCamera]:
        return list(self._cameras.values())

    def camera(self, camera_id: str) -> SimCamera:
        return self._cameras[camera_id]

    def base_url(self, camera_id: str) -> str:
        """The camera's VAPIX base URL, with its trailing slash."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/{self.camera(camera_id).id}/"

    def set_online(self, camera_id: str, online: bool) -> None:
        self.camera(camera_id).online = online
        logger.info("%s: %s", camera_id, "online" if online else "offline")

    async def __aenter__(self) -> AxisCameraSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def create_app(self) -> web.Application:
        """The simulator's own `/_sim/` routes, then every camera's VAPIX CGIs."""
        app = web.Application(client_max_size=MAX_JSON_BODY)
        cgi = "/{camera_id}/axis-cgi/"
        app.add_routes([
            web.get("/_sim/cameras", self._list_cameras),
            web.post("/_sim/{camera_id}/{state:online|offline}", self._set_state),
            web.post(cgi + "basicdeviceinfo.cgi", self._vapix(self._device_info)),
            web.get(cgi + "com/ptz.cgi", self._vapix(self._ptz)),
            web.get(cgi + "mjpg/video.cgi", self._vapix(self._video), allow_head=False),
            web.get(cgi + "jpg/image.cgi", self._vapix(self._image)),
            web.route("*", "/{camera_id}/{path:.*}", self._vapix(self._not_simulated)),
        ])  # fmt: skip
        return app

    async def start(self) -> None:
        """Bind and serve; with port 0, `self.port` becomes the port picked."""
        self._closing = False
        self._runner = web.AppRunner(self.create_app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        logger.info("%d Axis cameras on http://%s:%d/", len(self._cameras), self.host, self.port)

    async def close(self) -> None:
        self._closing = True  # MJPEG streams end at their next frame
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await asyncio.gather(*self._frames.values(), return_exceptions=True)
        self._frames.clear()

    def _vapix(self, handler: CameraHandler) -> Callable[[web.Request], Awaitable[Any]]:
        """Unknown camera 404, offline drops the connection, then Digest, then the handler."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            camera_id = request.match_info["camera_id"]
            camera = self._cameras.get(camera_id)
            if camera is None:
                raise web.HTTPNotFound(text=f"Error: no camera {camera_id!r} here")
            if not camera.online:
                _drop(request)
            self._authenticate(request, camera)
            try:
                return await handler(request, camera)
            except ParamError as err:
                raise web.HTTPBadRequest(text=f"Error: {err}") from None

        return guarded

    def _authenticate(self, request: web.Request, camera: SimCamera) -> None:
        """Return if the request carries a valid Digest response; raise 401 (or 400) if not."""
        now = time.monotonic()
        fields = parse_digest(request.headers.get(hdrs.AUTHORIZATION, ""))
        if fields is None or not _well_formed(fields, camera):
            raise self._challenge(camera, now)
        if fields["uri"] != request.raw_path:  # RFC 7616 section 3.4.6
            raise web.HTTPBadRequest(text="Error: the Digest uri is not this request's target")
        expected = digest_response(fields, camera.password, request.method)
        if not hmac.compare_digest(expected.encode(), fields["response"].lower().encode()):
            logger.info("%s: wrong Digest credentials for %r", camera.id, fields["username"])
            raise self._challenge(camera, now)
        state = self._nonces.check(fields["nonce"], camera.id, int(fields["nc"], 16), now)
        if state is not NonceState.VALID:
            raise self._challenge(camera, now, stale=state is NonceState.STALE)

    def _challenge(self, camera: SimCamera, now: float, stale: bool = False) -> web.HTTPException:
        """401 offering MD5 first (what VAPIX clients take), then SHA-256, on one fresh nonce."""
        nonce = self._nonces.issue(camera.id, now)
        headers: CIMultiDict[str] = CIMultiDict()
        for algorithm in HASHES:
            value = f'Digest realm="{camera.realm}", nonce="{nonce}", algorithm={algorithm}'
            headers.add(hdrs.WWW_AUTHENTICATE, value + ', qop="auth"' + ", stale=true" * stale)
        return web.HTTPUnauthorized(headers=headers, text="401 Unauthorized")

    async def _device_info(self, request: web.Request, camera: SimCamera) -> web.Response:
        camera.info_requests += 1
        try:
            body = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            body = {"apiVersion": API_VERSION} | _error(2107, f"Request over {MAX_JSON_BODY} bytes")
        except ValueError:  # bad JSON or bad UTF-8
            body = None
        if not isinstance(body, dict):
            body = {"apiVersion": API_VERSION} | _error(2101, "Invalid JSON: an object expected")
        return web.json_response(body if "error" in body else device_info_reply(body, camera))

    async def _ptz(self, request: web.Request, camera: SimCamera) -> web.Response:
        if camera.kind != "ptz":
            raise ParamError("this camera has no PTZ")
        query = request.query
        unknown = sorted(set(query) - {*PTZ_LIMITS, "query", "camera"})
        if unknown:
            raise ParamError(f"unsupported parameter {unknown[0]!r} (pan, tilt, zoom, query)")
        if "query" in query:
            if query["query"] != "position":
                raise ParamError(f"query must be 'position', got {query['query']!r}")
            return web.Response(text=format_position(camera))
        pan, tilt, zoom = (parse_number(query, name, *PTZ_LIMITS[name]) for name in PTZ_LIMITS)
        if pan is None and tilt is None and zoom is None:
            raise ParamError("give pan, tilt or zoom, or query=position")
        camera.pan = camera.pan if pan is None else pan
        camera.tilt = camera.tilt if tilt is None else tilt
        camera.zoom = camera.zoom if zoom is None else zoom
        camera.moves.append(position := (camera.pan, camera.tilt, camera.zoom))
        logger.debug("%s: moved to pan %.2f tilt %.2f zoom %g", camera.id, *position)
        return web.Response(status=204)

    async def _image(self, request: web.Request, camera: SimCamera) -> web.Response:
        size = parse_resolution(request.query.get("resolution"))
        return web.Response(body=await self._frame(camera, size), content_type="image/jpeg")

    async def _video(self, request: web.Request, camera: SimCamera) -> web.StreamResponse:
        """MJPEG on time, until the duration, the viewer, the camera or the simulator ends."""
        size = parse_resolution(request.query.get("resolution"))
        fps = parse_number(request.query, "fps", 1, 30) or 10
        duration = parse_number(request.query, "duration", 0, 86400) or math.inf
        response = web.StreamResponse(
            headers={hdrs.CONTENT_TYPE: MJPEG, "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        start, sent = loop.time(), 0
        self.streams += 1
        try:
            while not self._closing and camera.online and sent < duration * fps:
                jpeg = await self._frame(camera, size)
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                await response.write(f"{head}\r\n\r\n".encode() + jpeg + b"\r\n")
                sent += 1
                await asyncio.sleep(max(0.0, start + sent / fps - loop.time()))
        except ConnectionResetError:
            logger.debug("%s: MJPEG viewer left after %d frames", camera.id, sent)
        finally:
            self.streams -= 1
        if not camera.online and request.transport is not None:
            request.transport.abort()  # went offline mid-stream: cut, not a clean end
        return response

    async def _frame(self, camera: SimCamera, size: tuple[int, int]) -> bytes:
        """The JPEG for this camera, size, second and position: rendered once, in a thread."""
        view = View(
            camera.id,
            camera.name,
            camera.kind,
            (camera.pan, camera.tilt, camera.zoom),
            size,
            datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S"),  # local, as Axis
        )
        render = self._frames.get(view)
        if render is None:
            if self._frames and next(iter(self._frames)).clock != view.clock:
                self._frames.clear()  # no one can ask for an earlier second's picture again
            render = asyncio.ensure_future(asyncio.to_thread(render_jpeg, view))
            self._frames[view] = render
            self.renders += 1
        return await asyncio.shield(render)  # a viewer leaving must not cancel others' render

    async def _not_simulated(self, request: web.Request, camera: SimCamera) -> web.Response:
        raise web.HTTPNotFound(text=f"Error: {request.path} is not simulated")

    async def _list_cameras(self, request: web.Request) -> web.Response:
        keys = ("id", "kind", "online", "pan", "tilt", "zoom")
        listing = [{k: getattr(c, k) for k in keys} | {"moves": len(c.moves)} for c in self.cameras]
        return web.json_response(listing)

    async def _set_state(self, request: web.Request) -> web.Response:
        camera_id = request.match_info["camera_id"]
        if camera_id not in self._cameras:
            raise web.HTTPNotFound(text=f"Error: no camera {camera_id!r} here")
        self.set_online(camera_id, request.match_info["state"] == "online")
        return web.Response(status=204)


def synthetic_cameras(count: int, username: str, password: str) -> list[SimCamera]:
    """cam-0001 … cam-N, kinds cycling fixed, ptz, dome."""
    kinds = list(PRODUCTS)
    return [
        SimCamera(f"cam-{n:04d}", f"Camera {n:04d}", kinds[(n - 1) % 3], username, password)
        for n in range(1, count + 1)
    ]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the simulator."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators.axis_camera", description=__doc__.splitlines()[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cameras", type=Path, help="GeoJSON FeatureCollection (id, name, kind)")
    source.add_argument("--count", type=int, help="N synthetic cameras cam-0001… instead")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--username", default="root")
    parser.add_argument("--password", default="pass")
    parser.add_argument("--offline", nargs="+", action="extend", default=[], metavar="ID")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> AxisCameraSimulator:
    """The simulator the options describe (OSError or ValueError if they are wrong)."""
    login = {"username": args.username, "password": args.password}
    if args.cameras is not None:
        document = json.loads(args.cameras.read_text(encoding="utf-8"))
        sim = AxisCameraSimulator.from_geojson(document, **login, host=args.host, port=args.port)
    else:
        sim = AxisCameraSimulator(synthetic_cameras(args.count, **login), args.host, args.port)
    for camera_id in args.offline:
        if camera_id not in {camera.id for camera in sim.cameras}:
            raise ValueError(f"--offline: no camera {camera_id!r}")
        sim.set_online(camera_id, False)
    return sim


async def run(args: argparse.Namespace) -> int:
    """Print `id base_url` for every camera, then serve until SIGINT or SIGTERM."""
    try:
        sim = build(args)
        await sim.start()
    except (OSError, ValueError) as err:
        logger.error("axis cameras: %s", err)
        return 2
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    try:
        for camera in sim.cameras:
            print(camera.id, sim.base_url(camera.id), flush=True)  # noqa: T201 its output
        await stop.wait()
    finally:
        await sim.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m simulators.axis_camera`."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
