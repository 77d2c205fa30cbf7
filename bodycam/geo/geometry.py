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
        made: NDArray[Any] = shapely.polygons(rings_array, indices=polygon_of_ring)
        return made


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

    Each edge of the footprint casts a polygon away from the viewpoint (`_Casts`), its far
    side beyond the range; their union with the footprint is the hidden area. A viewpoint
    inside a footprint (a camera on a wall, mapped a little inside) sees past that building.
    """
    casts = _Casts.of(x, y, _geometries([building]), range_m)
    return unary_union([building, *casts.polygons(np.ones(1, dtype=bool))])


@dataclass(frozen=True)
class _Casts:
    """The exterior vertices of some footprints, each also projected away from a viewpoint.

    An edge a → b casts the quadrilateral (a, b, b', a'), a' and b' being a and b pushed 4
    ranges further along their rays from the viewpoint. Its far side a' b' comes within
    (distance + 4 ranges) × cos(θ / 2) of the viewpoint, θ the angle the edge subtends:
    beyond 2.8 ranges up to 90°, but inside the range for a camera close to a long wall,
    which then saw behind it. An edge wider than 90° casts the pentagon (a, b, b', m', a')
    instead, m' as far as the farther of a' and b' on the ray halfway between theirs: each
    half of its far side subtends less than 90°, so it stays beyond the range too.
    """

    near: NDArray[np.float64]  # (vertices, xy), each ring closed, footprint after footprint
    far: NDArray[np.float64]  # the same vertices pushed 4 ranges further from the viewpoint
    owner: NDArray[np.intp]  # the footprint of each vertex
    edge: NDArray[np.bool_]  # per vertex but the last: whether it and the next make an edge
    facing: NDArray[np.bool_]  # the same, and the viewpoint is on the outer side of that edge
    wide: NDArray[np.bool_]  # the same, and that edge subtends more than 90°
    middle: NDArray[np.float64]  # m' of each wide edge, in order

    @classmethod
    def of(cls, x: float, y: float, buildings: Geometries, range_m: float) -> _Casts:
        # All the vertices of all the footprints at once, as arrays: a Python loop and a
        # `Polygon` per edge made the import of a city's cameras take minutes.
        rings = shapely.get_exterior_ring(buildings)
        near, owner = shapely.get_coordinates(rings, return_index=True)
        delta = near - (x, y)
        length = np.hypot(delta[:, 0], delta[:, 1])
        length[length == 0.0] = 1e-9
        ray = delta / length[:, np.newaxis]
        far = near + ray * (range_m * 4.0)
        edge = owner[1:] == owner[:-1]
        # (b - a) × (viewpoint - a) < 0: the viewpoint is right of a → b, outside if the ring
        # turns anticlockwise (the footprint on its left)
        step = near[1:] - near[:-1]
        side = step[:, 1] * delta[:-1, 0] - step[:, 0] * delta[:-1, 1]
        ccw = shapely.is_ccw(rings)[owner[:-1]]
        facing = edge & np.where(ccw, side < 0.0, side > 0.0)
        wide = edge & ((ray[:-1] * ray[1:]).sum(axis=1) < 0.0)
        # rare: the viewpoint is then in the circle that has the edge as a diameter (Thales)
        if wide.any():
            # beyond both ends, so beyond the edge: the ray crosses it no farther than they are
            reach = np.maximum(length[:-1], length[1:])[wide] + range_m * 4.0
            middle = _middle(x, y, ray[:-1][wide], ray[1:][wide], reach)
        else:
            middle = np.empty((0, 2))
        return cls(near, far, owner, edge, facing, wide, middle)

    def polygons(self, footprints: NDArray[np.bool_], facing_only: bool = False) -> Geometries:
        """The polygon each edge of the chosen footprints casts, or only the edges facing the
        viewpoint; `shadow` is the union of the footprint and of all its polygons."""
        edges = (self.facing if facing_only else self.edge) & footprints[self.owner[:-1]]
        narrow, wide = edges & ~self.wide, edges[self.wide]
        quads = np.stack(
            [
                self.near[:-1][narrow],
                self.near[1:][narrow],
                self.far[1:][narrow],
                self.far[:-1][narrow],
            ],
            axis=1,
        )
        polygons = shapely.polygons(quads)
        if wide.any():
            a, b = self.near[:-1][self.wide][wide], self.near[1:][self.wide][wide]
            a_, b_ = self.far[:-1][self.wide][wide], self.far[1:][self.wide][wide]
            pentagons = np.stack([a, b, b_, self.middle[wide], a_], axis=1)
            polygons = np.concatenate([polygons, shapely.polygons(pentagons)])
        # buffer(0): an edge in line with the viewpoint casts a degenerate one; this drops it
        shadows: NDArray[Any] = shapely.buffer(polygons, 0)
        return shadows

    def far_within(self, x: float, y: float, distance: float, count: int) -> NDArray[np.bool_]:
        """Per footprint: whether the far side of one of its polygons (a' b', or a' m' and
        m' b') comes within `distance` of (x, y); by construction, only if (x, y) is on one
        of its edges, for a `distance` up to 2.8 ranges."""
        narrow = self.edge & ~self.wide
        start, end, owner = self.far[:-1][narrow], self.far[1:][narrow], self.owner[:-1][narrow]
        if len(self.middle):
            a_, b_ = self.far[:-1][self.wide], self.far[1:][self.wide]
            start = np.concatenate([start, a_, self.middle])
            end = np.concatenate([end, self.middle, b_])
            owner = np.concatenate([owner, np.tile(self.owner[:-1][self.wide], 2)])
        step = end - start
        span = np.maximum((step * step).sum(axis=1), 1e-300)  # 0 for a repeated vertex
        t = np.clip((((x, y) - start) * step).sum(axis=1) / span, 0.0, 1.0)
        closest = start + step * t[:, np.newaxis]
        near = np.hypot(closest[:, 0] - x, closest[:, 1] - y) <= distance
        return np.bincount(owner[near], minlength=count) > 0

    def hulls(self, footprints: NDArray[np.bool_]) -> Geometries:
        """Per chosen footprint: the convex hull of the vertices of its polygons."""
        mine = footprints[self.owner]
        points = np.stack([self.near[mine], self.far[mine]], axis=1).reshape(-1, 2)
        indices = np.repeat(self.owner[mine], 2)
        wide = footprints[self.owner[:-1][self.wide]]
        if wide.any():
            points = np.concatenate([points, self.middle[wide]])
            indices = np.concatenate([indices, self.owner[:-1][self.wide][wide]])
            order = np.argsort(indices, kind="stable")  # `linestrings` takes them in order
            points, indices = points[order], indices[order]
        lines = np.full(len(footprints), None, dtype=object)
        shapely.linestrings(points, indices=indices, out=lines)
        hulls: NDArray[Any] = shapely.convex_hull(lines[footprints])
        return hulls


def _middle(
    x: float,
    y: float,
    ua: NDArray[np.float64],
    ub: NDArray[np.float64],
    reach: NDArray[np.float64],
) -> NDArray[np.float64]:
    """m' of the wide edges, whose ends are in the directions ua and ub from (x, y): the
    point `reach` away on the ray halfway between."""
    sine = ua[:, 0] * ub[:, 1] - ua[:, 1] * ub[:, 0]
    # ua + ub and (ub - ua) turned a quarter away from the viewpoint's side both point along
    # the bisector, 2 cos(θ / 2) and 2 sin(θ / 2) long: their sum is at least 2 long, even at
    # 180° where ua + ub vanishes. With the viewpoint on the edge itself (sin θ below 1e-9:
    # no side to tell), the sum is short and m' close to the viewpoint: the edge, seen
    # edge-on, casts nothing, and `far_within` tells.
    turn = np.where(np.abs(sine) > 1e-9, np.sign(sine), 0.0)[:, np.newaxis]
    difference = ub - ua
    bisector = ua + ub + turn * np.column_stack([difference[:, 1], -difference[:, 0]])
    size = np.maximum(np.hypot(bisector[:, 0], bisector[:, 1]), 1.0)
    middle: NDArray[np.float64] = (x, y) + bisector * (reach / size)[:, np.newaxis]
    return middle


def _hidden(x: float, y: float, buildings: Geometries, range_m: float) -> Geometries:
    """Pieces whose union, within `range_m` of (x, y), is what the buildings hide from it.

    The union of a footprint and of the polygons its edges cast (`shadow`) is exact but slow
    to compute for a whole city: many long, overlapping polygons per camera. For a convex
    footprint seen from outside, the same area within range is one polygon, the convex hull
    of the vertices of those polygons, provided every far side stays beyond the range (it
    does, unless the viewpoint is on an edge, between its ends): the hidden area of a convex
    footprint is convex, contains that hull, and within range equals the union of the
    polygons. For a concave footprint, under the same condition, the polygons of the edges
    that face the viewpoint are enough: a line of sight into a footprint enters it through
    one of those. Footprints with courtyards, or with a viewpoint on or in them, keep all
    their polygons, so the result is the same as with `shadow` everywhere.
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
            casts.polygons(facing, facing_only=True),
            casts.polygons(~hull & ~facing),
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
