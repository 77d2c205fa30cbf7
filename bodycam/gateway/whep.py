"""WHEP: viewers pull a live session, relayed as the camera encoded it.

Viewers are people logged in with a role that may see live images (cookie or Bearer
login token, `access`). A session held by another gateway node (the camera is connected
there) is forwarded to it (`forward`): the viewer gets that node's answer, and its media.

`POST /whep/{session_id}` with an SDP offer (recvonly video and audio) answers `201` with
the gateway's answer and a `Location` for the view (`/whep/{session_id}/{viewer_id}`, 128
random bits); `DELETE` on it ends the view. The answer offers the session's own codecs
only (the relay does not transcode): a viewer that cannot receive them gets `422`
(`viewers`). The view's bookkeeping is `SessionManager.watch`'s.
"""

from __future__ import annotations

import logging
from functools import partial

from aiohttp import web

from .. import access
from ..errors import Forbidden, NotFound
from ..logs import ids
from ..models import SessionState
from . import auth
from .appkeys import config_key, login_watch_key, sessions_key
from .forward import forwarder_key
from .params import CORS
from .sessions import LiveSession, SessionManager
from .whip import preflight, read_sdp

logger = logging.getLogger(__name__)

WHEP_PATH = "/whep/{session_id}"
VIEW_PATH = "/whep/{session_id}/{viewer_id}"


async def post_offer(request: web.Request) -> web.Response:
    person = auth.require(request, access.LIVE_VIEW, "view live images")
    app = request.app
    session_id = request.match_info["session_id"]
    live = app[sessions_key].session(session_id)
    sdp = await read_sdp(request, app[config_key].server.max_sdp_bytes)
    if live is None:
        forwarded = await app[forwarder_key].to_holder(request, session_id, sdp.encode())
        if forwarded is not None:
            return forwarded
        raise NotFound(f"no live session {session_id}")
    if live.state == SessionState.ENDED:
        raise NotFound(f"session {session_id} is over")
    manager = app[sessions_key]
    viewer_id, answer = await manager.watch(live, sdp, person, request.remote or "?")
    _end_with_login(request, manager, live, viewer_id)
    location = VIEW_PATH.format(session_id=session_id, viewer_id=viewer_id)
    return web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": location, **CORS},
    )


def _end_with_login(
    request: web.Request, manager: SessionManager, live: LiveSession, viewer_id: str
) -> None:
    """The view ends when the login it was opened with does (`LoginWatch`)."""
    view, token = manager.view(live, viewer_id), auth.login_token(request)
    if view is None or token is None:
        return
    end = partial(manager.end_view, live, viewer_id)
    view.on_end.append(request.app[login_watch_key].hold(token, end))


async def delete_view(request: web.Request) -> web.Response:
    """End a view: only the person who opened it may (its URL is no capability of its own);
    a URL replayed after the view ended finds nothing."""
    person = auth.require(request, access.LIVE_VIEW, "view live images")
    app = request.app
    session_id, viewer_id = request.match_info["session_id"], request.match_info["viewer_id"]
    live = app[sessions_key].session(session_id)
    if live is None:
        forwarded = await app[forwarder_key].to_holder(request, session_id)
        if forwarded is not None:
            return forwarded
    manager = app[sessions_key]
    view = manager.view(live, viewer_id) if live is not None else None
    if live is None or view is None:
        raise NotFound("no such view (it may have ended with its session)")
    if view.person != person.name:
        raise Forbidden("this view was opened by someone else: only they may end it")
    await manager.end_view(live, viewer_id)
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
