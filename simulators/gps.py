"""A GPS receiver walking an officer along a GeoJSON route, with realistic noise, at 1 Hz.

Everything here is a pure function of the time since the walk began and a seed: the true
position along the route, the slowly wandering error a phone-grade receiver shows (3-8 m of
reported accuracy, errors correlated over tens of seconds), and the occasional bad fix
(multipath near buildings: 30-80 m accuracy and an error of that size). Tests ask for the fix
at any time without running a clock.
"""

from __future__ import annotations

import bisect
import datetime
import itertools
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

EARTH_RADIUS = 6_371_008.8
WALKING_SPEED = 1.4
RUNNING_SPEED = 3.0
BAD_FIX_RATE = 0.02
DEFAULT_POINT = (49.1196, 6.1764)  # place d'Armes, Metz
ROUTES_DIR = Path(__file__).parent / "data" / "routes"

End = Literal["loop", "bounce"]


@dataclass(frozen=True)
class Position:
    """A point on Earth in degrees (WGS 84)."""

    lat: float
    lon: float


@dataclass(frozen=True)
class Route:
    """A polyline to walk, in travel order."""

    name: str
    points: tuple[Position, ...]

    def __post_init__(self) -> None:
        if len(self.points) < 2:
            raise ValueError(f"route {self.name!r} needs at least two points")


@dataclass(frozen=True)
class Fix:
    """One GPS fix as the camera reports it."""

    lat: float
    lon: float
    accuracy: float
    heading: float
    speed: float
    time: datetime.datetime
    bad: bool = False

    def message(self) -> dict[str, Any]:
        """The telemetry message for this fix (time in ISO 8601 UTC with Z, to the ms)."""
        stamp = self.time.astimezone(datetime.UTC).isoformat(timespec="milliseconds")
        return {
            "type": "position",
            "lat": round(self.lat, 7),
            "lon": round(self.lon, 7),
            "accuracy": round(self.accuracy, 1),
            "heading": round(self.heading, 1) % 360.0,
            "speed": round(self.speed, 2),
            "time": stamp.replace("+00:00", "Z"),
        }


def parse_route(document: dict[str, Any], name: str = "route") -> Route:
    """A route from a GeoJSON LineString: bare geometry, Feature or first one in a collection."""
    geometry = document
    if document.get("type") == "FeatureCollection":
        lines = [
            f["geometry"]
            for f in document.get("features", [])
            if (f.get("geometry") or {}).get("type") == "LineString"
        ]
        if not lines:
            raise ValueError(f"route {name!r} has no LineString feature")
        geometry = lines[0]
    elif document.get("type") == "Feature":
        geometry = document.get("geometry") or {}
    if geometry.get("type") != "LineString":
        raise ValueError(f"route {name!r} is a {geometry.get('type')}, not a LineString")
    # GeoJSON (RFC 7946) orders coordinates lon, lat: this is the one place they swap.
    points = tuple(Position(lat=float(c[1]), lon=float(c[0])) for c in geometry["coordinates"])
    return Route(name=name, points=points)


def load_route(path: str | Path) -> Route:
    """Read a route from a GeoJSON file, or by name from the demo routes (`metz-mandela`)."""
    file = Path(path)
    if not file.exists() and not file.suffix:
        file = ROUTES_DIR / f"{path}.geojson"
    with file.open(encoding="utf-8") as stream:
        return parse_route(json.load(stream), name=file.stem)


def to_metres(origin: Position, point: Position) -> tuple[float, float]:
    """East and north offsets in metres of `point` from `origin` (local flat Earth)."""
    east = math.radians(point.lon - origin.lon) * math.cos(math.radians(origin.lat))
    north = math.radians(point.lat - origin.lat)
    return east * EARTH_RADIUS, north * EARTH_RADIUS


def from_metres(origin: Position, east: float, north: float) -> Position:
    """The point `east`, `north` metres from `origin` (inverse of `to_metres`)."""
    lat = origin.lat + math.degrees(north / EARTH_RADIUS)
    lon = origin.lon + math.degrees(east / (EARTH_RADIUS * math.cos(math.radians(origin.lat))))
    return Position(lat=lat, lon=lon)


def distance(a: Position, b: Position) -> float:
    """Distance in metres between two nearby points."""
    east, north = to_metres(a, b)
    return math.hypot(east, north)


def _unit(seed: int, *key: object) -> float:
    """A uniform number in [0, 1) fixed by the seed and key: randomness as a pure function."""
    return random.Random(f"{seed}:{':'.join(map(str, key))}").random()


@dataclass(frozen=True)
class Walk:
    """Someone walking (or running) a route at constant speed, or standing still without one."""

    route: Route | None = None
    speed: float = WALKING_SPEED
    end: End = "loop"
    seed: int = 0
    standing_at: Position = Position(*DEFAULT_POINT)

    def __post_init__(self) -> None:
        if self.speed < 0:
            raise ValueError("speed must not be negative")
        if self.end not in ("loop", "bounce"):
            raise ValueError(f"end must be 'loop' or 'bounce', not {self.end!r}")

    def _path(self) -> tuple[Position, list[tuple[float, float]], list[float]]:
        assert self.route is not None
        points = list(self.route.points)
        # Looping walks back from the last point to the first unless the route is closed.
        if self.end == "loop" and points[0] != points[-1]:
            points.append(points[0])
        origin = points[0]
        xy = [to_metres(origin, p) for p in points]
        lengths = [0.0]
        for (x0, y0), (x1, y1) in itertools.pairwise(xy):
            lengths.append(lengths[-1] + math.hypot(x1 - x0, y1 - y0))
        return origin, xy, lengths

    def truth(self, t: float) -> tuple[Position, float, float]:
        """True (position, heading in degrees, speed m/s) `t` seconds after the walk began."""
        if self.route is None or self.speed == 0:
            return self.standing_at, 0.0, 0.0
        origin, xy, lengths = self._path()
        total = lengths[-1]
        if total == 0:
            return origin, 0.0, 0.0
        travelled = self.speed * max(t, 0.0)
        forward = True
        if self.end == "loop":
            along = travelled % total
        else:
            along = travelled % (2 * total)
            if along > total:
                along, forward = 2 * total - along, False
        i = min(bisect.bisect_right(lengths, along) - 1, len(xy) - 2)
        # Skip repeated points: they have no direction.
        while lengths[i + 1] == lengths[i] and i + 2 < len(lengths):
            i += 1
        (x0, y0), (x1, y1) = xy[i], xy[i + 1]
        part = (along - lengths[i]) / (lengths[i + 1] - lengths[i] or 1.0)
        east, north = x0 + part * (x1 - x0), y0 + part * (y1 - y0)
        heading = math.degrees(math.atan2(x1 - x0, y1 - y0)) % 360.0
        if not forward:
            heading = (heading + 180.0) % 360.0
        return from_metres(origin, east, north), heading, self.speed

    def _wander(self, t: float, axis: str) -> float:
        # Sum of slow sines with seeded phases: a smooth error in [-1, 1] that changes over
        # tens of seconds, like the correlated error of a real receiver.
        periods = (41.0, 97.0, 233.0)
        total = 0.0
        for n, period in enumerate(periods):
            phase = 2 * math.pi * _unit(self.seed, axis, n)
            total += math.sin(2 * math.pi * t / period + phase)
        return total / len(periods)

    def fix(self, t: float, when: datetime.datetime) -> Fix:
        """The fix reported `t` seconds after the walk began, stamped `when`."""
        true, heading, speed = self.truth(t)
        accuracy = 5.5 + 2.5 * self._wander(t, "accuracy")
        # The error stays inside the reported accuracy (within ~0.85 of it).
        east = 0.6 * accuracy * self._wander(t, "east")
        north = 0.6 * accuracy * self._wander(t, "north")
        second = math.floor(t)
        bad = _unit(self.seed, "bad", second) < BAD_FIX_RATE
        if bad:
            accuracy = 30.0 + 50.0 * _unit(self.seed, "bad-accuracy", second)
            angle = 2 * math.pi * _unit(self.seed, "bad-angle", second)
            size = accuracy * (0.3 + 0.6 * _unit(self.seed, "bad-size", second))
            east, north = size * math.sin(angle), size * math.cos(angle)
        position = from_metres(true, east, north)
        jitter = _unit(self.seed, "speed", second) - 0.5
        reported_speed = max(0.0, speed + 0.2 * jitter) if speed else 0.1 * abs(jitter)
        reported_heading = (heading + 6.0 * (_unit(self.seed, "heading", second) - 0.5)) % 360.0
        return Fix(
            lat=position.lat,
            lon=position.lon,
            accuracy=accuracy,
            heading=reported_heading,
            speed=reported_speed,
            time=when,
            bad=bad,
        )
