"""The console's live updates: a WebSocket with a snapshot, then every event in order.

A console that reconnects gives the id of the last event it applied (`?after=`): it gets a
fresh snapshot, then the events it missed (replayed from the shared stream), then the live
ones. A console too slow to keep up is not dropped: it gets a new snapshot and goes on
from where it was.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from .. import access
from ..clock import iso
from ..errors import BodycamError
from ..gateway import auth
from ..gateway.appkeys import (
    clock_key,
    health_key,
    live_key,
    login_watch_key,
    sessions_key,
    tracker_key,
)
from ..live.base import event_key
from ..models import Action

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 20.0
TRACK_POINTS = 500


async def console_socket(request: web.Request) -> web.WebSocketResponse:
    person = auth.require(request, access.LIVE_VIEW, "watch the console")
    after = request.query.get("after") or None
    if after is not None:
        event_key(after)  # a malformed id is a 400 before the upgrade
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=4096)
    await ws.prepare(request)
    logger.info("console: %s connected (after %s)", person.name, after)
    reader = asyncio.create_task(_drain(ws))
    token = auth.login_token(request)
    assert token is not None  # (auth.require found the person by it)

    async def login_ended() -> None:  # logged out, disabled, password changed: no more
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"login ended: log in again")

    release = request.app[login_watch_key].hold(token, login_ended)
    detail = f"from {request.remote or '?'}"
    await auth.record(request, Action.CONSOLE_OPEN, person, detail=detail)
    started = request.app[clock_key].now()  # (not before its entry: the range follows it)
    try:
        await _stream(request.app, ws, after, reader)
    except ConnectionResetError:  # gone between two messages: the page reconnects
        pass
    except BodycamError as err:  # (too late for an HTTP answer: say it in the close)
        logger.warning("console: %s: updates stopped: %s", person.name, err)
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=str(err)[:120].encode())
    finally:
        release()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        logger.info("console: %s disconnected", person.name)
        end = request.app[clock_key].now()
        closed = auth.record(
            request, Action.CONSOLE_CLOSE, person, time_from=started, time_to=end, detail=detail
        )
        await asyncio.shield(closed)  # (written even when the gateway is stopping)
    return ws


async def _stream(
    app: web.Application, ws: web.WebSocketResponse, after: str | None, reader: asyncio.Task[None]
) -> None:
    events = app[live_key].events
    while not ws.closed:
        # subscribe before the snapshot: nothing published in between is lost
        with events.subscribe(after=after) as sub:
            await ws.send_json(await snapshot(app, sub.last_id))
            while True:
                getter = asyncio.ensure_future(sub.get())
                try:
                    await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                finally:  # (cancelled too: the browser went away, the gateway stops)
                    if not getter.done():
                        getter.cancel()
                if reader.done():  # the browser went away
                    return
                event = getter.result()
                if event is None:
                    break  # too slow, or the stream ended: a new snapshot, then on
                await ws.send_json(event.to_json())
            if not sub.dropped:
                return  # the gateway is stopping
            after = sub.last_id


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read until the browser closes (the console sends nothing that matters)."""
    async for message in ws:
        if message.type == WSMsgType.ERROR:
            return


async def snapshot(app: web.Application, last_id: str) -> dict[str, Any]:
    """What is live now: alerts, positions, tracks, camera selections, camera health,
    whether recording is stopped (a full disk), and the cameras under manual control."""
    manager, tracker = app[sessions_key], app[tracker_key]
    positions = await app[live_key].positions.all()
    tracks, selections = {}, {}
    for live in manager.live_sessions():
        officer = tracker.officer(live.id)
        if officer is not None:
            points = list(officer.track.points)[-TRACK_POINTS:]
            tracks[live.id] = [[p.lat, p.lon] for p in points]
            selections[live.id] = tracker.choices_json(officer.selection)
    return {
        "type": "snapshot",
        "last_id": last_id,
        "alerts": await manager.alerts.in_view(),
        "positions": {
            p.session_id: {
                "session_id": p.session_id,
                "device_id": p.device_id,
                "lat": p.lat,
                "lon": p.lon,
                "accuracy_m": p.accuracy_m,
                "time": iso(p.time),
                "address": p.address,
            }
            for p in positions
        },
        "tracks": tracks,
        "selections": selections,
        "cameras": {c["camera_id"]: c["state"] for c in app[health_key].report()["cameras"]},
        "recording": manager.disk.status() if manager.disk is not None else None,
        "controls": [c.to_json() for c in await tracker.controls()],
    }
