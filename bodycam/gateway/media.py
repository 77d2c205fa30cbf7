"""Where a session's media lives: its camera's connection, its recorder and its relay to
viewers, in this process (`LocalHost`, `LocalMedia`) or in a media worker process
(`gateway.workers`, which runs a `LocalHost` of its own).

`SessionManager` holds the policy (who may publish or watch, the session's state, the
register) and speaks to a session's media only through `SessionMedia`; the media speaks
back through `MediaOwner`: the link is lost, a telemetry message came, a view ended, run
this for me. A connection is named by its WHIP resource id, a view by its viewer id: an
owner ignores what a replaced connection or an ended view still says.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from aiortc import RTCPeerConnection

from ..config import Config
from ..errors import BadRequest
from ..logs import bind
from ..media.disk import FreeSpace
from ..media.recorder import Catalogue, SessionRecorder
from ..media.relay import Relay
from ..metrics import Metrics
from .connection import Connection, MediaInfo, accept_offer
from .viewers import open_view

logger = logging.getLogger(__name__)

IN_PROCESS = -1  # `Offer.place` of media in this process (else a worker's index)


class MediaOwner(Protocol):
    """What a session's media tells whoever holds the session (`SessionManager`)."""

    async def link_lost(self, session_id: str, resource_id: str, why: str) -> None:
        """The connection `resource_id` failed or went silent: it is closed."""

    def telemetry(self, session_id: str, resource_id: str, raw: str | bytes) -> None:
        """A message on the telemetry channel of connection `resource_id`, as received."""

    async def view_ended(self, session_id: str, viewer_id: str) -> None:
        """A view ended, however it ended (closed, failed, its session over)."""

    def spawn(self, session_id: str, make: Callable[[], Awaitable[object]]) -> None:
        """Run a coroutine on the session's behalf."""


@dataclass
class Offer:
    """A camera's offer applied to a new peer connection, not yet answered."""

    info: MediaInfo
    place: int  # IN_PROCESS, or the index of the worker holding the peer connection
    pc: RTCPeerConnection | None = None  # in this process
    handle: str = ""  # in a worker: its name for the peer connection


class SessionMedia(Protocol):
    """One session's media, wherever it lives."""

    place: int

    async def connect(self, offer: Offer, resource_id: str) -> str:
        """Answer `offer` (from `MediaHost.offer` on this media's place) as the session's
        connection from now on; its frames go to the recorder and the viewers. Returns the
        SDP answer; BadRequest if it cannot be answered (the connection is then closed)."""

    async def silent_for(self, seconds: float) -> bool:
        """No connection, or no media on it for `seconds`."""

    async def end_connection(self) -> None:
        """Close the connection (its link is lost) and the segment it was writing."""

    async def watch(self, viewer_id: str, offer: str, label: str, codecs: tuple[str, str]) -> str:
        """A new viewer of the session's (video, audio) `codecs`: the SDP answer for it."""

    async def end_view(self, viewer_id: str) -> None:
        """End a view (`MediaOwner.view_ended` follows)."""

    async def set_node(self, node: str) -> None:
        """New segments are written by this run of the node from now on."""

    async def close(self) -> None:
        """End the connection and every view; every segment sealed when this returns."""


class MediaHost(Protocol):
    """Where sessions' media is made: this process, or a pool of media workers."""

    async def offer(self, sdp: str, near: SessionMedia | None) -> Offer:
        """Apply a camera's offer to a new peer connection, where `near` lives if given
        (a session's connections stay with its recorder), else where there is most room.
        BadRequest or Unprocessable, saying why, for an offer that cannot be recorded."""

    async def discard(self, offer: Offer) -> None:
        """An offer that will not be answered: its peer connection closed."""

    async def open(self, session_id: str, key: bytes, node: str, place: int) -> SessionMedia:
        """The media of a session (its recorder, under `key`), at `place`."""


class LocalHost:
    """Sessions' media in this process."""

    def __init__(
        self,
        config: Config,
        catalogue: Catalogue,
        metrics: Metrics,
        monotonic: Callable[[], float],
        owner: MediaOwner,
        disk: FreeSpace | None = None,
    ) -> None:
        self.config = config
        self._catalogue = catalogue
        self.metrics = metrics
        self.monotonic = monotonic
        self._disk = disk
        self.owner = owner

    async def offer(self, sdp: str, near: SessionMedia | None) -> Offer:
        pc, info = await accept_offer(sdp)
        return Offer(info, IN_PROCESS, pc)

    async def discard(self, offer: Offer) -> None:
        if offer.pc is not None:
            await offer.pc.close()

    async def open(self, session_id: str, key: bytes, node: str, place: int) -> LocalMedia:
        recorder = SessionRecorder(
            session_id,
            self.config.recordings_dir,
            self._catalogue,
            self.config.recording,
            self.metrics,
            self.monotonic,
            key,
            node,
            self._disk,
        )
        return LocalMedia(session_id, recorder, self)


class LocalMedia:
    """A session's media in this process; the owner of its connections."""

    place = IN_PROCESS

    def __init__(self, session_id: str, recorder: SessionRecorder, host: LocalHost) -> None:
        self.session_id = session_id
        self.recorder = recorder
        self.relay = Relay(session_id, self.request_keyframe)
        self.connection: Connection | None = None
        self._host = host
        self._log = bind(logger, session_id=session_id)

    def request_keyframe(self) -> None:
        if self.connection is not None:
            self.connection.request_keyframe()

    async def connect(self, offer: Offer, resource_id: str) -> str:
        assert offer.pc is not None
        host, info = self._host, offer.info
        timeline = self.recorder.start_connection(
            info.kinds, info.video_codec, self.request_keyframe, info.parameter_sets
        )
        self.relay.new_connection(info.parameter_sets)
        conn = Connection(
            resource_id,
            self.session_id,
            offer.pc,
            info,
            self,
            (self.recorder.push, self.relay.push),
            timeline.on_sender_report,
            host.metrics,
            host.monotonic,
            host.config.sessions.media_timeout_seconds,
            lean=host.config.media.receive == "lean",
        )
        try:
            answer = await conn.answer()
        except Exception as err:  # noqa: BLE001 aiortc raises what its state machine meets
            await conn.close()
            self.recorder.end_connection()
            raise BadRequest(f"could not answer the offer: {err}") from None
        self.connection = conn
        conn.start()
        return answer

    async def silent_for(self, seconds: float) -> bool:
        return self.connection is None or self.connection.silent_for(seconds)

    async def end_connection(self) -> None:
        conn, self.connection = self.connection, None
        if conn is not None:
            await conn.close()
        self.recorder.end_connection()

    async def watch(self, viewer_id: str, offer: str, label: str, codecs: tuple[str, str]) -> str:
        viewer, answer = await open_view(
            codecs, offer, label, self.relay.keyframe_wanted, viewer_id
        )
        relay, pc, log = self.relay, viewer.pc, self._log
        assert pc is not None

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and relay.viewer(viewer.id) is viewer:
                await relay.remove(viewer.id)
                log.info(
                    "session %s: viewer %s left (%s)",
                    self.session_id,
                    viewer.label,
                    pc.connectionState,
                )

        viewer.on_end = partial(self._host.owner.view_ended, self.session_id, viewer.id)
        relay.add(viewer)
        return answer

    async def end_view(self, viewer_id: str) -> None:
        await self.relay.remove(viewer_id)

    async def set_node(self, node: str) -> None:
        self.recorder.node = node

    async def close(self) -> None:
        await self.end_connection()
        await self.relay.close()
        await self.recorder.close()

    # ConnectionOwner: what its connections say, passed on with their name

    async def link_lost(self, conn: Connection, why: str) -> None:
        if conn is self.connection:
            await self._host.owner.link_lost(self.session_id, conn.resource_id, why)

    def telemetry(self, conn: Connection, raw: str | bytes) -> None:
        self._host.owner.telemetry(self.session_id, conn.resource_id, raw)

    def spawn(self, conn: Connection, make: Callable[[], Awaitable[object]]) -> None:
        self._host.owner.spawn(self.session_id, make)
