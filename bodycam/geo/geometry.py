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
# Unions and differences of visible areas are computed on a 1 µm grid: GEOS's floating
# overlay can lose or add whole pieces when many long, nearly parallel shadows meet (seen
# with viewpoints on a footprint's corner, thin walls); snap-rounding is robust.
GRID_M = 1e-6


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
    # The arc as arrays, not a Python loop per vertex: one sector per camera at import.
    if fov_deg >= 360.0:
        steps = int(360 / ARC_STEP_DEG)
        disc: Polygon = shapely.polygons(_polar(x, y, np.arange(steps) * ARC_STEP_DEG, range_m))
        return disc
    start = heading_deg - fov_deg / 2.0
    steps = max(2, math.ceil(fov_deg / ARC_STEP_DEG))
    arc = _polar(x, y, start + fov_deg * np.arange(steps + 1) / steps, range_m)
    wedge: Polygon = shapely.polygons(np.vstack([(x, y), arc]))
    return wedge


def _polar(
    x: float, y: float, bearings: NDArray[np.floating[Any]], distance: float
) -> NDArray[np.float64]:
    rad = np.radians(bearings)
    return np.column_stack([x + distance * np.sin(rad), y + distance * np.cos(rad)])


def shadow(x: float, y: float, building: Polygon, range_m: float) -> BaseGeometry:
    """What a building hides from a viewpoint at (x, y), out to `range_m`.

    Each edge of the footprint casts a quadrilateral away from the viewpoint, projected
    beyond the range; their union with the footprint is the hidden area. A viewpoint inside
    a footprint (a camera on a wall, mapped a little inside) sees past that building.
    """
    casts = _Casts.of(x, y, _geometries([building]), range_m)
    return unary_union([building, *casts.quads(np.ones(1, dtype=bool))])


@dataclass(frozen=True)
class _Casts:
    """The exterior vertices of some footprints, each also projected away from a viewpoint."""

    near: NDArray[np.float64]  # (vertices, xy), each ring closed, footprint after footprint
    far: NDArray[np.float64]  # the same vertices pushed 4 ranges further from the viewpoint
    owner: NDArray[np.intp]  # the footprint of each vertex
    edge: NDArray[np.bool_]  # per vertex but the last: whether it and the next make an edge
    facing: NDArray[np.bool_]  # the same, and the viewpoint is on the outer side of that edge

    @classmethod
    def of(cls, x: float, y: float, buildings: Geometries, range_m: float) -> _Casts:
        # All the vertices of all the footprints at once, as arrays: a Python loop and a
        # `Polygon` per edge made the import of a city's cameras take minutes.
        rings = shapely.get_exterior_ring(buildings)
        near, owner = shapely.get_coordinates(rings, return_index=True)
        delta = near - (x, y)
        length = np.hypot(delta[:, 0], delta[:, 1])
        length[length == 0.0] = 1e-9
        far = near + delta / length[:, np.newaxis] * (range_m * 4.0)
        edge = owner[1:] == owner[:-1]
        # (b - a) × (viewpoint - a) < 0: the viewpoint is right of a → b, outside if the ring
        # turns anticlockwise (the footprint on its left)
        step = near[1:] - near[:-1]
        side = step[:, 1] * delta[:-1, 0] - step[:, 0] * delta[:-1, 1]
        ccw = shapely.is_ccw(rings)[owner[:-1]]
        facing = edge & np.where(ccw, side < 0.0, side > 0.0)
        return cls(near, far, owner, edge, facing)

    def quads(self, footprints: NDArray[np.bool_], facing_only: bool = False) -> Geometries:
        """The quadrilateral each edge of the chosen footprints casts (the edge and its far
        projection), or only the edges facing the viewpoint; `shadow` is the union of the
        footprint and of all its quads."""
        edges = (self.facing if facing_only else self.edge) & footprints[self.owner[:-1]]
        quads = np.stack(
            [
                self.near[:-1][edges],
                self.near[1:][edges],
                self.far[1:][edges],
                self.far[:-1][edges],
            ],
            axis=1,
        )
        # buffer(0): an edge in line with the viewpoint casts a degenerate quad; this drops it
        return shapely.buffer(shapely.polygons(quads), 0)

    def far_within(self, x: float, y: float, distance: float, count: int) -> NDArray[np.bool_]:
        """Per footprint: whether the far side of one of its quads (the segment between the
        projections of an edge's ends) comes within `distance` of (x, y)."""
        start, end = self.far[:-1][self.edge], self.far[1:][self.edge]
        step = end - start
        span = np.maximum((step * step).sum(axis=1), 1e-300)  # 0 for a repeated vertex
        t = np.clip((((x, y) - start) * step).sum(axis=1) / span, 0.0, 1.0)
        closest = start + step * t[:, np.newaxis]
        near = np.hypot(closest[:, 0] - x, closest[:, 1] - y) <= distance
        return np.bincount(self.owner[:-1][self.edge][near], minlength=count) > 0

    def hulls(self, footprints: NDArray[np.bool_]) -> Geometries:
        """Per chosen footprint: the convex hull of its vertices and of their projections."""
        mine = footprints[self.owner]
        points = np.stack([self.near[mine], self.far[mine]], axis=1).reshape(-1, 2)
        lines = np.full(len(footprints), None, dtype=object)
        shapely.linestrings(points, indices=np.repeat(self.owner[mine], 2), out=lines)
        return shapely.convex_hull(lines[footprints])


def _hidden(x: float, y: float, buildings: Geometries, range_m: float) -> Geometries:
    """Pieces whose union, within `range_m` of (x, y), is what the buildings hide from it.

    The union of a footprint and of the quads of its edges (`shadow`) is exact but slow to
    compute for a whole city: many long, overlapping quads per camera. For a convex
    footprint seen from outside, the same area within range is one polygon, the convex hull
    of its vertices and of their projections, provided every projected side stays beyond
    the range (it does, unless the viewpoint is close to a long wall): the hidden area of a
    convex footprint is convex, contains that hull, and within range equals the union of
    the quads. For a concave footprint, under the same condition, the quads of the edges
    that face the viewpoint are enough: a line of sight into a footprint enters it through
    one of those. Footprints with courtyards, or too close, keep all their quads, so the
    result is the same as with `shadow` everywhere, including its limit: seen at a wide
    angle from close by, a thin wall's quads end short of the range, and so does its shadow.
    """
    casts = _Casts.of(x, y, buildings, range_m)
    solid = shapely.get_num_interior_rings(buildings) == 0
    convex = solid & (
        shapely.area(shapely.convex_hull(buildings)) <= shapely.area(buildings) * (1 + 1e-9)
    )
    clear = ~casts.far_within(x, y, range_m, len(buildings)) & ~shapely.intersects_xy(
        buildings, x, y
    )
    hull, facing = convex & clear, solid & ~convex & clear
    return np.concatenate(
        [
            casts.hulls(hull),
            buildings[~hull],
            casts.quads(facing, facing_only=True),
            casts.quads(~hull & ~facing),
        ]
    )


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
        # One union of everything hidden, rather than one per building and one of those.
        hidden = shapely.union_all(
            np.concatenate([_hidden(x, y, blocking, range_m), covering]), grid_size=GRID_M
        )
        area = shapely.difference(area, hidden, grid_size=GRID_M)
    return area
