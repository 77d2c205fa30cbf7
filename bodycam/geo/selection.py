"""Which cameras can see a position, ranked with a reason; and a selection that holds still.

Reasons, best first: `sees` (the point is in what the camera sees now: its field of view,
not hidden by a building, not in a privacy mask), `can_aim` (a PTZ camera in range, with
line of sight, within its pan limits, outside its masks: it can be turned there), `nearby`
(in range, but it cannot show the point). Visible areas are computed once, when the
registry is loaded, and indexed with shapely's STRtree, so a query only looks at the
cameras whose range covers the point.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from geopy.distance import geodesic
from numpy.typing import NDArray
from shapely import LineString, Point, STRtree, unary_union
from shapely.geometry.base import BaseGeometry

from ..models import Camera, CameraKind, Position
from .geometry import LocalFrame, bearing_deg, visible_area


class Reason(enum.StrEnum):
    SEES = "sees"
    CAN_AIM = "can_aim"
    NEARBY = "nearby"


RANK = {Reason.SEES: 0, Reason.CAN_AIM: 1, Reason.NEARBY: 2}


@dataclass(frozen=True)
class Choice:
    """One camera for a position, and why."""

    camera_id: str
    reason: Reason
    distance_m: float  # geodesic, camera to position
    bearing_deg: float  # from the camera to the position, clockwise from north


class CameraIndex:
    """Cameras with their visible areas, and the buildings that block lines of sight."""

    def __init__(
        self,
        cameras: Sequence[Camera],
        buildings: Iterable[Sequence[Sequence[Sequence[float]]]] = (),
        frame: LocalFrame | None = None,
    ) -> None:
        """`buildings`: GeoJSON Polygon coordinates ([[lon, lat], ...] rings)."""
        if frame is None:
            lat = sum(c.lat for c in cameras) / len(cameras) if cameras else 0.0
            lon = sum(c.lon for c in cameras) / len(cameras) if cameras else 0.0
            frame = LocalFrame(lat, lon)
        self.frame = frame
        self._buildings = frame.polygons(buildings)
        self._building_tree = STRtree(self._buildings)
        self._cameras = list(cameras)
        xy = [frame.lonlat_to_xy(c.lon, c.lat) for c in self._cameras]
        self._x = [x for x, _ in xy]
        self._y = [y for _, y in xy]
        self._range = [c.range_m for c in self._cameras]
        # Only bounding boxes matter to the trees (`select` then measures the exact distance),
        # and one query for all cameras finds the buildings within reach of each.
        reach = shapely.box(*_reach_bounds(self._x, self._y, self._range))
        near_camera, near_building = self._building_tree.query(reach)
        starts = np.searchsorted(near_camera, np.arange(len(self._cameras) + 1))
        self._mounted = self._mounted_on()
        visible = np.empty(len(self._cameras), dtype=object)
        self._masks: list[BaseGeometry | None] = []
        for i, camera in enumerate(self._cameras):
            masks = [frame.polygon(rings) for rings in camera.privacy_masks]
            fov = 360.0 if camera.kind == CameraKind.DOME else camera.fov_deg
            nearby = self._buildings[near_building[starts[i] : starts[i + 1]]]
            x, y, heading = self._x[i], self._y[i], camera.heading_deg
            visible[i] = visible_area(x, y, heading, fov, camera.range_m, nearby, masks)
            self._masks.append(unary_union(masks) if masks else None)
        # Prepared, a visible area tests a point against an index of its edges rather than
        # every edge: half the time with this city's areas (26 vertices on average), more
        # with detailed footprints.
        shapely.prepare(visible)
        self._visible = visible
        self._reach_tree = STRtree(reach)
        # One solver for every distance: `geodesic(a, b)` builds a new one per call.
        self._geodesic = geodesic()

    def _mounted_on(self) -> list[frozenset[int]]:
        """Per camera, the buildings it is in: mapped a little inside the wall it is mounted
        on. They hide nothing from it (`visible_area` skips them too) and block no sight."""
        mounted: list[frozenset[int]] = [frozenset() for _ in self._cameras]
        cameras, buildings = self._building_tree.query(
            shapely.points(self._x, self._y), predicate="within"
        )
        for i, b in zip(cameras.tolist(), buildings.tolist(), strict=True):
            mounted[i] |= {b}
        return mounted

    def __len__(self) -> int:
        return len(self._cameras)

    def select(self, position: Position, limit: int = 4) -> list[Choice]:
        """The best `limit` cameras for a position, best reason first, then nearest."""
        x, y = self.frame.to_xy(position)
        in_range: list[tuple[int, float]] = []
        for i in self._reach_tree.query(Point(x, y)).tolist():
            plane_distance = math.hypot(x - self._x[i], y - self._y[i])
            if plane_distance <= self._range[i]:
                in_range.append((i, plane_distance))
        if not in_range:
            return []
        indices = np.fromiter((i for i, _ in in_range), dtype=np.intp, count=len(in_range))
        sees = shapely.intersects_xy(self._visible[indices], x, y).tolist()  # covers, for a point
        found: list[tuple[int, float, int, Reason]] = []
        around: list[int] | None = None  # buildings the position is in, if needed
        for (i, plane_distance), seen in zip(in_range, sees, strict=True):
            reason = Reason.SEES
            if not seen:
                if around is None and self._cameras[i].kind == CameraKind.PTZ:
                    around = self._building_tree.query(Point(x, y), predicate="within").tolist()
                reason = self._aim_or_nearby(i, x, y, around or [])
            found.append((RANK[reason], plane_distance, i, reason))
        found.sort()  # by reason, then distance; equal ones in registry order
        return [
            Choice(
                self._cameras[i].id,
                reason,
                round(self._distance_m(self._cameras[i], position), 1),
                round(bearing_deg(x - self._x[i], y - self._y[i]), 1),
            )
            for _, _, i, reason in found[:limit]
        ]

    def _distance_m(self, camera: Camera, position: Position) -> float:
        """Geodesic distance, as `geodesic(camera, position).m` gives it."""
        return float(
            self._geodesic.measure((camera.lat, camera.lon), (position.lat, position.lon)) * 1000
        )

    def _aim_or_nearby(self, i: int, x: float, y: float, around: list[int]) -> Reason:
        camera, masks = self._cameras[i], self._masks[i]
        if camera.kind == CameraKind.PTZ and (
            masks is None or not shapely.intersects_xy(masks, x, y)
        ):
            pan = bearing_deg(x - self._x[i], y - self._y[i])
            if _within_pan(camera, pan) and self._line_of_sight(i, x, y, around):
                return Reason.CAN_AIM
        return Reason.NEARBY

    def _line_of_sight(self, i: int, x: float, y: float, around: list[int]) -> bool:
        """No building between the camera and the point, nor around the point."""
        sight = LineString([(self._x[i], self._y[i]), (x, y)])
        crossed = self._building_tree.query(sight, predicate="crosses").tolist()
        return all(b in self._mounted[i] for b in (*crossed, *around))


def _reach_bounds(
    xs: list[float], ys: list[float], ranges: list[float]
) -> tuple[NDArray[np.float64], ...]:
    """(x min, y min, x max, y max) of the disc each camera reaches."""
    x, y, r = np.array(xs), np.array(ys), np.array(ranges)
    return x - r, y - r, x + r, y + r


def _within_pan(camera: Camera, pan: float) -> bool:
    span = (camera.pan_max_deg - camera.pan_min_deg) % 360.0
    if span == 0.0 and camera.pan_max_deg != camera.pan_min_deg:
        return True  # a full turn
    return (pan - camera.pan_min_deg) % 360.0 <= span


# A camera that still sees the officer gives its place only to one that is clearly
# closer: both conditions, so that neither a few metres nor a few percent make the wall
# jump from one picture to another while the officer walks.
SWAP_RATIO = 0.7
SWAP_METRES = 20.0


def hold(previous: Sequence[Choice], ranked: Sequence[Choice], limit: int) -> list[Choice]:
    """The new selection from a fresh ranking, keeping cameras that can still show the point.

    Kept: the previous cameras that still see it, and the PTZ cameras that can still be
    aimed there (they are turned toward the officer: swapping one for another would move
    two cameras and the picture for nothing). A kept camera is replaced only by one with a
    better reason, or by one with the same reason clearly closer (SWAP_RATIO and
    SWAP_METRES). The result is ranked like `select`.
    """
    fresh = {c.camera_id: c for c in ranked}
    kept = [
        fresh[c.camera_id]
        for c in previous
        if c.camera_id in fresh and fresh[c.camera_id].reason in (Reason.SEES, Reason.CAN_AIM)
    ]
    chosen = list(kept)
    for candidate in ranked:
        if candidate in chosen:
            continue
        if len(chosen) < limit:
            chosen.append(candidate)
            continue
        weakest = max(
            (c for c in chosen if c in kept),
            default=None,
            key=lambda c: (RANK[c.reason], c.distance_m),
        )
        if weakest is not None and _clearly_better(candidate, weakest):
            chosen.remove(weakest)
            kept.remove(weakest)
            chosen.append(candidate)
    chosen.sort(key=lambda c: (RANK[c.reason], c.distance_m))
    return chosen[:limit]


def _clearly_better(candidate: Choice, incumbent: Choice) -> bool:
    if RANK[candidate.reason] != RANK[incumbent.reason]:
        return RANK[candidate.reason] < RANK[incumbent.reason]
    return (
        candidate.distance_m < incumbent.distance_m * SWAP_RATIO
        and incumbent.distance_m - candidate.distance_m > SWAP_METRES
    )
