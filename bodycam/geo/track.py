"""An officer's track from the camera's GPS fixes: poor fixes and impossible jumps left out.

A fix is kept when it is accurate enough, not dated in the future, newer than the last kept
one, and reachable from it at a plausible speed (the two accuracy radii are given the
benefit of the doubt). One bad fix must not freeze the track either: when several rejected
fixes in a row (jumps, or fixes older than the last kept one) agree with each other, the
earlier kept fix was the outlier, and the track starts again from them.

Decisions are pure: `judge` takes the last kept fix and the new one; `Track` keeps state.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from geopy.distance import geodesic

from ..models import Position


class Verdict(enum.StrEnum):
    KEPT = "kept"
    INACCURATE = "inaccurate"  # accuracy radius over the limit
    STALE = "stale"  # not newer than the last kept fix (duplicate, out of order)
    FUTURE = "future"  # dated ahead of the gateway's clock (receiver clock glitch)
    JUMP = "jump"  # would need an impossible speed
    RESTART = "restart"  # kept: rejected jumps agreed, the track starts again from them


@dataclass(frozen=True)
class Limits:
    """What counts as a usable fix."""

    max_accuracy_m: float = 50.0
    max_speed_mps: float = 60.0  # 216 km/h: a patrol car, not a teleport
    restart_after: int = 3  # consecutive agreeing jumps that move the track
    future_seconds: float = 30.0  # how far ahead of the gateway's clock a fix may be dated


def judge(last: Position | None, fix: Position, limits: Limits, now: datetime) -> Verdict:
    """Whether `fix` can follow `last` on the track (RESTART is decided by `Track`)."""
    if fix.accuracy_m > limits.max_accuracy_m:
        return Verdict.INACCURATE
    if (fix.time - now).total_seconds() > limits.future_seconds:
        return Verdict.FUTURE  # kept, it would make every later fix look stale
    if last is None:
        return Verdict.KEPT
    elapsed = (fix.time - last.time).total_seconds()
    if elapsed <= 0:
        return Verdict.STALE
    if not plausible(last, fix, elapsed, limits.max_speed_mps):
        return Verdict.JUMP
    return Verdict.KEPT


def plausible(a: Position, b: Position, elapsed: float, max_speed_mps: float) -> bool:
    """Whether going from a to b in `elapsed` seconds is possible, given both accuracies."""
    distance = geodesic((a.lat, a.lon), (b.lat, b.lon)).m
    return bool(distance - a.accuracy_m - b.accuracy_m <= max_speed_mps * elapsed)


class Track:
    """The kept fixes of one live session, newest last (bounded)."""

    def __init__(self, limits: Limits, max_points: int = 3600) -> None:
        self.limits = limits
        self.points: deque[Position] = deque(maxlen=max_points)
        self.rejected: dict[Verdict, int] = dict.fromkeys(
            (Verdict.INACCURATE, Verdict.FUTURE, Verdict.STALE, Verdict.JUMP), 0
        )
        self._jumps: list[Position] = []  # consecutive fixes that could not follow, oldest first

    @property
    def current(self) -> Position | None:
        return self.points[-1] if self.points else None

    def add(self, fix: Position, now: datetime) -> Verdict:
        """Judge a fix received at `now` (the gateway's clock) and keep it if it is good."""
        verdict = judge(self.current, fix, self.limits, now)
        if verdict == Verdict.KEPT:
            self._jumps.clear()
            self.points.append(fix)
            return verdict
        # Stale fixes that agree among themselves restart the track too: the kept fix that
        # makes them stale was dated wrong.
        if verdict in (Verdict.JUMP, Verdict.STALE) and self._restarts_from(fix):
            self.points.append(fix)
            return Verdict.RESTART
        self.rejected[verdict] += 1
        return verdict

    def _restarts_from(self, fix: Position) -> bool:
        """Keep `fix` if it and the jumps before it form a plausible path of their own."""
        if self._jumps and not _follows(self._jumps[-1], fix, self.limits):
            self._jumps.clear()
        self._jumps.append(fix)
        if len(self._jumps) < self.limits.restart_after:
            return False
        self._jumps.clear()
        return True


def _follows(a: Position, b: Position, limits: Limits) -> bool:
    elapsed = (b.time - a.time).total_seconds()
    return elapsed > 0 and plausible(a, b, elapsed, limits.max_speed_mps)
