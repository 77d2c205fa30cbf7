"""Live sessions: one per device from the press to the stop, across link losses.

A session is live while a connection carries its media, interrupted when the link is lost
(ICE/DTLS failure, or no media for `media_timeout_seconds`, which is how a 4G drop looks),
and ended by a button press, a WHIP DELETE, or a grace window without reconnection. A POST
from the same device during the grace window continues the session with a new connection
(and new segments); so does a POST while the old connection has gone silent, since the
camera knows its link dropped before the gateway can.

`SessionManager` is the only writer of session state. It owns each session's recorder and
relay and hooks every connection up to them; it is the connections' `ConnectionOwner`
(their link losses, telemetry and background work come here), and the keeper of live views.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiortc import RTCPeerConnection

from ..clock import Clock
from ..config import Config
from ..errors import BadRequest, BodycamError, Conflict, Forbidden, NotFound
from ..evidence.keyring import Keyring
from ..live.base import EventStream, Positions, SessionRegistry
from ..logs import Bound, bind
from ..media.disk import DiskGuard
from ..media.recorder import SessionRecorder
from ..media.relay import Relay
from ..metrics import Metrics
from ..models import (
    SYSTEM,
    Action,
    Actor,
    Device,
    EndReason,
    Entry,
    Position,
    Session,
    SessionState,
    User,
)
from ..store import Store
from . import telemetry
from .alerts import Alerts, LiveFacts
from .connection import Connection, MediaInfo, accept_offer
from .tracking import Tracker
from .viewers import open_view

logger = logging.getLogger(__name__)

# A camera streams 30 frames a second: a second without any, and a new offer from the same
# device, means its link dropped and it knows before the media timeout tells the gateway.
RECONNECT_SILENCE_SECONDS = 1.0
LOGGED_INVALID_TELEMETRY = 5  # then one line in a hundred


@dataclass
class LiveSession:
    """In-memory state of a session that is not over."""

    id: str
    device: Device
    state: SessionState
    started_at: datetime
    recorder: SessionRecorder | None = None
    connection: Connection | None = None
    interrupted_at: datetime | None = None
    grace_task: asyncio.Task[None] | None = None
    resource_id: str = ""  # WHIP resource of the latest connection
    battery_percent: float | None = None
    invalid_telemetry: int = 0
    tasks: set[asyncio.Future[Any]] = field(default_factory=set)
    codecs: tuple[str, str] = ("", "")  # video, audio of the latest connection
    relay: Relay = field(init=False)
    log: Bound = field(init=False)

    def __post_init__(self) -> None:
        self.relay = Relay(self.id, self.request_keyframe)
        self.log = bind(logger, session_id=self.id, device_id=self.device.id)

    def request_keyframe(self) -> None:
        if self.connection is not None:
            self.connection.request_keyframe()


class SessionManager:
    """Creates, continues and ends sessions; the only writer of session state."""

    def __init__(
        self,
        config: Config,
        store: Store,
        metrics: Metrics,
        clock: Clock,
        tracker: Tracker,
        registry: SessionRegistry,
        events: EventStream,
        positions: Positions,
        keyring: Keyring,
        disk: DiskGuard | None = None,
    ) -> None:
        self.config = config
        self.disk = disk  # recording's free-space floor (None: never checked)
        self.keyring = keyring
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.tracker = tracker
        self.registry = registry  # which node holds which session, for the other nodes
        # this process's run of the node: what holds our sessions in the store (a takeover
        # by another node, or a new run after this one was declared dead, changes it)
        self.run = registry.node.run or registry.node.id
        self._runs = {self.run}  # every run of this process (rehold_all makes a new one)
        self.alerts = Alerts(store, events, positions, clock, self.describe)
        self._sessions: dict[str, LiveSession] = {}  # by session id, until ended
        self._by_device: dict[str, LiveSession] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._ending: set[asyncio.Task[Any]] = set()  # tasks inside end(), for shutdown

    def session(self, session_id: str) -> LiveSession | None:
        return self._sessions.get(session_id)

    def live_sessions(self) -> list[LiveSession]:
        return list(self._sessions.values())

    def holds_device(self, device_id: str) -> bool:
        """This node holds a session of the device (live or in its grace window)."""
        return device_id in self._by_device

    def viewers(self) -> int:
        return sum(len(live.relay) for live in self._sessions.values())

    # shutdown

    async def close_all(self) -> None:
        """Shut down: end nothing, but seal every segment (sessions resume after restart)."""
        # Ends already under way (a button, a DELETE) finish first: they seal and write.
        pending = [t for live in self._sessions.values() for t in live.tasks]
        await asyncio.gather(*pending, *self._ending, return_exceptions=True)
        for live in list(self._sessions.values()):
            if live.grace_task is not None:
                live.grace_task.cancel()
            if live.connection is not None:
                await live.connection.close()
            await live.relay.close()
            if live.recorder is not None:
                await live.recorder.close()
        self._sessions.clear()
        self._by_device.clear()

    # WHIP

    async def publish(self, device: Device, offer_sdp: str) -> tuple[str, str, Session]:
        """Accept a WHIP offer: returns (resource id, answer SDP, session)."""
        async with self._lock(device.id):
            previous = await self._take_over(device)
            pc, media = await accept_offer(offer_sdp)
            resource_id = secrets.token_urlsafe(24)
            live: LiveSession | None = None
            if (
                previous is not None
                and self._sessions.get(previous.id) is previous
                and previous.state == SessionState.INTERRUPTED
            ):
                live = await self._continue(previous, resource_id, media)
            if live is None:  # another node's session to take over, or a new one (also when
                # the grace window closed while the offer was applied)
                live = await self._adopt(device, resource_id, media)
            if live is None:
                live = await self._create(device, resource_id, media)
            answer = await self._connect(live, resource_id, pc, media)
            session = await self.store.run(self.store.get_session, live.id)
            assert session is not None
            return resource_id, answer, session

    async def _take_over(self, device: Device) -> LiveSession | None:
        """The device's session to continue, if any; its old link, if silent, is lost."""
        live = self._by_device.get(device.id)
        if live is None or live.state != SessionState.LIVE:
            return live
        conn = live.connection
        silence = min(RECONNECT_SILENCE_SECONDS, self.config.sessions.media_timeout_seconds)
        if conn is not None and not conn.silent_for(silence):
            raise Conflict(
                f"device {device.id} already has a live session ({live.id});"
                " end it with DELETE on its session URL first"
            )
        await self._link_lost(live, "new offer while the old link was silent")
        return live

    async def _continue(
        self, live: LiveSession, resource_id: str, media: MediaInfo
    ) -> LiveSession | None:
        """A reconnect within the grace window: the same session, live again. None: another
        node took it over meanwhile (it is let go here)."""
        if not await self._resume_in_store(live, resource_id):
            await self.drop(live, "taken over by another node during its grace window")
            return None
        assert live.grace_task is not None
        live.grace_task.cancel()
        live.state = SessionState.LIVE
        lost, live.interrupted_at = live.interrupted_at, None
        now = self.clock.now()
        gap = Entry(
            Action.SESSION_RESUMED,
            SYSTEM,
            now,
            session_id=live.id,
            time_from=lost or now,
            time_to=now,
            detail=f"on {self.run}: the link was lost, nothing was recorded in between",
        )
        await self.store.run(self.store.record, gap)
        # the camera may come back with other codecs (a new offer, a new answer)
        await self.store.run(
            self.store.update_session_media, live.id, media.video_codec, media.audio_codec
        )
        self.metrics.reconnects.inc()
        live.log.info("session %s: device %s reconnected", live.id, live.device.id)
        return live

    async def _adopt(
        self, device: Device, resource_id: str, media: MediaInfo
    ) -> LiveSession | None:
        """The device's session that another run of a node holds (it died, it was restarted,
        or the camera could not reach it): taken over within its grace window, the gap in
        its recording written in the register. None: nothing to take over."""
        held = await self.store.run(self.store.live_session_of_device, device.id)
        if held is None:
            return None
        now = self.clock.now()
        lost = held.interrupted_at or now  # still live in the store: its node died just now
        grace = timedelta(seconds=self.config.sessions.grace_seconds)
        if now - lost >= grace:
            end = self.store.end_session
            if await self.store.run(end, held.id, EndReason.LINK_LOST, lost + grace, held.node):
                await self.alerts.announce(held.id)
            return None
        resume = self.store.resume_session
        if not await self.store.run(resume, held.id, resource_id, now, self.run, held.node):
            raise Conflict(f"device {device.id}: session {held.id} was taken over meanwhile")
        await self.store.run(
            self.store.update_session_media, held.id, media.video_codec, media.audio_codec
        )
        live = LiveSession(
            held.id,
            device,
            SessionState.LIVE,
            held.started_at,
            battery_percent=held.battery_percent,
            invalid_telemetry=held.invalid_telemetry,
        )
        self._register(live)
        gap = Entry(
            Action.SESSION_TAKEN_OVER,
            SYSTEM,
            now,
            session_id=held.id,
            time_from=lost,
            time_to=now,
            detail=f"from {held.node or 'an earlier gateway'} by {self.run}",
        )
        await self.store.run(self.store.record, gap)
        self.metrics.takeovers.inc()
        live.log.warning(
            "session %s: taken over from %s (no media for %.1f s); device %s",
            held.id,
            held.node or "an earlier gateway",
            (now - lost).total_seconds(),
            device.id,
        )
        return live

    async def _create(self, device: Device, resource_id: str, media: MediaInfo) -> LiveSession:
        """A new session (the officer pressed the button), and its alert."""
        now = self.clock.now()
        live = LiveSession(_new_session_id(now), device, SessionState.LIVE, now)
        record = Session(
            live.id,
            device.id,
            device.officer,
            SessionState.LIVE,
            now,
            video_codec=media.video_codec,
            audio_codec=media.audio_codec,
            node=self.run,
        )
        await self.store.run(self.store.create_session, record, resource_id)
        await self.store.run(self.store.add_alert, live.id, now)
        self._register(live)
        self.metrics.sessions_started.inc()
        live.log.info(
            "session %s: device %s (%s) is live, %s",
            live.id,
            device.id,
            device.officer or "no officer",
            media.video_codec,
        )
        return live

    async def _connect(
        self, live: LiveSession, resource_id: str, pc: RTCPeerConnection, media: MediaInfo
    ) -> str:
        """Hook the connection up to the session's recorder and relay, answer, go live."""
        if live.recorder is None:
            key = await self.store.run(self.keyring.session_key, live.id, True)
            live.recorder = SessionRecorder(
                live.id,
                self.config.recordings_dir,
                self.store,
                self.config.recording,
                self.metrics,
                self.clock.monotonic,
                key,
                self.run,
                self.disk,
            )
        recorder, relay = live.recorder, live.relay
        timeline = recorder.start_connection(
            media.kinds, media.video_codec, live.request_keyframe, media.parameter_sets
        )
        relay.new_connection(media.parameter_sets)
        conn = Connection(
            resource_id,
            live.id,
            pc,
            media,
            self,
            (recorder.push, relay.push),
            timeline.on_sender_report,
            self.metrics,
            self.clock.monotonic,
            self.config.sessions.media_timeout_seconds,
            lean=self.config.media.receive == "lean",
        )
        try:
            answer = await conn.answer()
        except Exception as err:  # noqa: BLE001 aiortc raises what its state machine meets
            await conn.close()
            await self._link_lost(live, f"answer failed: {err}")
            raise BadRequest(f"could not answer the offer: {err}") from None
        live.connection = conn
        live.resource_id = resource_id
        live.codecs = (media.video_codec, media.audio_codec)
        await self._claim(live)
        conn.start()
        self.metrics.sessions_live.set(self._count_live())
        await self.alerts.announce(live.id)
        return answer

    async def delete(self, resource_id: str, device: Device) -> Session:
        """WHIP DELETE: end the session the resource belongs to (idempotent).

        A DELETE on the URL of a connection that a reconnect has since replaced ends
        nothing: the camera is live again on its new URL. On the URL of the session's last
        connection it ends the session, even while the link is down (the officer pressed
        stop during a drop and the camera says so when its network returns).
        """
        session = await self.store.run(self.store.session_of_resource, resource_id)
        if session is None:
            raise NotFound("no WHIP session at this URL")
        if session.device_id != device.id:
            raise Forbidden(f"this WHIP session belongs to another device than {device.id}")
        async with self._lock(device.id):  # not while a POST of the same device is half done
            live = self._sessions.get(session.id)
            if live is not None and resource_id == live.resource_id:
                await self.end(live, EndReason.DELETE)
        ended = await self.store.run(self.store.get_session, session.id)
        assert ended is not None
        return ended

    def _lock(self, device_id: str) -> asyncio.Lock:
        return self._locks.setdefault(device_id, asyncio.Lock())

    async def end(self, live: LiveSession, reason: EndReason) -> None:
        """End a session for good: close its connection, seal its recording."""
        if self._sessions.get(live.id) is not live:
            return
        self._unregister(live)
        current = asyncio.current_task()
        if current is not None:
            self._ending.add(current)
            current.add_done_callback(self._ending.discard)
        await self._close_media(live)
        if not await self._end_in_store(live, reason):
            self.tracker.forget(live.id)  # another node took it over: its to end
            await self._release(live)
            self.metrics.sessions_live.set(self._count_live())
            live.log.warning("session %s: held by another node now, not ended here", live.id)
            return
        self.tracker.end(live.id)
        await self._release(live)
        await self.store.run(
            self.store.update_session_telemetry,
            live.id,
            live.battery_percent,
            live.invalid_telemetry,
        )
        self.metrics.sessions_live.set(self._count_live())
        await self.alerts.announce(live.id)
        live.log.info("session %s: ended (%s)", live.id, reason)

    # live views (WHEP)

    async def watch(
        self, live: LiveSession, offer: str, person: User, remote: str
    ) -> tuple[str, str]:
        """A new viewer of a live session: returns (viewer id, SDP answer).

        The view's start and end (however it ends) are register entries of the person.
        """
        viewer, answer = await open_view(
            live.codecs, offer, f"{person.name}@{remote}", live.relay.keyframe_wanted
        )
        relay, pc, store, clock = live.relay, viewer.pc, self.store, self.clock
        assert pc is not None
        started, actor = clock.now(), Actor.of(person)
        detail = f"view {viewer.id[:8]}"

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and relay.viewer(viewer.id) is viewer:
                await relay.remove(viewer.id)
                live.log.info(
                    "session %s: viewer %s left (%s)", live.id, viewer.label, pc.connectionState
                )

        async def view_ended() -> None:
            end = clock.now()
            entry = Entry(
                Action.LIVE_VIEW_END,
                actor,
                end,
                session_id=live.id,
                time_from=started,
                time_to=end,
                detail=detail,
            )
            await store.run(store.record, entry)

        start = Entry(
            Action.LIVE_VIEW_START,
            actor,
            started,
            session_id=live.id,
            detail=f"{detail} from {remote}",
        )
        await store.run(store.record, start)
        viewer.on_end = view_ended
        relay.add(viewer)
        live.log.info(
            "session %s: viewer %s joined (%d watching)", live.id, viewer.label, len(relay)
        )
        return viewer.id, answer

    # what connections tell their owner (ConnectionOwner)

    def spawn(self, conn: Connection, make: Callable[[], Awaitable[object]]) -> None:
        live = self._sessions.get(conn.session_id)
        if live is not None:
            self._spawn(live, make)

    async def link_lost(self, conn: Connection, why: str) -> None:
        live = self._sessions.get(conn.session_id)
        if live is not None and live.connection is conn and live.state == SessionState.LIVE:
            await self._link_lost(live, why)

    def telemetry(self, conn: Connection, raw: str | bytes) -> None:
        """A telemetry message: validated, counted, then acted on. A bad one is counted
        and logged; it never reaches aiortc's DTLS loop as an exception."""
        live = self._sessions.get(conn.session_id)
        if live is None:
            return
        try:
            message = telemetry.parse(raw, self.config.telemetry.max_message_bytes)
        except Exception as err:  # a parser bug must not cost the connection
            if not isinstance(err, telemetry.TelemetryError):
                live.log.exception("session %s: telemetry parser failed", live.id)
            self._invalid_telemetry(live, err)
            return
        self.metrics.telemetry.labels(type(message).__name__.lower()).inc()
        match message:
            case Position():
                if live.state == SessionState.LIVE and live.connection is conn:
                    self.position(live, message)
            case telemetry.Battery(percent=percent):
                self.battery(live, percent)
            case telemetry.ButtonPress():
                live.log.info("session %s: button pressed on %s", live.id, live.device.id)
                self._spawn(live, lambda: self.end(live, EndReason.BUTTON))
            case telemetry.Hello(serial=serial, model=model, firmware=firmware):
                store = self.store
                self._spawn(
                    live,
                    lambda: store.run(
                        store.set_device_identity, live.device.id, serial, model, firmware
                    ),
                )

    def _invalid_telemetry(self, live: LiveSession, err: Exception) -> None:
        live.invalid_telemetry += 1
        self.metrics.telemetry_invalid.inc()
        n = live.invalid_telemetry
        if n <= LOGGED_INVALID_TELEMETRY or n % 100 == 0:
            live.log.warning("session %s: invalid telemetry (#%d): %s", live.id, n, err)

    def battery(self, live: LiveSession, percent: float) -> None:
        """A battery reading: the alert is announced again when the whole percent changes."""
        before, live.battery_percent = live.battery_percent, percent
        if before is None or int(before) != int(percent):
            self._spawn(live, lambda: self.alerts.announce(live.id))

    def position(self, live: LiveSession, fix: Position) -> None:
        """A GPS fix of a live session: to the tracker, and to the store with its verdict."""
        street = self._street(live.id)
        try:
            verdict: str = self.tracker.fix(live.id, live.device, fix)
            if self._street(live.id) != street:  # the alert shows the street
                self._spawn(live, lambda: self.alerts.announce(live.id))
        except Exception:  # geolocation must never cost the session or the fix
            live.log.exception("session %s: tracking failed on a GPS fix", live.id)
            verdict = "unfiltered"
        self._spawn(live, lambda: self.store.run(self.store.add_position, live.id, fix, verdict))

    def describe(self, session_id: str) -> LiveFacts | None:
        """What this node knows of a session it holds, for its alert: state, battery,
        street (None: not held here)."""
        live = self._sessions.get(session_id)
        if live is None:
            return None
        return LiveFacts(live.state, live.battery_percent, self.tracker.address(session_id))

    def _street(self, session_id: str) -> str | None:
        officer = self.tracker.officer(session_id)
        return officer.address.street if officer and officer.address else None

    # the link

    async def _link_lost(self, live: LiveSession, why: str) -> None:
        conn, live.connection = live.connection, None
        now = self.clock.now()
        live.state = SessionState.INTERRUPTED
        live.interrupted_at = now
        if conn is not None:
            await conn.close()
        if live.recorder is not None:
            live.recorder.end_connection()
        interrupted = await self.store.run(self.store.interrupt_session, live.id, now, self.run)
        # not interrupted by this call: still ours if a node that judged this one dead did it
        if not interrupted and await self._held_here(live) is None:
            await self.drop(live, f"{why}, and another node holds it now")
            return
        grace = self.config.sessions.grace_seconds
        live.grace_task = asyncio.create_task(self._expire(live, timedelta(seconds=grace)))
        live.grace_task.add_done_callback(_log_failure)
        self.metrics.sessions_live.set(self._count_live())
        await self.alerts.announce(live.id)
        live.log.warning(
            "session %s: link lost (%s); waiting %.0f s for device %s to reconnect",
            live.id,
            why,
            grace,
            live.device.id,
        )

    async def drop(self, live: LiveSession, why: str) -> None:
        """Let a session go without writing its state: another node holds it now. Its
        segments are sealed here all the same (they join its chain in sealing order)."""
        if self._sessions.get(live.id) is not live:
            return
        self._unregister(live)
        await self._close_media(live)
        self.tracker.forget(live.id)
        await self._release(live)
        self.metrics.sessions_live.set(self._count_live())
        live.log.warning("session %s: let go (%s)", live.id, why)

    async def _held_here(self, live: LiveSession) -> str | None:
        """The run of this process that holds the session in the store (after rehold_all,
        maybe an earlier one); None: another node took it over, or it is over."""
        held = await self.store.run(self.store.get_session, live.id)
        if held is None or held.state == SessionState.ENDED or held.node not in self._runs:
            return None
        return held.node

    async def _resume_in_store(self, live: LiveSession, resource_id: str) -> bool:
        """Live again in the store, held by this run, while this process holds it."""
        if (node := await self._held_here(live)) is None:
            return False
        now, resume = self.clock.now(), self.store.resume_session
        return await self.store.run(resume, live.id, resource_id, now, self.run, node)

    async def _end_in_store(self, live: LiveSession, reason: EndReason) -> bool:
        """End the session in the store while this process holds it."""
        if (node := await self._held_here(live)) is None:
            return False
        now, end = self.clock.now(), self.store.end_session
        return await self.store.run(end, live.id, reason, now, node)

    async def _release(self, live: LiveSession) -> None:
        """No more claim on the session in the live state (one another node made is kept)."""
        try:
            await self.registry.release(live.id)
        except BodycamError as err:  # the claim expires by itself
            live.log.warning("session %s: claim not released: %s", live.id, err)

    async def _close_media(self, live: LiveSession) -> None:
        """Close the session's connection, viewers and recording (sealing its segments)."""
        if live.grace_task is not None and live.grace_task is not asyncio.current_task():
            live.grace_task.cancel()  # (not when the grace task itself is ending the session)
        conn, live.connection = live.connection, None
        if conn is not None:
            await conn.close()
        await live.relay.close()
        if live.recorder is not None:
            await live.recorder.close()
        live.state = SessionState.ENDED  # here, whatever the store says

    async def rehold_all(self, run: str) -> None:
        """This process was declared dead by the other nodes (it was paused, or cut from
        the database) and carries on as `run`: it keeps each session none of them took
        over, with the segments it is writing, and lets the others go."""
        old, self.run = self.run, run
        self._runs.add(run)
        for live in list(self._sessions.values()):
            # (new segments are this run's from now on, whatever the store answers)
            if live.recorder is not None:
                live.recorder.node = run
            async with self._lock(live.device.id):  # not while its POST or end is half done
                if self._sessions.get(live.id) is not live:
                    continue
                state = live.state.value
                if await self.store.run(self.store.rehold_session, live.id, run, old, state):
                    await self.alerts.announce(live.id)
                    live.log.warning("session %s: kept, this node declared dead", live.id)
                else:
                    await self.drop(live, "taken over while this node was declared dead")

    async def _expire(self, live: LiveSession, after: timedelta) -> None:
        await asyncio.sleep(max(0.0, after.total_seconds()))
        if live.state == SessionState.INTERRUPTED:
            await self.end(live, EndReason.LINK_LOST)

    def _spawn(self, live: LiveSession, make: Callable[[], Awaitable[object]]) -> None:
        """Run a coroutine for a session, keeping a reference until it is done."""
        task = asyncio.ensure_future(make())
        live.tasks.add(task)
        task.add_done_callback(live.tasks.discard)
        task.add_done_callback(_log_failure)

    async def _claim(self, live: LiveSession) -> None:
        """Tell the other nodes that viewers of this session are to be sent here."""
        try:
            await self.registry.claim(live.id)
        except BodycamError as err:  # never refuse a camera because Redis is away
            live.log.warning("session %s: not announced to other nodes: %s", live.id, err)

    def _register(self, live: LiveSession) -> None:
        self._sessions[live.id] = live
        self._by_device[live.device.id] = live

    def _unregister(self, live: LiveSession) -> None:
        self._sessions.pop(live.id, None)
        if self._by_device.get(live.device.id) is live:
            del self._by_device[live.device.id]

    def _count_live(self) -> int:
        return sum(1 for s in self._sessions.values() if s.state == SessionState.LIVE)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("session task failed", exc_info=task.exception())


def _new_session_id(now: datetime) -> str:
    """Sortable by start time, unguessable: 20261122T101500Z-<96 random bits>."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(12)}"
