"""Live geolocation: each live officer's track, the cameras chosen for them, PTZ cameras aimed.

For every kept GPS fix of a live session: the nearest street, a fresh ranking of cameras
held steady by `hold()`, a `selection` event when the chosen cameras change, and PTZ
cameras of the selection turned toward the officer. A PTZ camera follows one officer at a
time (the first whose selection took it) and never while someone holds it under manual
control, across every node: who may move a camera is decided in the live state
(`live.ptz`), one atomic step per move, and a node that cannot reach it moves nothing.
Camera commands run in the background, newest target first; their failures are logged with
the camera id and never reach the session.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..clock import Clock, iso
from ..config import Config
from ..errors import BadRequest, Conflict, NotFound
from ..geo.geometry import LocalFrame
from ..geo.places import Address, StreetIndex
from ..geo.ptz import Aim, aim
from ..geo.registry import load_cameras
from ..geo.selection import CameraIndex, Choice, Reason, hold
from ..geo.track import Limits, Track, Verdict
from ..live.base import Control, LivePosition, LiveState, LiveStateUnavailable
from ..logs import ids
from ..metrics import Metrics
from ..models import Camera, CameraKind, Device, Position
from ..store import Store
from .vapix import CameraError, Vapix

logger = logging.getLogger(__name__)

# Rank this many cameras per fix, so that `hold` can find the ones it keeps.
RANK_DEPTH = 3
DOWN_SLACK = 4  # rank a few more, to replace cameras that are down
ZOOM_CHANGE = 0.25  # a new zoom is sent when it differs by a quarter
# A session's claim on a PTZ camera, renewed by each of its fixes, lasts this long after
# the last (the session's end lets go at once; a dead node's claims go by themselves).
FOLLOW_SECONDS = 30.0


@dataclass(frozen=True)
class City:
    """The camera registry and the places, ready for queries (rebuilt on import)."""

    cameras: dict[str, Camera]
    index: CameraIndex
    streets: StreetIndex
    version: int

    @classmethod
    def empty(cls) -> City:
        return cls.build(0, [], [], [])

    @classmethod
    async def load(cls, store: Store) -> City:
        """Read the registry and places on the store's thread, build the indexes on another."""
        version, cameras, buildings, streets = await store.run(_read_city, store)
        return await asyncio.to_thread(cls.build, version, cameras, buildings, streets)

    @classmethod
    def build(
        cls,
        version: int,
        cameras: list[Camera],
        buildings: list[Any],
        streets: list[tuple[str, dict[str, Any]]],
    ) -> City:
        frame = _frame(cameras, streets)
        return cls(
            {c.id: c for c in cameras},
            CameraIndex(cameras, buildings, frame),
            StreetIndex(streets, frame),
            version,
        )


def _read_city(
    store: Store,
) -> tuple[int, list[Camera], list[Any], list[tuple[str, dict[str, Any]]]]:
    with store.snapshot():  # an import landing in the middle must not mix two cities
        version, cameras = store.geo_version(), load_cameras(store.camera_features())
        building_rows, street_rows = store.places("building"), store.places("street")
    buildings = []
    for _, text in building_rows:
        geometry = json.loads(text)
        if geometry["type"] == "Polygon":
            buildings.append(geometry["coordinates"])
        else:
            buildings.extend(geometry["coordinates"])
    streets = [(name, json.loads(text)) for name, text in street_rows]
    return version, cameras, buildings, streets


def _frame(cameras: list[Camera], streets: list[tuple[str, dict[str, Any]]]) -> LocalFrame:
    points = [(c.lon, c.lat) for c in cameras]
    if not points:
        for _, geometry in streets:
            coords = geometry["coordinates"]
            points.append(tuple(coords[0] if geometry["type"] == "LineString" else coords[0][0]))
    if not points:
        return LocalFrame(0.0, 0.0)
    return LocalFrame(
        sum(p[1] for p in points) / len(points), sum(p[0] for p in points) / len(points)
    )


@dataclass
class Officer:
    """The geolocation of one live session."""

    session_id: str
    device_id: str
    name: str
    track: Track
    address: Address | None = None
    selection: list[Choice] = field(default_factory=list)


class Tracker:
    """Officers' positions, their camera selections, and the PTZ cameras following them."""

    def __init__(
        self,
        config: Config,
        city: City,
        vapix: Vapix,
        live: LiveState,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.config = config
        self.city = city
        self._vapix = vapix
        self._events = live.events
        self._positions = live.positions
        self._ptz = live.ptz
        self._node = live.node.id
        self._metrics = metrics
        self._clock = clock
        self._limits = Limits(config.geo.max_accuracy_m, config.geo.max_speed_mps)
        self._officers: dict[str, Officer] = {}
        # what this node last learnt from `live.ptz` (for the API: the decisions are there)
        self._owner: dict[str, str] = {}  # PTZ camera id -> session id it follows
        self._controls: dict[str, Control] = {}
        self._sent: dict[str, Aim] = {}  # last position each PTZ camera was sent to
        self._pending: dict[str, tuple[Aim, str]] = {}  # next move per camera, and for whom
        self._aiming: dict[str, asyncio.Task[None]] = {}
        self._ends: dict[str, asyncio.TimerHandle] = {}  # controls granted here: their end
        self._background: set[asyncio.Task[None]] = set()
        self._cut_off = False  # the live state was unreachable at the last move
        # Cameras known to be down are not put on the wall; set by the health monitor.
        self.unavailable: Callable[[str], bool] = lambda camera_id: False

    async def close(self) -> None:
        for handle in self._ends.values():
            handle.cancel()
        tasks = [*self._aiming.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def officer(self, session_id: str) -> Officer | None:
        return self._officers.get(session_id)

    def address(self, session_id: str) -> str | None:
        """The street the officer of a live session is in, as the console shows it."""
        officer = self._officers.get(session_id)
        return str(officer.address) if officer and officer.address else None

    # positions

    def fix(self, session_id: str, device: Device, fix: Position) -> Verdict:
        """A GPS fix of a live session: keep it or not, and act on it."""
        officer = self._officers.get(session_id)
        if officer is None:
            officer = Officer(
                session_id,
                device.id,
                device.officer,
                Track(self._limits, self.config.geo.track_points),
            )
            self._officers[session_id] = officer
        verdict = officer.track.add(fix, self._clock.now())
        self._metrics.positions.labels(verdict.value).inc()
        if verdict not in (Verdict.KEPT, Verdict.RESTART):
            logger.info(
                "session %s: GPS fix left out (%s): %.6f, %.6f ± %.0f m",
                session_id,
                verdict,
                fix.lat,
                fix.lon,
                fix.accuracy_m,
                extra=ids(session_id=session_id, device_id=device.id),
            )
            return verdict
        officer.address = self.city.streets.nearest(fix)
        self._positions.set(
            LivePosition(
                session_id,
                officer.device_id,
                fix.lat,
                fix.lon,
                fix.accuracy_m,
                fix.time,
                str(officer.address) if officer.address else None,
            )
        )
        self._events.publish("position", self._position_event(officer, fix))
        self._select(officer, fix)
        return verdict

    def forget(self, session_id: str) -> None:
        """Another node holds the session now: drop this node's state of it, and leave
        what is shared (the officer's position, the cameras' follow claims) to that node."""
        self._officers.pop(session_id, None)
        for camera_id in [c for c, s in self._owner.items() if s == session_id]:
            del self._owner[camera_id]

    def end(self, session_id: str) -> None:
        """The session is over: forget where the officer is, free the cameras."""
        self._positions.remove(session_id)
        officer = self._officers.pop(session_id, None)
        if officer is None:
            return
        for camera_id in [c for c, s in self._owner.items() if s == session_id]:
            del self._owner[camera_id]
            self._spawn(self._let_go(camera_id, session_id))
        if officer.selection:
            self._events.publish(
                "selection",
                {
                    "session_id": session_id,
                    "cameras": [],
                    "added": [],
                    "removed": [c.camera_id for c in officer.selection],
                },
            )

    def _position_event(self, officer: Officer, fix: Position) -> dict[str, Any]:
        return {
            "session_id": officer.session_id,
            "device_id": officer.device_id,
            "lat": fix.lat,
            "lon": fix.lon,
            "accuracy_m": fix.accuracy_m,
            "time": iso(fix.time),
            "address": str(officer.address) if officer.address else None,
        }

    # selection

    def choices_json(self, choices: list[Choice]) -> list[dict[str, Any]]:
        """Choices as the API and events give them: PTZ cameras with their aim."""
        result = []
        for choice in choices:
            item: dict[str, Any] = {
                "camera_id": choice.camera_id,
                "reason": choice.reason.value,
                "distance_m": choice.distance_m,
                "bearing_deg": choice.bearing_deg,
            }
            camera = self.city.cameras.get(choice.camera_id)
            target = self._target(camera, choice) if camera else None
            if camera is not None:
                item["name"] = camera.name
                item["kind"] = camera.kind.value
            if target is not None:
                item.update(pan=target.pan, tilt=target.tilt, zoom=target.zoom)
                # what the camera is turned to now: the session it follows (this officer's
                # or another's), a person holding it by hand, or neither
                control = self._known_control(choice.camera_id)
                item["following"] = self._owner.get(choice.camera_id)
                item["manual_control"] = control.holder if control else None
            result.append(item)
        return result

    def rank(self, position: Position, limit: int) -> list[Choice]:
        """The best `limit` cameras for a position, leaving out those known to be down."""
        ranked = self.city.index.select(position, limit + DOWN_SLACK)
        return [c for c in ranked if not self.unavailable(c.camera_id)][:limit]

    def _select(self, officer: Officer, fix: Position) -> None:
        limit = self.config.geo.selection_limit
        ranked = self.rank(fix, limit * RANK_DEPTH)
        chosen = hold(officer.selection, ranked, limit)
        before = {c.camera_id: c.reason for c in officer.selection}
        after = {c.camera_id: c.reason for c in chosen}
        officer.selection = chosen
        if before != after:
            self._metrics.selection_changes.inc()
            self._events.publish(
                "selection",
                {
                    "session_id": officer.session_id,
                    "cameras": self.choices_json(chosen),
                    "added": [c for c in after if c not in before],
                    "removed": [c for c in before if c not in after],
                },
            )
        self._follow(officer, chosen)

    # PTZ

    def _target(self, camera: Camera, choice: Choice) -> Aim | None:
        if camera.kind != CameraKind.PTZ or choice.reason == Reason.NEARBY:
            return None
        return aim(camera, choice.distance_m, choice.bearing_deg)

    def _follow(self, officer: Officer, chosen: list[Choice]) -> None:
        mine = {c.camera_id for c in chosen}
        for camera_id in [c for c, s in self._owner.items() if s == officer.session_id]:
            if camera_id not in mine:
                del self._owner[camera_id]
                self._spawn(self._let_go(camera_id, officer.session_id))
        for choice in chosen:
            camera = self.city.cameras.get(choice.camera_id)
            target = self._target(camera, choice) if camera else None
            if camera is None or target is None:
                continue
            follower = self._owner.get(camera.id, officer.session_id)
            if follower != officer.session_id and follower in self._officers:
                continue  # another officer of this node has it (and renews it)
            self._send(camera, target, officer.session_id)  # a move, or the claim renewed

    async def _let_go(self, camera_id: str, session_id: str) -> None:
        try:
            await self._ptz.unfollow(camera_id, session_id)
        except LiveStateUnavailable as err:  # the claim will expire by itself
            logger.warning(
                "camera %s: not let go: %s", camera_id, err, extra=ids(camera_id=camera_id)
            )

    def _send(self, camera: Camera, target: Aim, session_id: str) -> None:
        """Queue a move; one command in flight per camera, the newest target wins."""
        self._pending[camera.id] = (target, session_id)
        if camera.id not in self._aiming:
            task = asyncio.create_task(self._aim_loop(camera))
            self._aiming[camera.id] = task
            task.add_done_callback(lambda _: self._aiming.pop(camera.id, None))

    async def _aim_loop(self, camera: Camera) -> None:
        while (pending := self._pending.pop(camera.id, None)) is not None:
            target, session_id = pending
            if session_id not in self._officers:
                continue  # the session ended while this waited
            if not await self._may_move(camera.id, session_id):
                self._sent.pop(camera.id, None)  # aimed by someone else: afresh when back
                continue
            degrees = self.config.cameras.aim_min_change_deg
            if not target.differs(self._sent.get(camera.id), degrees, ZOOM_CHANGE):
                continue  # the claim renewed; the camera is already there
            try:
                await self._vapix.move(camera, target)
            except CameraError as err:
                self._metrics.ptz_commands.labels("failed").inc()
                self._sent.pop(camera.id, None)  # unknown position: resend next time
                logger.warning(
                    "camera %s: PTZ move failed: %s", camera.id, err, extra=ids(camera_id=camera.id)
                )
                continue
            self._metrics.ptz_commands.labels("sent").inc()
            self._sent[camera.id] = target
            self._events.publish(
                "ptz",
                {
                    "camera_id": camera.id,
                    "session_id": session_id,
                    "pan": target.pan,
                    "tilt": target.tilt,
                    "zoom": target.zoom,
                },
            )

    async def _may_move(self, camera_id: str, session_id: str) -> bool:
        """Claim (or renew) the camera for the session in the live state, every node's."""
        try:
            found = await self._ptz.follow(camera_id, session_id, self._clock.now(), FOLLOW_SECONDS)
        except LiveStateUnavailable as err:
            self._owner.pop(camera_id, None)
            if not self._cut_off:
                logger.error(
                    "PTZ cameras left where they are: who may move them is unknown: %s", err
                )
            self._cut_off = True
            return False
        if self._cut_off:
            logger.info("PTZ cameras: the live state answers again, aiming resumes")
            self._cut_off = False
        if found.control is not None:
            self._controls[camera_id] = found.control
            self._owner.pop(camera_id, None)
        else:
            self._controls.pop(camera_id, None)
            if found.session_id is not None:
                self._owner[camera_id] = found.session_id
        return found.granted

    # manual control

    def _known_control(self, camera_id: str) -> Control | None:
        """The manual control of a camera as this node last learnt it (for display)."""
        control = self._controls.get(camera_id)
        return control if control is not None and control.until > self._clock.now() else None

    async def controls(self) -> list[Control]:
        """The PTZ cameras under manual control now (on any node), for a console's snapshot."""
        ptz = [c.id for c in self.city.cameras.values() if c.kind == CameraKind.PTZ]
        found = await asyncio.gather(*(self.control(cid) for cid in ptz))
        return [c for c in found if c is not None]

    async def control(self, camera_id: str) -> Control | None:
        """Who holds manual control of a camera now, if anyone (on any node)."""
        control = await self._ptz.control(camera_id, self._clock.now())
        if control is None:
            self._controls.pop(camera_id, None)
        else:
            self._controls[camera_id] = control
        return control

    async def take_control(
        self,
        camera_id: str,
        holder: str,
        seconds: float,
        notice: str = "",
        since: datetime | None = None,
    ) -> Control:
        """Hold a PTZ camera under manual control (renewing one's own hold is allowed);
        `since`: when the holder's event began (now when None), `notice`: the national
        police's, which every console shows with the time left."""
        camera = self._ptz_camera(camera_id)
        limit = self.config.cameras.manual_control_max_seconds
        if not holder or len(holder) > 200:
            raise BadRequest("holder: who takes control (1 to 200 characters) is required")
        if not 1 <= seconds <= limit:
            raise BadRequest(f"seconds: between 1 and {limit:.0f}, got {seconds!r}")
        now = self._clock.now()
        until = now + timedelta(seconds=seconds)
        wanted = Control(camera.id, holder, until, self._node, since or now, notice)
        control = await self._ptz.take_control(wanted, now)
        if control != wanted:
            self._controls[camera.id] = control
            raise Conflict(
                f"camera {camera.id} is under manual control by {control.holder}"
                f" until {iso(control.until)}"
            )
        self._controls[camera.id] = control
        self._owner.pop(camera.id, None)
        self._pending.pop(camera.id, None)
        self._sent.pop(camera.id, None)
        self._end_at(control, seconds)
        logger.info(
            "camera %s: manual control by %s until %s",
            camera.id,
            holder,
            control.until,
            extra=ids(camera_id=camera.id),
        )
        self._events.publish("ptz_control", {**control.to_json(), "taken": True})
        return control

    def _end_at(self, control: Control, seconds: float) -> None:
        """At the control's end, this node (which granted it) removes it and says so."""
        previous = self._ends.pop(control.camera_id, None)
        if previous is not None:
            previous.cancel()

        def due() -> None:
            self._ends.pop(control.camera_id, None)
            self._spawn(self._expire(control))

        self._ends[control.camera_id] = asyncio.get_running_loop().call_later(seconds, due)

    async def _expire(self, control: Control) -> None:
        now = self._clock.now()
        if control.until > now:  # the clock runs behind the loop's timer: wait for it
            if control.camera_id not in self._ends:  # (renewed meanwhile: that one ends it)
                self._end_at(control, (control.until - now).total_seconds() + 0.01)
            return
        try:
            if await self._ptz.end_expired(control, now):
                self._ended(control, "expired")
        except LiveStateUnavailable as err:  # whoever looks next still sees it ended
            logger.warning(
                "camera %s: end of manual control not written: %s",
                control.camera_id,
                err,
                extra=ids(camera_id=control.camera_id),
            )

    async def release_control(self, camera_id: str, holder: str) -> None:
        ended, other = await self._ptz.release_control(camera_id, holder, self._clock.now())
        if other is not None:
            self._controls[camera_id] = other
            raise Conflict(f"camera {camera_id} is under manual control by {other.holder}")
        if ended is not None:
            handle = self._ends.pop(camera_id, None)
            if handle is not None:
                handle.cancel()
            self._ended(ended, "released")

    def _ended(self, control: Control, why: str) -> None:
        self._controls.pop(control.camera_id, None)
        # The camera was turned by hand: the next fix aims it afresh, even if unchanged.
        self._sent.pop(control.camera_id, None)
        logger.info(
            "camera %s: manual control by %s %s",
            control.camera_id,
            control.holder,
            why,
            extra=ids(camera_id=control.camera_id),
        )
        self._events.publish("ptz_control", {**control.to_json(), "taken": False, "why": why})

    async def manual_move(self, camera_id: str, holder: str, target: Aim) -> None:
        """Move a camera for whoever holds its manual control."""
        camera = self._ptz_camera(camera_id)
        current = await self.control(camera.id)
        if current is None or current.holder != holder:
            raise Conflict(f"camera {camera.id}: take manual control before moving it")
        await self._vapix.move(camera, target)
        self._sent[camera.id] = target

    def _ptz_camera(self, camera_id: str) -> Camera:
        camera = self.city.cameras.get(camera_id)
        if camera is None:
            raise NotFound(f"camera {camera_id} is not in the registry")
        if camera.kind != CameraKind.PTZ:
            raise BadRequest(f"camera {camera_id} is {camera.kind.value}, not PTZ")
        return camera
