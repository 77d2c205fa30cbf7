"""WHIP (RFC 9725) endpoint: cameras publish with POST, end with DELETE.

One endpoint URL for every device: the Bearer token says which device is calling. The
session URL returned in `Location` carries 192 random bits, so it cannot be guessed, and
DELETE on it still requires the device's token. Trickle ICE is not offered: PATCH gets
405, as the RFC asks of servers without it. CORS lets a browser page on another origin
publish (a WHIP client in a web page).
"""

from __future__ import annotations

import logging

from aiohttp import web

from ..devices import authenticate
from ..errors import PayloadTooLarge, UnsupportedMediaType
from ..logs import ids
from ..models import Device, SessionState
from .appkeys import config_key, metrics_key, sessions_key, store_key
from .forward import HolderUnreachable, forwarder_key
from .params import CORS

logger = logging.getLogger(__name__)

WHIP_PATH = "/whip"
SESSION_PATH = "/whip/sessions/{resource_id}"


async def read_sdp(request: web.Request, limit: int) -> str:
    """The request body as SDP text, within the size limit."""
    content_type = request.headers.get("Content-Type", "")
    if content_type.split(";")[0].strip().lower() != "application/sdp":
        raise UnsupportedMediaType(
            f"Content-Type must be application/sdp, got {content_type or 'none'}"
        )
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"SDP offer of {request.content_length} bytes is over the {limit}-byte limit"
        )
    body = b""
    # read() returns what has arrived so far: an offer split over TCP segments (a 4G
    # camera, a browser's 5 KB offer) needs reading to the end.
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"SDP offer is over the {limit}-byte limit")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsupportedMediaType("SDP offer is not UTF-8 text") from None


async def post_offer(request: web.Request) -> web.Response:
    app = request.app
    store = app[store_key]
    device = await store.run(authenticate, store, request.headers.get("Authorization"))
    sdp = await read_sdp(request, app[config_key].server.max_sdp_bytes)
    forwarded = await _to_live_holder(request, device, sdp)
    if forwarded is not None:
        return forwarded
    resource_id, answer, session = await app[sessions_key].publish(device, sdp)
    location = SESSION_PATH.format(resource_id=resource_id)
    app[metrics_key].whip_requests.labels("POST", "201").inc()
    return web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": location, "X-Bodycam-Session": session.id, **CORS},
    )


async def _to_live_holder(request: web.Request, device: Device, sdp: str) -> web.Response | None:
    """A device whose session is live on another node that answers: the offer goes there
    (that node knows whether the old link is silent, or the device is streaming twice).
    None: this node publishes it, taking the session over if another node held it (dead,
    unreachable, or the session only interrupted)."""
    app = request.app
    manager, store = app[sessions_key], app[store_key]
    if manager.holds_device(device.id):
        return None
    held = await store.run(store.live_session_of_device, device.id)
    if held is None or held.state != SessionState.LIVE or held.node == manager.run:
        return None
    try:
        return await app[forwarder_key].to_holder(request, held.id, sdp.encode())
    except HolderUnreachable as err:
        logger.warning(
            "device %s: %s; taking the session over", device.id, err, extra=ids(device_id=device.id)
        )
        return None


async def delete_session(request: web.Request) -> web.Response:
    app = request.app
    store = app[store_key]
    device = await store.run(authenticate, store, request.headers.get("Authorization"))
    resource_id = request.match_info["resource_id"]
    held = await store.run(store.session_of_resource, resource_id)
    if held is not None and app[sessions_key].session(held.id) is None:
        answer = await app[forwarder_key].to_holder(request, held.id)
        if answer is not None:
            return answer
    session = await app[sessions_key].delete(resource_id, device)
    app[metrics_key].whip_requests.labels("DELETE", "200").inc()
    return web.json_response({"session": session.id, "state": session.state}, headers=CORS)


def preflight(methods: str) -> web.Response:
    """CORS preflight, and the RFCs' way (WHIP, WHEP) to learn what POST accepts."""
    return web.Response(
        status=204,
        headers={
            **CORS,
            "Accept-Post": "application/sdp",
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
            "Access-Control-Max-Age": "86400",
            "Allow": methods,
        },
    )


async def options(request: web.Request) -> web.Response:
    resource = request.match_info.get("resource_id")
    return preflight("POST, OPTIONS" if resource is None else "DELETE, OPTIONS")


def add_routes(app: web.Application) -> None:
    app.router.add_post(WHIP_PATH, post_offer)
    app.router.add_route("OPTIONS", WHIP_PATH, options)
    app.router.add_delete(SESSION_PATH, delete_session)
    app.router.add_route("OPTIONS", SESSION_PATH, options)
