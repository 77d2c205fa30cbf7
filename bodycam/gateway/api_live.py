"""The REST API of what is live (`/api/v1/…`): cameras, positions and alerts; thin handlers.

Every endpoint needs a login (`auth.auth_middleware`) and says which roles it serves.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from aiohttp import web

from .. import access
from ..clock import iso, parse_iso
from ..errors import BadRequest, Conflict, NotFound
from ..geo.ptz import Aim
from ..geo.registry import cameras_to_geojson
from ..models import Action, Position, Role
from . import auth
from .appkeys import clock_key, config_key, health_key, sessions_key, store_key, tracker_key
from .forward import forwarder_key
from .params import PREFIX, json_body, number
from .tracking import Officer

logger = logging.getLogger(__name__)

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
    app.router.add_get(f"{PREFIX}/alerts", list_alerts)
    app.router.add_post(f"{PREFIX}/alerts/{{session_id}}/{{action}}", act_on_alert)


async def cameras(request: web.Request) -> web.Response:
    """The registry as GeoJSON, without the cameras' addresses and credential references."""
    auth.require(request, access.LIVE_VIEW, "see the cameras")
    document = cameras_to_geojson(list(request.app[tracker_key].city.cameras.values()))
    for feature in document["features"]:
        for key in ("credentials_ref", "vapix_url", "mjpeg_url", "rtsp_url"):
            feature["properties"].pop(key, None)  # cameras are reached through the gateway
    return web.json_response(document)


async def selection(request: web.Request) -> web.Response:
    """The cameras for a point: ?lat=..&lon=..[&limit=..]."""
    auth.require(request, access.LIVE_VIEW, "see the cameras")
    lat = number(request.query, "lat", -90, 90)
    lon = number(request.query, "lon", -180, 180)
    limit = int(number(request.query, "limit", 1, MAX_SELECTION, default=4, integer=True))
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
    auth.require(request, access.CAMERA_HEALTH, "see the cameras' health")
    return web.json_response(request.app[health_key].report())


async def take_control(request: web.Request) -> web.Response:
    """Manual control of a PTZ camera by the logged-in person: {"seconds": 300}.

    The national police (CIC) gives notice first ({"notice": "…"}, shown on every CSU
    console with the time left, and registered), holds a camera
    `cameras.cic_control_max_seconds` per request, and renews it up to
    `cameras.cic_control_total_seconds` per event: a break shorter than
    `cameras.cic_control_rest_seconds` does not start a new one. Each renewal is a
    register entry, with the time since the event began.
    """
    person = auth.require(request, access.CAMERA_CONTROL, "control cameras")
    body = await json_body(request)
    seconds = number(body, "seconds", 1, math.inf)
    notice = body.get("notice", "")
    if not isinstance(notice, str) or len(notice) > 500:
        raise BadRequest("notice: a text of at most 500 characters")
    notice = notice.strip()
    camera_id = request.match_info["camera_id"]
    app, now = request.app, _now(request)
    since = None
    if person.role == Role.POLICE_NATIONALE:
        since, seconds = await _cic_event(request, camera_id, person.name, notice, seconds)
    control = await app[tracker_key].take_control(camera_id, person.name, seconds, notice, since)
    await auth.record(
        request,
        Action.PTZ_CONTROL,
        person,
        camera_id=camera_id,
        time_from=control.since,
        time_to=control.until,
        reason=notice,
        detail=f"{seconds:.0f} s"
        + (f"; the event began {iso(since)}" if since is not None and since < now else ""),
    )
    return web.json_response(control.to_json())


def _now(request: web.Request) -> datetime:
    return request.app[clock_key].now()


async def _cic_event(
    request: web.Request, camera_id: str, holder: str, notice: str, seconds: float
) -> tuple[datetime, float]:
    """When the national police's event on this camera began, and the seconds it may
    still hold it (at most what it asked)."""
    cameras = request.app[config_key].cameras
    if len(notice) < 3:
        raise BadRequest(
            "notice: the national police takes control of a CSU camera only after"
            " giving notice (say who asks and why)"
        )
    if seconds > cameras.cic_control_max_seconds:
        raise BadRequest(
            f"seconds: the national police holds a camera {cameras.cic_control_max_seconds:.0f}"
            " s at most"
        )
    store, now = request.app[store_key], _now(request)
    total, rest = cameras.cic_control_total_seconds, cameras.cic_control_rest_seconds
    look_back = now - timedelta(seconds=total + rest + cameras.cic_control_max_seconds)
    rows = await store.run(store.register_entries, look_back, None)
    spans = [
        # (when its event began, as the entry says, else when it was taken; its end)
        (parse_iso(r["from"] or r["at"]), parse_iso(r["to"]))
        for r in rows
        if r["action"] == Action.PTZ_CONTROL.value
        and r["camera"] == camera_id
        and r["user"] == holder
        and r["outcome"] == "ok"
        and r["to"]
    ]
    since = event_start(spans, now, timedelta(seconds=rest))
    left = total - (now - since).total_seconds()
    if left < 1:
        again = max(until for _, until in spans) + timedelta(seconds=rest)
        raise Conflict(
            f"camera {camera_id}: the national police has held it since {iso(since)}, the"
            f" most one event allows ({total / 60:.0f} min, cameras.cic_control_total_seconds);"
            f" it may take it again from {iso(again)}"
        )
    return since, min(seconds, left)


def event_start(spans: list[tuple[datetime, datetime]], now: datetime, rest: timedelta) -> datetime:
    """When the event a control taken `now` belongs to began: going back through the
    holder's earlier controls (taken, until), each that ended less than `rest` before the
    next began is part of it."""
    start = now
    for taken, until in sorted(spans, reverse=True):
        if until + rest < start:
            break
        start = min(start, taken)
    return start


async def release_control(request: web.Request) -> web.Response:
    """Give a camera back to automatic aiming (the holder only)."""
    person = auth.require(request, access.CAMERA_CONTROL, "control cameras")
    tracker, camera_id = request.app[tracker_key], request.match_info["camera_id"]
    await tracker.release_control(camera_id, person.name)
    await auth.record(request, Action.PTZ_RELEASE, person, camera_id=camera_id)
    return web.Response(status=204)


async def move(request: web.Request) -> web.Response:
    """A manual absolute move: {"pan", "tilt", "zoom"}, for the control's holder."""
    person = auth.require(request, access.CAMERA_CONTROL, "control cameras")
    body = await json_body(request)
    target = Aim(
        number(body, "pan", -180, 180),
        number(body, "tilt", -90, 90),
        int(number(body, "zoom", 1, 9999, integer=True)),
    )
    camera_id = request.match_info["camera_id"]
    await request.app[tracker_key].manual_move(camera_id, person.name, target)
    detail = f"pan {target.pan:g} tilt {target.tilt:g} zoom {target.zoom}"
    await auth.record(request, Action.PTZ_MOVE, person, camera_id=camera_id, detail=detail)
    return web.Response(status=204)


async def position(request: web.Request) -> web.Response:
    """Where the officer of a live session is, the nearest street, the chosen cameras."""
    person = auth.require(request, access.LIVE_VIEW, "see where officers are")
    if (answer := await _at_holder(request)) is not None:
        return answer
    officer = await _officer(request)
    await auth.record(request, Action.POSITION_VIEW, person, session_id=officer.session_id)
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
    person = auth.require(request, access.LIVE_VIEW, "see where officers are")
    if (answer := await _at_holder(request)) is not None:
        return answer
    officer = await _officer(request)
    points = list(officer.track.points)
    first, last = (points[0].time, points[-1].time) if points else (None, None)
    await auth.record(
        request,
        Action.TRACK_VIEW,
        person,
        session_id=officer.session_id,
        time_from=first,
        time_to=last,
    )
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


async def list_alerts(request: web.Request) -> web.Response:
    """Open alerts, and those raised within the last shift; newest first."""
    auth.require(request, access.LIVE_VIEW, "see alerts")
    return web.json_response(await request.app[sessions_key].alerts.in_view())


async def act_on_alert(request: web.Request) -> web.StreamResponse:
    """POST …/alerts/{session_id}/{ack|dispatch|close}: who and when are recorded."""
    person = auth.require(request, access.ALERT_ACTION, "act on alerts")
    session_id = request.match_info["session_id"]
    store, manager = request.app[store_key], request.app[sessions_key]
    alert = await store.run(store.get_alert, session_id)
    if alert is None:
        # raised on a node with a database of its own: that node records the action
        answer = await request.app[forwarder_key].to_holder(request, session_id)
        if answer is not None:
            return answer
        raise NotFound(f"no alert for session {session_id}")
    action = request.match_info["action"]
    acted = await manager.alerts.act(alert, action, person)
    await auth.record(request, Action.ALERT_ACTION, person, session_id=session_id, detail=action)
    return web.json_response(acted)


async def _at_holder(request: web.Request) -> web.Response | None:
    """The answer of the node holding the session, when it is another one."""
    session_id = request.match_info["session_id"]
    if request.app[sessions_key].session(session_id) is not None:
        return None
    return await request.app[forwarder_key].to_holder(request, session_id)


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
