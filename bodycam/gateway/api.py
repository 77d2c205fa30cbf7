"""The REST API of cameras and positions (`/api/v1/…`): thin handlers over the tracker.

Access control by role comes with the users and the register (issue 5); until then these
endpoints are for the CSU's own network, like the console.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from ..clock import iso
from ..errors import BadRequest, NotFound, UnsupportedMediaType
from ..geo.ptz import Aim
from ..geo.registry import cameras_to_geojson
from ..models import Position
from .keys import clock_key, health_key, sessions_key, store_key, tracker_key
from .tracking import Officer

PREFIX = "/api/v1"
MAX_SELECTION = 16


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/cameras", cameras)
    app.router.add_get(f"{PREFIX}/cameras/selection", selection)
    app.router.add_get(f"{PREFIX}/cameras/health", health)
    app.router.add_put(f"{PREFIX}/cameras/{{camera_id}}/control", take_control)
    app.router.add_delete(f"{PREFIX}/cameras/{{camera_id}}/control", release_control)
    app.router.add_post(f"{PREFIX}/cameras/{{camera_id}}/ptz", move)
    app.router.add_get(f"{PREFIX}/sessions/{{session_id}}/position", position)
    app.router.add_get(f"{PREFIX}/sessions/{{session_id}}/track", track)


async def cameras(request: web.Request) -> web.Response:
    """The registry as GeoJSON (without credential references)."""
    document = cameras_to_geojson(list(request.app[tracker_key].city.cameras.values()))
    for feature in document["features"]:
        del feature["properties"]["credentials_ref"]
    return web.json_response(document)


async def selection(request: web.Request) -> web.Response:
    """The cameras for a point: ?lat=..&lon=..[&limit=..]."""
    lat = _number(request.query, "lat", -90, 90)
    lon = _number(request.query, "lon", -180, 180)
    limit = int(_number(request.query, "limit", 1, MAX_SELECTION, default=4, integer=True))
    tracker = request.app[tracker_key]
    point = Position(lat, lon, 0.0, request.app[clock_key].now())
    address = tracker.city.streets.nearest(point)
    return web.json_response(
        {
            "lat": lat,
            "lon": lon,
            "address": str(address) if address else None,
            "cameras": tracker.choices_json(tracker.rank(point, limit)),
        }
    )


async def health(request: web.Request) -> web.Response:
    return web.json_response(request.app[health_key].report())


async def take_control(request: web.Request) -> web.Response:
    """Manual control of a PTZ camera: {"holder": "...", "seconds": 300}."""
    body = await _json(request)
    seconds = _number(body, "seconds", 1, math.inf)
    control = request.app[tracker_key].take_control(
        request.match_info["camera_id"], _text(body, "holder"), seconds
    )
    return web.json_response(control.to_json())


async def release_control(request: web.Request) -> web.Response:
    """?holder=...: give a camera back to automatic aiming."""
    tracker = request.app[tracker_key]
    tracker.release_control(request.match_info["camera_id"], _text(request.query, "holder"))
    return web.Response(status=204)


async def move(request: web.Request) -> web.Response:
    """A manual absolute move: {"holder", "pan", "tilt", "zoom"}, for the control's holder."""
    body = await _json(request)
    target = Aim(
        _number(body, "pan", -180, 180),
        _number(body, "tilt", -90, 90),
        int(_number(body, "zoom", 1, 9999, integer=True)),
    )
    await request.app[tracker_key].manual_move(
        request.match_info["camera_id"], _text(body, "holder"), target
    )
    return web.Response(status=204)


async def position(request: web.Request) -> web.Response:
    """Where the officer of a live session is, the nearest street, the chosen cameras."""
    officer = await _officer(request)
    tracker = request.app[tracker_key]
    fix = officer.track.current
    assert fix is not None
    now = request.app[clock_key].now()
    return web.json_response(
        {
            "session_id": officer.session_id,
            "device_id": officer.device_id,
            "officer": officer.name,
            "lat": fix.lat,
            "lon": fix.lon,
            "accuracy_m": fix.accuracy_m,
            "heading_deg": fix.heading_deg,
            "speed_mps": fix.speed_mps,
            "time": iso(fix.time),
            "age_seconds": round((now - fix.time).total_seconds(), 1),
            "address": str(officer.address) if officer.address else None,
            "street": officer.address.street if officer.address else None,
            "street_distance_m": officer.address.distance_m if officer.address else None,
            "fixes_kept": len(officer.track.points),
            "fixes_rejected": {k.value: v for k, v in officer.track.rejected.items()},
            "cameras": tracker.choices_json(officer.selection),
        }
    )


async def track(request: web.Request) -> web.Response:
    """The officer's kept fixes as a GeoJSON LineString (times in the properties)."""
    officer = await _officer(request)
    points = list(officer.track.points)
    return web.json_response(
        {
            "type": "Feature",
            "properties": {
                "session_id": officer.session_id,
                "times": [iso(p.time) for p in points],
                "accuracy_m": [p.accuracy_m for p in points],
            },
            "geometry": {"type": "LineString", "coordinates": [[p.lon, p.lat] for p in points]},
        }
    )


async def _officer(request: web.Request) -> Officer:
    session_id = request.match_info["session_id"]
    if request.app[sessions_key].session(session_id) is None:
        store = request.app[store_key]
        if await store.run(store.get_session, session_id) is None:
            raise NotFound(f"no session {session_id}")
        raise NotFound(f"session {session_id} is over: positions are shown only while it is live")
    officer = request.app[tracker_key].officer(session_id)
    if officer is None or officer.track.current is None:
        raise NotFound(f"session {session_id} has no usable GPS fix yet")
    return officer


async def _json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise UnsupportedMediaType(f"expected application/json, got {request.content_type}")
    try:
        body = await request.json()
    except ValueError as err:
        raise BadRequest(f"the body is not JSON: {err}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _number(
    values: Any,
    name: str,
    low: float,
    high: float,
    default: float | None = None,
    integer: bool = False,
) -> float:
    """A bounded number from a query string or a JSON body, or BadRequest naming it."""
    raw = values.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"{name}: required")
        return default
    try:
        value = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high) or (integer and value != int(value)):
        kind = "an integer" if integer else "a number"
        raise BadRequest(f"{name}: {kind} between {low:g} and {high:g} is required, got {raw!r}")
    return value


def _text(values: Any, name: str) -> str:
    raw = values.get(name)
    if not isinstance(raw, str) or not raw.strip():
        raise BadRequest(f"{name}: required text")
    return raw.strip()
