"""Points and fixes given in metres around a fixed origin, for the geo tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bodycam.geo.geometry import LocalFrame
from bodycam.models import Position

FRAME = LocalFrame(49.1196, 6.1764)  # place d'Armes, Metz
T0 = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)


def at(x: float, y: float) -> tuple[float, float]:
    """(lat, lon) of a point x metres east, y metres north of the origin."""
    lon, lat = FRAME.xy_to_lonlat(x, y)
    return lat, lon


def fix(x: float, y: float, seconds: float = 0.0, accuracy: float = 5.0) -> Position:
    """A GPS fix at (x, y) metres, `seconds` after T0."""
    lat, lon = at(x, y)
    return Position(lat, lon, accuracy, T0 + timedelta(seconds=seconds))


def line(*points: tuple[float, float]) -> dict:
    """A GeoJSON LineString through points given in metres."""
    return {"type": "LineString", "coordinates": [list(reversed(at(x, y))) for x, y in points]}
