"""WHEP: viewers pull a live session, relayed as the camera encoded it.

Viewers are people logged in with a role that may see live images (cookie or Bearer
login token, `access`). A session held by another gateway node (the camera is connected
there) is answered with a 307 to that node, found in the shared session registry.

`POST /whep/{session_id}` with an SDP offer (recvonly video and audio) answers `201` with
the gateway's answer and a `Location` for the view (`/whep/{session_id}/{viewer_id}`, 128
random bits); `DELETE` on it ends the view. The answer offers the session's own codecs
only (the relay does not transcode): a viewer that cannot receive them gets `422`.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.sdp import SessionDescription

from .. import access
from ..errors import BadRequest, NotFound, Unprocessable
from ..media.relay import Viewer
from ..models import Action, Entry, SessionState
from . import auth
from .appkeys import clock_key, config_key, live_key, sessions_key, store_key
from .sessions import LiveSession
from .whip import CORS, preflight, read_sdp

logger = logging.getLogger(__name__)

WHEP_PATH = "/whep/{session_id}"
VIEW_PATH = "/whep/{session_id}/{viewer_id}"


def _codecs(kind: str, name: str) -> list[Any]:
    capabilities = RTCRtpSender.getCapabilities(kind)
    assert capabilities is not None
    return [c for c in capabilities.codecs if c.name.lower() == name.lower()]


def _check_offer(sdp: str) -> None:
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as err:  # aiortc's parser raises whatever the bad line provokes
        raise BadRequest(f"SDP offer could not be parsed: {err}") from None
    videos = [m for m in parsed.media if m.kind == "video" and m.port != 0]
    if not any(m.direction in ("recvonly", "sendrecv") for m in videos):
        raise Unprocessable("the offer does not receive video (direction must be recvonly)")


async def open_view(live: LiveSession, offer: str, label: str) -> tuple[Viewer, str]:
    """A viewer of a live session, with the SDP answer for it."""
    if "m=" not in offer:
        raise BadRequest("body is not an SDP offer (no m= line)")
    _check_offer(offer)
    video, audio = live.codecs
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    viewer = Viewer(secrets.token_urlsafe(16), label, pc)
    try:
        # As for WHIP: aiortc answers in the offer's codec order unless transceivers with
        # preferences exist before the offer is applied; here they must be the session's.
        for kind, name in (("video", video), ("audio", audio)):
            if name:
                transceiver = pc.addTransceiver(viewer.tracks[kind], direction="sendonly")
                transceiver.setCodecPreferences(_codecs(kind, name))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
    except Exception as err:  # aiortc raises what its negotiation meets
        await pc.close()
        raise Unprocessable(f"cannot answer this viewer with {video}/{audio}: {err}") from None
    sent = {t.kind for t in pc.getTransceivers() if t.sender.track is not None and t._codecs}
    if "video" not in sent:
        await pc.close()
        raise Unprocessable(f"the viewer cannot receive {video}, the session's video codec")
    return viewer, pc.localDescription.sdp


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
    label = f"{person.name}@{request.remote or '?'}"
    viewer, answer = await open_view(live, sdp, label)
    relay = live.relay
    assert viewer.pc is not None
    pc = viewer.pc

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed") and relay.viewer(viewer.id) is viewer:
            await relay.remove(viewer.id)
            logger.info("session %s: viewer %s left (%s)", session_id, label, pc.connectionState)

    await auth.record(
        request,
        Action.LIVE_VIEW_START,
        person,
        session_id=session_id,
        detail=f"view {viewer.id[:8]} from {request.remote or '?'}",
    )
    store, clock = app[store_key], app[clock_key]
    started = clock.now()

    async def view_ended() -> None:
        entry = Entry(
            Action.LIVE_VIEW_END,
            auth.actor(person),
            clock.now(),
            session_id=session_id,
            time_from=started,
            time_to=clock.now(),
            detail=f"view {viewer.id[:8]}",
        )
        await store.run(store.record, entry)

    viewer.on_end = view_ended
    relay.add(viewer)
    logger.info("session %s: viewer %s joined (%d watching)", session_id, label, len(relay))
    location = VIEW_PATH.format(session_id=session_id, viewer_id=viewer.id)
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
    logger.info("session %s: a view ended", session_id)
    return web.Response(status=200, headers=CORS)


async def options(request: web.Request) -> web.Response:
    return preflight("DELETE, OPTIONS" if "viewer_id" in request.match_info else "POST, OPTIONS")


def add_routes(app: web.Application) -> None:
    app.router.add_post(WHEP_PATH, post_offer)
    app.router.add_route("OPTIONS", WHEP_PATH, options)
    app.router.add_delete(VIEW_PATH, delete_view)
    app.router.add_route("OPTIONS", VIEW_PATH, options)
