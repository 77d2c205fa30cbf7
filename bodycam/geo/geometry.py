"""Geometry in local metres: the one conversion between (lat, lon) and the plane, and what
a camera can see (field-of-view sector, minus building shadows, minus privacy masks).

Convention (STYLE.md, habit 8): code speaks `Position(lat, lon)`; GeoJSON and shapely speak
(lon, lat) or (x, y); `LocalFrame` is the only place that converts. The plane is an
equirectangular projection around the frame's origin: x east, y north, in metres. Over a
city (a few km) its error is a few centimetres, far below GPS accuracy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shapely import Point, Polygon, unary_union
from shapely.geometry.base import BaseGeometry

from ..models import Position

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
ARC_STEP_DEG = 5.0  # sector arcs are drawn with a vertex every 5 degrees


@dataclass(frozen=True)
class LocalFrame:
    """A tangent plane around (origin_lat, origin_lon), in metres."""

    origin_lat: float
    origin_lon: float

    def to_xy(self, position: Position) -> tuple[float, float]:
        """(x east, y north) in metres of a position."""
        return self.lonlat_to_xy(position.lon, position.lat)

    def lonlat_to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        """The same from GeoJSON's (lon, lat) order."""
        scale = math.cos(math.radians(self.origin_lat))
        x = math.radians(lon - self.origin_lon) * EARTH_RADIUS_M * scale
        y = math.radians(lat - self.origin_lat) * EARTH_RADIUS_M
        return x, y

    def xy_to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        scale = math.cos(math.radians(self.origin_lat))
        lon = self.origin_lon + math.degrees(x / (EARTH_RADIUS_M * scale))
        lat = self.origin_lat + math.degrees(y / EARTH_RADIUS_M)
        return lon, lat

    def polygon(self, rings: Sequence[Sequence[Sequence[float]]]) -> Polygon:
        """A GeoJSON Polygon's coordinates ([[lon, lat], ...] rings) in the plane."""
        exterior, *holes = rings
        return Polygon(
            [self.lonlat_to_xy(p[0], p[1]) for p in exterior],
            [[self.lonlat_to_xy(p[0], p[1]) for p in hole] for hole in holes],
        )


def bearing_deg(dx: float, dy: float) -> float:
    """Compass bearing (degrees clockwise from north, [0, 360)) of a plane vector."""
    return math.degrees(math.atan2(dx, dy)) % 360.0


def sector(x: float, y: float, heading_deg: float, fov_deg: float, range_m: float) -> Polygon:
    """The field of view of a camera at (x, y): a circular sector (a disc from 360°)."""
    if fov_deg >= 360.0:
        steps = int(360 / ARC_STEP_DEG)
        return Polygon([_polar(x, y, i * ARC_STEP_DEG, range_m) for i in range(steps)])
    start = heading_deg - fov_deg / 2.0
    steps = max(2, math.ceil(fov_deg / ARC_STEP_DEG))
    arc = [_polar(x, y, start + fov_deg * i / steps, range_m) for i in range(steps + 1)]
    return Polygon([(x, y), *arc])


def _polar(x: float, y: float, bearing: float, distance: float) -> tuple[float, float]:
    rad = math.radians(bearing)
    return x + distance * math.sin(rad), y + distance * math.cos(rad)


def shadow(x: float, y: float, building: Polygon, range_m: float) -> Polygon:
    """What a building hides from a viewpoint at (x, y), out to `range_m`.

    Each edge of the footprint casts a quadrilateral away from the viewpoint, projected
    beyond the range; their union with the footprint is the hidden area. A viewpoint inside
    a footprint (a camera on a wall, mapped a little inside) sees past that building.
    """
    far = range_m * 4.0
    quads = [building]
    coords = list(building.exterior.coords)
    for (ax, ay), (bx, by) in itertools.pairwise(coords):
        quads.append(
            Polygon(
                [(ax, ay), (bx, by), _away(x, y, bx, by, far), _away(x, y, ax, ay, far)]
            ).buffer(0)
        )
    return unary_union(quads)


def _away(x: float, y: float, px: float, py: float, far: float) -> tuple[float, float]:
    dx, dy = px - x, py - y
    length = math.hypot(dx, dy) or 1e-9
    return px + dx / length * far, py + dy / length * far


def visible_area(
    x: float,
    y: float,
    heading_deg: float,
    fov_deg: float,
    range_m: float,
    buildings: Iterable[Polygon],
    masks: Iterable[Polygon] = (),
) -> BaseGeometry:
    """The camera's field of view, minus what buildings hide, minus its privacy masks."""
    area: BaseGeometry = sector(x, y, heading_deg, fov_deg, range_m)
    viewpoint = Point(x, y)
    hidden = [
        shadow(x, y, b, range_m)
        for b in buildings
        if b.intersects(area) and not b.contains(viewpoint)
    ]
    hidden += [m for m in masks if m.intersects(area)]
    if hidden:
        area = area.difference(unary_union(hidden))
    return area
