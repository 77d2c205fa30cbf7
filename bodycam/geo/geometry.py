"""Geometry in local metres: the one conversion between (lat, lon) and the plane, and what
a camera can see (field-of-view sector, minus building shadows, minus privacy masks).

Convention (STYLE.md, habit 8): code speaks `Position(lat, lon)`; GeoJSON and shapely speak
(lon, lat) or (x, y); `LocalFrame` is the only place that converts. The plane is an
equirectangular projection around the frame's origin: x east, y north, in metres. Over a
city (a few km) its error is a few centimetres, far below GPS accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely import Polygon, unary_union
from shapely.geometry.base import BaseGeometry

from ..models import Position

Geometries = NDArray[Any]  # a numpy array of shapely geometries (dtype object)

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

    def lonlat_to_xy_arrays(
        self, lon: NDArray[np.float64], lat: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The same for arrays of coordinates; the same operations, so the same floats."""
        scale = math.cos(math.radians(self.origin_lat))
        x = np.radians(lon - self.origin_lon) * EARTH_RADIUS_M * scale
        y = np.radians(lat - self.origin_lat) * EARTH_RADIUS_M
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

    def polygons(self, polygons: Iterable[Sequence[Sequence[Sequence[float]]]]) -> Geometries:
        """Many GeoJSON Polygons' coordinates in the plane at once, as `polygon` makes each."""
        # Building 50,000 footprints one `Polygon` at a time takes seconds of shapely's Python
        # wrappers; one conversion and two constructor calls over flat arrays take a fraction.
        lons: list[float] = []
        lats: list[float] = []
        ring_of_point: list[int] = []
        polygon_of_ring: list[int] = []
        for n, rings in enumerate(polygons):
            for ring in rings:
                ring_of_point += [len(polygon_of_ring)] * len(ring)
                polygon_of_ring.append(n)
                lons += [p[0] for p in ring]
                lats += [p[1] for p in ring]
        if not polygon_of_ring:
            return np.empty(0, dtype=object)
        x, y = self.lonlat_to_xy_arrays(np.array(lons), np.array(lats))
        rings_array = shapely.linearrings(np.column_stack([x, y]), indices=ring_of_point)
        return shapely.polygons(rings_array, indices=polygon_of_ring)


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


def shadow(x: float, y: float, building: Polygon, range_m: float) -> BaseGeometry:
    """What a building hides from a viewpoint at (x, y), out to `range_m`.

    Each edge of the footprint casts a quadrilateral away from the viewpoint, projected
    beyond the range; their union with the footprint is the hidden area. A viewpoint inside
    a footprint (a camera on a wall, mapped a little inside) sees past that building.
    """
    return unary_union([building, *_shadow_quads(x, y, _geometries([building]), range_m)])


def _shadow_quads(x: float, y: float, buildings: Geometries, range_m: float) -> Geometries:
    """The quadrilateral each edge of each footprint's exterior casts away from (x, y)."""
    # All the edges of all the footprints at once, as arrays: per edge, a Python loop and a
    # `Polygon` each made the import of a city's cameras take minutes.
    far = range_m * 4.0
    coords, ring = shapely.get_coordinates(
        shapely.get_exterior_ring(buildings), return_index=True
    )
    edge = ring[1:] == ring[:-1]  # consecutive vertices of the same ring
    a, b = coords[:-1][edge], coords[1:][edge]
    quads = np.stack([a, b, _away(x, y, b, far), _away(x, y, a, far)], axis=1)
    # buffer(0): an edge in line with the viewpoint casts a degenerate quad; this drops it
    return shapely.buffer(shapely.polygons(quads), 0)


def _away(x: float, y: float, points: NDArray[np.float64], far: float) -> NDArray[np.float64]:
    """Each point pushed `far` further along the ray from (x, y) through it."""
    delta = points - (x, y)
    length = np.hypot(delta[:, 0], delta[:, 1])
    length[length == 0.0] = 1e-9
    return points + delta / length[:, np.newaxis] * far


def _geometries(items: Iterable[BaseGeometry]) -> Geometries:
    """A numpy array of geometries (numpy would try to unpack some of them)."""
    if isinstance(items, np.ndarray):
        return items
    listed = list(items)
    array = np.empty(len(listed), dtype=object)
    array[:] = listed
    return array


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
    # A building outside the sector hides nothing in it: the sector is convex around (x, y).
    candidates = _geometries(buildings)
    blocking = candidates[
        shapely.intersects(candidates, area) & ~shapely.contains_xy(candidates, x, y)
    ]
    covering = _geometries(masks)
    covering = covering[shapely.intersects(covering, area)]
    if len(blocking) or len(covering):
        # One union of every footprint, shadow quad and mask: the same area as the union of
        # each building's `shadow`, without building each of those first.
        hidden = np.concatenate([blocking, _shadow_quads(x, y, blocking, range_m), covering])
        area = area.difference(shapely.union_all(hidden))
    return area
