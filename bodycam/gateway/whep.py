"""WHEP: viewers pull a live session, relayed as the camera encoded it.

Viewers are people logged in with a role that may see live images (cookie or Bearer
login token, `access`). A session held by another gateway node (the camera is connected
there) is answered with a 307 to that node, found in the shared session registry.

`POST /whep/{session_id}` with an SDP offer (recvonly video and audio) answers `201` with
the gateway's answer and a `Location` for the view (`/whep/{session_id}/{viewer_id}`, 128
random bits); `DELETE` on it ends the view. The answer offers the session's own codecs
only (the relay does not transcode): a viewer that cannot receive them gets `422`
(`viewers`). The view's bookkeeping is `SessionManager.watch`'s.
"""

from __future__ import annotations

import logging

from aiohttp import web

from .. import access
from ..errors import NotFound
from ..logs import ids
from ..models import SessionState
from . import auth
from .appkeys import config_key, live_key, sessions_key
from .whip import CORS, preflight, read_sdp

logger = logging.getLogger(__name__)

WHEP_PATH = "/whep/{session_id}"
VIEW_PATH = "/whep/{session_id}/{viewer_id}"


async def redirect_to_holder(request: web.Request, session_id: str) -> web.Response | None:
    """A 307 to the node that holds the session, or None when no other node does.

    307 keeps the method and the body: the client posts the same request again there.
    """
    live = request.app[live_key]
    holder = await live.sessions.holder(session_id)
    if holder is None or holder.id == live.node.id:
        return None
    return web.Response(status=307, headers={"Location": holder.url + request.path_qs, **CORS})


async def post_offer(request: web.Request) -> web.Response:
    person = auth.require(request, access.LIVE_VIEW, "view live images")
    app = request.app
    session_id = request.match_info["session_id"]
    live = app[sessions_key].session(session_id)
    if live is None:
        redirect = await redirect_to_holder(request, session_id)
        if redirect is not None:
            return redirect
        raise NotFound(f"no live session {session_id}")
    if live.state == SessionState.ENDED:
        raise NotFound(f"session {session_id} is over")
    sdp = await read_sdp(request, app[config_key].server.max_sdp_bytes)
    viewer_id, answer = await app[sessions_key].watch(live, sdp, person, request.remote or "?")
    location = VIEW_PATH.format(session_id=session_id, viewer_id=viewer_id)
    return web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": location, **CORS},
    )


async def delete_view(request: web.Request) -> web.Response:
    auth.require(request, access.LIVE_VIEW, "view live images")
    app = request.app
    session_id, viewer_id = request.match_info["session_id"], request.match_info["viewer_id"]
    live = app[sessions_key].session(session_id)
    if live is None or await live.relay.remove(viewer_id) is None:
        raise NotFound("no such view (it may have ended with its session)")
    logger.info(
        "session %s: view %s ended", session_id, viewer_id[:8], extra=ids(session_id=session_id)
    )
    return web.Response(status=200, headers=CORS)


async def options(request: web.Request) -> web.Response:
    return preflight("DELETE, OPTIONS" if "viewer_id" in request.match_info else "POST, OPTIONS")


def add_routes(app: web.Application) -> None:
    app.router.add_post(WHEP_PATH, post_offer)
    app.router.add_route("OPTIONS", WHEP_PATH, options)
    app.router.add_delete(VIEW_PATH, delete_view)
    app.router.add_route("OPTIONS", VIEW_PATH, options)
