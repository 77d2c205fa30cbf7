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

from geopy.distance import geodesic
from shapely import LineString, Point, Polygon, STRtree, unary_union
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


@dataclass(frozen=True)
class _Prepared:
    camera: Camera
    x: float
    y: float
    visible: BaseGeometry
    masks: BaseGeometry | None


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
        self._buildings = [frame.polygon(rings) for rings in buildings]
        self._building_tree = STRtree(self._buildings)
        self._cameras: list[_Prepared] = []
        for camera in cameras:
            x, y = frame.lonlat_to_xy(camera.lon, camera.lat)
            reach = Point(x, y).buffer(camera.range_m)
            nearby = [self._buildings[i] for i in self._building_tree.query(reach)]
            masks = [frame.polygon(rings) for rings in camera.privacy_masks]
            heading = camera.heading_deg
            fov = 360.0 if camera.kind == CameraKind.DOME else camera.fov_deg
            self._cameras.append(
                _Prepared(
                    camera,
                    x,
                    y,
                    visible_area(x, y, heading, fov, camera.range_m, nearby, masks),
                    unary_union(masks) if masks else None,
                )
            )
        self._reach_tree = STRtree(
            [Point(p.x, p.y).buffer(p.camera.range_m, 16) for p in self._cameras]
        )

    def __len__(self) -> int:
        return len(self._cameras)

    def select(self, position: Position, limit: int = 4) -> list[Choice]:
        """The best `limit` cameras for a position, best reason first, then nearest."""
        x, y = self.frame.to_xy(position)
        point = Point(x, y)
        found: list[tuple[int, float, _Prepared, Reason]] = []
        for i in self._reach_tree.query(point):
            prepared = self._cameras[i]
            plane_distance = math.hypot(x - prepared.x, y - prepared.y)
            if plane_distance > prepared.camera.range_m:
                continue
            reason = self._reason(prepared, point, x, y)
            found.append((RANK[reason], plane_distance, prepared, reason))
        found.sort(key=lambda item: (item[0], item[1]))
        return [
            Choice(
                p.camera.id,
                reason,
                round(geodesic((p.camera.lat, p.camera.lon), (position.lat, position.lon)).m, 1),
                round(bearing_deg(x - p.x, y - p.y), 1),
            )
            for _, _, p, reason in found[:limit]
        ]

    def _reason(self, prepared: _Prepared, point: Point, x: float, y: float) -> Reason:
        if prepared.visible.covers(point):
            return Reason.SEES
        camera = prepared.camera
        if camera.kind == CameraKind.PTZ and (
            prepared.masks is None or not prepared.masks.covers(point)
        ):
            pan = bearing_deg(x - prepared.x, y - prepared.y)
            if _within_pan(camera, pan) and self._line_of_sight(prepared, point):
                return Reason.CAN_AIM
        return Reason.NEARBY

    def _line_of_sight(self, prepared: _Prepared, point: Point) -> bool:
        sight = LineString([(prepared.x, prepared.y), (point.x, point.y)])
        camera_at = Point(prepared.x, prepared.y)
        for i in self._building_tree.query(sight):
            building: Polygon = self._buildings[i]
            if building.contains(camera_at):
                continue  # mounted on this building's wall
            if sight.crosses(building) or building.contains(point):
                return False
        return True


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
    """The new selection from a fresh ranking, keeping cameras that still see the point.

    A kept camera is replaced only by one with a better reason, or by a `sees` camera
    clearly closer (SWAP_RATIO and SWAP_METRES). The result is ranked like `select`.
    """
    fresh = {c.camera_id: c for c in ranked}
    kept = [
        fresh[c.camera_id]
        for c in previous
        if c.camera_id in fresh and fresh[c.camera_id].reason == Reason.SEES
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
