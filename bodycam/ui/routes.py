"""The console's routes: the page, the city for its map, the fixed cameras' pictures, and
the WebSocket (`ws`). `docs/console.md` is the contract between the page and these."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from .. import access
from ..errors import NotFound
from ..gateway import auth
from ..gateway.appkeys import clock_key, login_watch_key, store_key, tracker_key, vapix_key
from ..gateway.vapix import CameraError
from ..geo.geometry import LocalFrame, sector
from ..logs import ids
from ..models import Action, Camera, CameraKind
from ..store import Store
from . import ws
from .feeds import Feeds

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
BOUNDARY = "bodycamframe"
FIRST_FRAME_SECONDS = 8.0  # a camera that sends nothing by then is reported as failing
FRAME_WAIT_SECONDS = 10.0

feeds_key = web.AppKey("feeds", Feeds)
_city_cache_key = web.AppKey("city_json", dict)


async def index(request: web.Request) -> web.FileResponse:
    # the page itself holds nothing: it asks /api/v1/me and shows the login form if needed
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def to_console(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


async def city(request: web.Request) -> web.Response:
    """Streets, buildings and cameras with their field of view, for the offline map."""
    auth.require(request, access.LIVE_VIEW, "see the map")
    tracker = request.app[tracker_key]
    cache = request.app[_city_cache_key]
    if cache.get("version") != tracker.city.version or "body" not in cache:
        store = request.app[store_key]
        body = await store.run(_city_body, store, list(tracker.city.cameras.values()))
        cache.update(version=tracker.city.version, body=body)
    return web.Response(body=cache["body"], content_type="application/json")


def _city_body(store: Store, cameras: list[Camera]) -> bytes:
    """The city as JSON bytes, built and encoded on the store's thread (megabytes for a
    large city: not on the event loop)."""
    return json.dumps(_city_document(store, cameras)).encode()


def _city_document(store: Store, cameras: list[Camera]) -> dict[str, Any]:
    def features(kind: str) -> list[dict[str, Any]]:
        return [
            {"type": "Feature", "properties": {"name": name}, "geometry": json.loads(geometry)}
            for name, geometry in store.places(kind)
        ]

    streets, buildings = features("street"), features("building")
    points = [c for f in streets + buildings for c in _coordinates(f["geometry"])]
    points += [(c.lon, c.lat) for c in cameras]
    lons, lats = [p[0] for p in points] or [0.0], [p[1] for p in points] or [0.0]
    return {
        "bounds": [[min(lats), min(lons)], [max(lats), max(lons)]],
        "streets": {"type": "FeatureCollection", "features": streets},
        "buildings": {"type": "FeatureCollection", "features": buildings},
        "cameras": {"type": "FeatureCollection", "features": [_camera(c) for c in cameras]},
    }


def _coordinates(geometry: dict[str, Any]) -> list[tuple[float, float]]:
    """Every (lon, lat) of a GeoJSON geometry, whatever its nesting."""
    found: list[tuple[float, float]] = []

    def walk(value: Any) -> None:
        if value and isinstance(value[0], (int, float)):
            found.append((float(value[0]), float(value[1])))
        else:
            for item in value:
                walk(item)

    walk(geometry.get("coordinates", []))
    return found


def _camera(camera: Camera) -> dict[str, Any]:
    """A camera and what it can show: its sector, or for a PTZ the whole pan range."""
    heading, fov = camera.heading_deg, camera.fov_deg
    if camera.kind == CameraKind.PTZ:
        span = (camera.pan_max_deg - camera.pan_min_deg) % 360 or 360.0
        heading, fov = camera.pan_min_deg + span / 2, min(360.0, span + camera.fov_deg)
    elif camera.kind == CameraKind.DOME:
        fov = 360.0
    frame = LocalFrame(camera.lat, camera.lon)
    ring = sector(0.0, 0.0, heading, fov, camera.range_m).exterior.coords
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [camera.lon, camera.lat]},
        "properties": {
            "id": camera.id,
            "name": camera.name,
            "kind": camera.kind.value,
            "heading_deg": camera.heading_deg,
            "fov_deg": camera.fov_deg,
            "range_m": camera.range_m,
            "sector": [[round(v, 7) for v in frame.xy_to_lonlat(x, y)] for x, y in ring],
        },
    }


async def mjpeg(request: web.Request) -> web.StreamResponse:
    """A fixed camera's pictures, relayed: the browser never sees the camera's address or
    credentials."""
    person = auth.require(request, access.CAMERA_VIEW, "view the cameras")
    camera_id = request.match_info["camera_id"]
    camera = request.app[tracker_key].city.cameras.get(camera_id)
    if camera is None:
        raise NotFound(f"no camera {camera_id} in the registry")
    await auth.record(request, Action.CAMERA_VIEW, person, camera_id=camera_id)
    started = request.app[clock_key].now()  # (not before its entry: the range follows it)
    feed = request.app[feeds_key].watch(camera)
    feed.viewers += 1
    login_ended = asyncio.Event()  # logged out, disabled: the stream ends at the next picture
    token = auth.login_token(request)
    assert token is not None  # (auth.require found the person by it)
    release = request.app[login_watch_key].hold(token, _setter(login_ended))
    try:
        first = await feed.next_frame(0, FIRST_FRAME_SECONDS)
        if first is None:
            # the camera's own address stays out of what the browser is told
            logger.warning(
                "camera %s: no picture for a tile: %s",
                camera_id,
                feed.error,
                extra=ids(camera_id=camera_id),
            )
            raise CameraError(f"camera {camera_id}: no picture (the camera does not answer)")
        response = web.StreamResponse(
            headers={
                "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        seq, jpeg = first
        while True:
            head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
            try:
                await response.write(f"{head}\r\n\r\n".encode() + jpeg + b"\r\n")
            except ConnectionResetError:  # the tile is gone: the usual way a view ends
                return response
            following = await feed.next_frame(seq, FRAME_WAIT_SECONDS)
            if following is None or login_ended.is_set():
                # the camera failed or went silent: end the stream rather than show an old
                # picture as live; the page shows the tile as unavailable and retries
                with contextlib.suppress(ConnectionResetError):
                    await response.write(f"--{BOUNDARY}--\r\n".encode())
                return response
            seq, jpeg = following
    finally:
        release()
        feed.viewers -= 1
        end = request.app[clock_key].now()
        ended = auth.record(
            request, Action.CAMERA_VIEW_END, person, camera_id=camera_id,
            time_from=started, time_to=end,
        )  # fmt: skip
        await asyncio.shield(ended)  # (written even when the browser went away)


def _setter(event: asyncio.Event) -> Callable[[], Awaitable[None]]:
    async def set_it() -> None:
        event.set()

    return set_it


async def _revalidate_static(request: web.Request, response: web.StreamResponse) -> None:
    """The page's modules import each other: after an upgrade a browser must not mix a new
    file with an old cached one, so each is revalidated (a 304 when unchanged)."""
    if request.path.startswith("/ui/static/"):
        response.headers["Cache-Control"] = "no-cache"


async def feeds_ctx(app: web.Application) -> AsyncIterator[None]:
    app[feeds_key] = feeds = Feeds(app[vapix_key])
    yield
    await feeds.close()


def add_routes(app: web.Application) -> None:
    app[_city_cache_key] = {}
    app.cleanup_ctx.append(feeds_ctx)
    app.on_response_prepare.append(_revalidate_static)
    app.router.add_get("/", to_console)
    app.router.add_get("/ui", to_console)
    app.router.add_get("/ui/", index)
    app.router.add_static("/ui/static/", STATIC)
    app.router.add_get("/ui/city.json", city)
    app.router.add_get("/ui/ws", ws.console_socket)
    app.router.add_get("/ui/cameras/{camera_id}/mjpeg", mjpeg)
