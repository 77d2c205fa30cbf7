"""Live sessions: one per device from the press to the stop, across link losses.

A session is live while a connection carries its media, interrupted when the link is lost
(ICE/DTLS failure, or no media for `media_timeout_seconds`, which is how a 4G drop looks),
and ended by a button press, a WHIP DELETE, or a grace window without reconnection. A POST
from the same device during the grace window continues the session with a new connection
(and new segments); so does a POST while the old connection has gone silent, since the
camera knows its link dropped before the gateway can.

`SessionManager` is the only writer of session state, and the keeper of live views. A
session's media (its connection, recorder and relay) lives where its `MediaHost` puts it,
in this process or in a media worker; the manager is its `MediaOwner` (link losses,
telemetry, views ending and background work come here).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..clock import Clock
from ..config import Config
from ..errors import BodycamError, Conflict, Forbidden, NotFound
from ..evidence.keyring import Keyring
from ..live.base import EventStream, Positions, SessionRegistry
from ..logs import Bound, bind
from ..media.disk import DiskGuard
from ..media.recorder import StoreCatalogue
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
from .connection import MediaInfo
from .media import LocalHost, MediaHost, Offer, SessionMedia
from .tracking import Tracker

logger = logging.getLogger(__name__)

# A camera streams 30 frames a second: a second without any, and a new offer from the same
# device, means its link dropped and it knows before the media timeout tells the gateway.
RECONNECT_SILENCE_SECONDS = 1.0
LOGGED_INVALID_TELEMETRY = 5  # then one line in a hundred


@dataclass
class View:
    """A live view (WHEP) of a session, as the register knows it."""

    id: str
    label: str  # name@address of the person watching
    actor: Actor
    started: datetime
    on_end: list[Callable[[], object]] = field(default_factory=list)  # when it ends
    opened: asyncio.Event = field(default_factory=asyncio.Event)  # its start registered

    @property
    def person(self) -> str:
        return self.label.rpartition("@")[0]


@dataclass
class LiveSession:
    """In-memory state of a session that is not over."""

    id: str
    device: Device
    state: SessionState
    started_at: datetime
    media: SessionMedia | None = None  # its connection, recorder and viewers' relay
    interrupted_at: datetime | None = None
    grace_task: asyncio.Task[None] | None = None
    resource_id: str = ""  # WHIP resource of the latest connection
    battery_percent: float | None = None
    invalid_telemetry: int = 0
    tasks: set[asyncio.Future[Any]] = field(default_factory=set)
    codecs: tuple[str, str] = ("", "")  # video, audio of the latest connection
    views: dict[str, View] = field(default_factory=dict)  # by viewer id
    log: Bound = field(init=False)

    def __post_init__(self) -> None:
        self.log = bind(logger, session_id=self.id, device_id=self.device.id)


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
        host: MediaHost | None = None,
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
        self.runs = {self.run}  # every run of this process (rehold_all makes a new one)
        self.alerts = Alerts(store, events, positions, clock, self.describe)
        self._sessions: dict[str, LiveSession] = {}  # by session id, until ended
        self._by_device: dict[str, LiveSession] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._ending: set[asyncio.Task[Any]] = set()  # tasks inside end(), for shutdown
        # every open view, by viewer id: its end is registered even once its session is over
        self._views: dict[str, tuple[LiveSession, View]] = {}
        # where sessions' media lives (by default in this process)
        self.host: MediaHost = host or LocalHost(
            config, StoreCatalogue(store), metrics, clock.monotonic, self, disk
        )

    def session(self, session_id: str) -> LiveSession | None:
        return self._sessions.get(session_id)

    def live_sessions(self) -> list[LiveSession]:
        return list(self._sessions.values())

    def holds_device(self, device_id: str) -> bool:
        """This node holds a session of the device (live or in its grace window)."""
        return device_id in self._by_device

    def viewers(self) -> int:
        return sum(len(live.views) for live in self._sessions.values())

    # shutdown

    async def close_all(self) -> None:
        """Shut down: end nothing, but seal every segment (sessions resume after restart)."""
        # Ends already under way (a button, a DELETE) finish first: they seal and write.
        pending = [t for live in self._sessions.values() for t in live.tasks]
        await asyncio.gather(*pending, *self._ending, return_exceptions=True)
        for live in list(self._sessions.values()):
            if live.grace_task is not None:
                live.grace_task.cancel()
            if live.media is not None:
                await live.media.close()
        self._sessions.clear()
        self._by_device.clear()

    # WHIP

    async def publish(self, device: Device, offer_sdp: str) -> tuple[str, str, Session]:
        """Accept a WHIP offer: returns (resource id, answer SDP, session)."""
        async with self._lock(device.id):
            previous = await self._take_over(device)
            offer = await self.host.offer(offer_sdp, previous.media if previous else None)
            resource_id = secrets.token_urlsafe(24)
            try:
                live = await self._session_for(device, previous, resource_id, offer.info)
            except BaseException:
                await self.host.discard(offer)
                raise
            answer = await self._connect(live, resource_id, offer)
            session = await self.store.run(self.store.get_session, live.id)
            assert session is not None
            return resource_id, answer, session

    async def _session_for(
        self, device: Device, previous: LiveSession | None, resource_id: str, media: MediaInfo
    ) -> LiveSession:
        """The session this offer belongs to: continued, taken over, or new."""
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
        return live

    async def _take_over(self, device: Device) -> LiveSession | None:
        """The device's session to continue, if any; its old link, if silent, is lost."""
        live = self._by_device.get(device.id)
        if live is None or live.state != SessionState.LIVE:
            return live
        silence = min(RECONNECT_SILENCE_SECONDS, self.config.sessions.media_timeout_seconds)
        silent = live.media is None or await live.media.silent_for(silence)
        if not _is_live(live):  # (its link was lost while a media worker answered)
            return live
        if not silent:
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

    async def _connect(self, live: LiveSession, resource_id: str, offer: Offer) -> str:
        """Answer the offer as the session's connection, recorded and relayed; go live."""
        if live.media is not None and live.media.place != offer.place:
            # its media was in a worker that died: what it wrote is sealed by recovery
            await live.media.close()
            live.media = None
        if live.media is None:
            try:
                key = await self.store.run(self.keyring.session_key, live.id, True)
                live.media = await self.host.open(live.id, key, self.run, offer.place)
            except BaseException:
                await self.host.discard(offer)
                raise
        try:
            answer = await live.media.connect(offer, resource_id)
        except BodycamError as err:  # (BadRequest, or 503: its media worker went away)
            await self._link_lost(live, f"answer failed: {err}")
            raise
        media = offer.info
        live.resource_id = resource_id
        live.codecs = (media.video_codec, media.audio_codec)
        await self._claim(live)
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
        label = f"{person.name}@{remote}"
        view = View(secrets.token_urlsafe(16), label, Actor.of(person), self.clock.now())
        live.views[view.id] = view
        self._views[view.id] = (live, view)
        try:
            assert live.media is not None
            answer = await live.media.watch(view.id, offer, label, live.codecs)
            start = Entry(
                Action.LIVE_VIEW_START,
                view.actor,
                view.started,
                session_id=live.id,
                detail=f"view {view.id[:8]} from {remote}",
            )
            await self.store.run(self.store.record, start)
        except BaseException:
            live.views.pop(view.id, None)
            self._views.pop(view.id, None)
            raise
        finally:
            view.opened.set()
        live.log.info("session %s: viewer %s joined (%d watching)", live.id, label, len(live.views))
        return view.id, answer

    def view(self, live: LiveSession, viewer_id: str) -> View | None:
        return live.views.get(viewer_id)

    async def end_view(self, live: LiveSession, viewer_id: str) -> None:
        """End a view; its end is registered (`view_ended`) before this returns."""
        view = live.views.get(viewer_id)
        if view is not None and live.media is not None:
            await live.media.end_view(viewer_id)

    # what a session's media tells its owner (MediaOwner)

    async def view_ended(self, session_id: str, viewer_id: str) -> None:
        live, view = self._views.get(viewer_id, (None, None))
        if live is None or view is None or live.id != session_id:
            return  # (a view of another session is never ended by this one's media)
        del self._views[viewer_id]
        live.views.pop(viewer_id, None)
        await view.opened.wait()  # (its start is registered first)
        for release in view.on_end:
            release()
        end = self.clock.now()
        entry = Entry(
            Action.LIVE_VIEW_END,
            view.actor,
            end,
            session_id=session_id,
            time_from=view.started,
            time_to=end,
            detail=f"view {viewer_id[:8]}",
        )
        await self.store.run(self.store.record, entry)

    # what connections tell their owner (ConnectionOwner)

    def spawn(self, session_id: str, make: Callable[[], Awaitable[object]]) -> None:
        live = self._sessions.get(session_id)
        if live is not None:
            self._spawn(live, make)

    async def link_lost(self, session_id: str, resource_id: str, why: str) -> None:
        live = self._sessions.get(session_id)
        if live is not None and live.resource_id == resource_id and live.state == SessionState.LIVE:
            await self._link_lost(live, why)

    def telemetry(self, session_id: str, resource_id: str, raw: str | bytes) -> None:
        """A telemetry message: validated, counted, then acted on. A bad one is counted
        and logged; it never reaches aiortc's DTLS loop as an exception."""
        live = self._sessions.get(session_id)
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
                if live.state == SessionState.LIVE and live.resource_id == resource_id:
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
        if live.state == SessionState.INTERRUPTED and live.grace_task is not None:
            return  # lost already (a second report, from a worker's pipe, say)
        now = self.clock.now()
        live.state = SessionState.INTERRUPTED
        live.interrupted_at = now
        if live.media is not None:
            await live.media.end_connection()
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
        if held is None or held.state == SessionState.ENDED or held.node not in self.runs:
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
        if live.media is not None:
            await live.media.close()
        live.state = SessionState.ENDED  # here, whatever the store says

    async def rehold_all(self, run: str) -> None:
        """This process was declared dead by the other nodes (it was paused, or cut from
        the database) and carries on as `run`: it keeps each session none of them took
        over, with the segments it is writing, and lets the others go."""
        old, self.run = self.run, run
        self.runs.add(run)
        for live in list(self._sessions.values()):
            # (new segments are this run's from now on, whatever the store answers)
            if live.media is not None:
                await live.media.set_node(run)
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


def _is_live(live: LiveSession) -> bool:
    return live.state == SessionState.LIVE


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("session task failed", exc_info=task.exception())


def _new_session_id(now: datetime) -> str:
    """Sortable by start time, unguessable: 20261122T101500Z-<96 random bits>."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(12)}"
