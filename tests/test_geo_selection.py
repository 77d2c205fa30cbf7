"""Camera selection by what cameras can see: a small scene in metres around place Mandela."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import shapely
from shapely import Polygon

from bodycam.geo.geometry import LocalFrame, sector, shadow, visible_area
from bodycam.geo.registry import Masks
from bodycam.geo.selection import CameraIndex, Choice, Reason, hold
from bodycam.models import Camera, CameraKind, Position

FRAME = LocalFrame(49.1196, 6.1764)


def at(x: float, y: float) -> tuple[float, float]:
    """(lat, lon) of a point x metres east, y metres north of the scene's origin."""
    lon, lat = FRAME.xy_to_lonlat(x, y)
    return lat, lon


def place(x: float, y: float) -> Position:
    lat, lon = at(x, y)
    return Position(lat=lat, lon=lon, accuracy_m=5.0, time=None)  # type: ignore[arg-type]


def camera(
    cid: str,
    x: float,
    y: float,
    heading: float,
    fov: float = 60.0,
    range_m: float = 100.0,
    kind: CameraKind = CameraKind.FIXED,
    masks: Masks = (),
    **limits: Any,
) -> Camera:
    lat, lon = at(x, y)
    return Camera(cid, cid, kind, lat, lon, heading, fov, range_m, privacy_masks=masks, **limits)


def square(x0: float, y0: float, x1: float, y1: float) -> list[list[list[float]]]:
    """GeoJSON Polygon coordinates of a rectangle given in metres."""
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    return [[list(reversed(at(x, y))) for x, y in corners]]


BUILDING = square(40, -10, 50, 10)  # east of the origin
MASK = tuple(tuple((p[0], p[1]) for p in ring) for ring in square(17, 2, 23, 8))
CAMERAS = [
    camera("east", 0, 0, heading=90, masks=(MASK,)),  # looks east, across the building
    camera("west", 10, 0, heading=270),  # fixed, faces away from the points east of it
    camera("ptz", 0, -50, heading=0, fov=40, range_m=150, kind=CameraKind.PTZ),
    camera(
        "ptz-limited",
        0,
        -60,
        heading=0,
        fov=40,
        range_m=150,
        kind=CameraKind.PTZ,
        pan_min_deg=270,
        pan_max_deg=30,
    ),  # can turn from west to north-north-east
    camera("dome", 100, 60, heading=0, fov=90, range_m=60, kind=CameraKind.DOME),
]
INDEX = CameraIndex(CAMERAS, [BUILDING], frame=FRAME)


def reasons(x: float, y: float) -> dict[str, Reason]:
    return {c.camera_id: c.reason for c in INDEX.select(place(x, y), limit=10)}


@pytest.mark.parametrize(
    ("point", "camera_id", "expected"),
    [
        ((30, 0), "east", Reason.SEES),
        ((70, 0), "east", Reason.NEARBY),  # behind the building
        ((45, 0), "east", Reason.NEARBY),  # inside the building
        ((20, 5), "east", Reason.NEARBY),  # inside its privacy mask
        ((30, 0), "west", Reason.NEARBY),  # fixed and facing away
        ((-30, 0), "west", Reason.SEES),
        (
            tuple(
                50 * v for v in (math.sin(math.radians(90 - 29)), math.cos(math.radians(90 - 29)))
            ),
            "east",
            Reason.SEES,
        ),  # 29° off its heading: inside a 60° field of view
        (
            tuple(
                50 * v for v in (math.sin(math.radians(90 - 31)), math.cos(math.radians(90 - 31)))
            ),
            "east",
            Reason.NEARBY,
        ),  # 31° off: outside
        ((0, 20), "ptz", Reason.SEES),  # in its home view (north)
        ((60, -40), "ptz", Reason.CAN_AIM),  # east of it, in the clear: it can turn there
        ((60, 0), "ptz", Reason.NEARBY),  # the building is in the way
        ((60, -60), "ptz-limited", Reason.NEARBY),  # east: beyond its pan limit
        ((-60, -60), "ptz-limited", Reason.CAN_AIM),  # west: within its limits
        ((100, 20), "dome", Reason.SEES),  # domes see all around
    ],
)
def test_reasons(point: tuple[float, float], camera_id: str, expected: Reason) -> None:
    assert reasons(*point).get(camera_id) == expected


# A camera 2 m in front of the middle of a long thin wall: the wall's sides subtend almost
# 180° at it, the case where a shadow cast as a quadrilateral (the edge and a straight far
# side) ended short of the range and let the camera see behind the wall.
WALL = square(-40, 0, 40, 0.6)
WALL_CAMERAS = [
    camera("wall", 0, -2, heading=0, fov=120),  # faces the wall's middle
    camera("wall-dome", 0, -2, heading=0, fov=360, kind=CameraKind.DOME),
    camera("wall-end", 38, -2, heading=0, fov=120),  # near its east end: sees past it
    camera("wall-ptz", 0, -2, heading=180, fov=40, kind=CameraKind.PTZ),  # home: south
]
WALL_INDEX = CameraIndex(WALL_CAMERAS, [WALL], frame=FRAME)


def wall_reasons(x: float, y: float) -> dict[str, Reason]:
    return {c.camera_id: c.reason for c in WALL_INDEX.select(place(x, y), limit=10)}


BEHIND_THE_WALL = [
    (0, 5.6),
    (0, 20.6),
    (0, 40.6),
    (0, 60.6),
    (0, 90.6),
    (20, 30),
    (-30, 50),
    (35, 20),  # near its east end, but still behind it from the middle
    (-45, 60),  # beyond its west end's line, still in its shadow from the middle
]


@pytest.mark.parametrize(
    ("point", "camera_id", "expected"),
    [
        *(((x, y), "wall", Reason.NEARBY) for x, y in BEHIND_THE_WALL),
        *(((x, y), "wall-dome", Reason.NEARBY) for x, y in BEHIND_THE_WALL),
        *(((x, y), "wall-ptz", Reason.NEARBY) for x, y in BEHIND_THE_WALL),
        ((0, -1), "wall", Reason.SEES),  # between the camera and the wall
        ((1, -0.2), "wall", Reason.SEES),
        ((-1.5, -1), "wall", Reason.SEES),
        ((0, -30), "wall-dome", Reason.SEES),  # in front, away from the wall
        ((80, 1), "wall-dome", Reason.SEES),  # past the east end, at a bearing beyond it
        ((-80, 1), "wall-dome", Reason.SEES),  # past the west end
        ((80, 1), "wall-ptz", Reason.CAN_AIM),  # the line of sight misses the wall's end
        ((30, -10), "wall-ptz", Reason.CAN_AIM),  # in front of the wall, out of its home view
        ((0, -30), "wall-ptz", Reason.SEES),  # in its home view
        ((79, 26.7), "wall-end", Reason.SEES),  # 55° east of north: past the wall's end
        ((70, 20), "wall-end", Reason.SEES),  # 55.5°, closer
        ((0, 30), "wall-end", Reason.NEARBY),  # 50° west of north: behind the wall
        ((30, 40), "wall-end", Reason.NEARBY),
    ],
)
def test_a_long_wall_hides_what_is_behind_it(
    point: tuple[float, float], camera_id: str, expected: Reason
) -> None:
    assert wall_reasons(*point).get(camera_id) == expected


LONG_WALL = Polygon([(-40, 0), (40, 0), (40, 0.6), (-40, 0.6)])
SLANTED_WALL = Polygon([(-30, 50), (40, 20), (40.5, 21), (-29.5, 51)])
L_SHAPED = Polygon([(-60, -30), (-20, -30), (-20, -25), (-55, -25), (-55, 10), (-60, 10)])


@pytest.mark.parametrize(
    ("x", "y", "heading", "fov"),
    [
        (0, -2, 0, 120),  # close to the long wall's middle
        (0, -0.01, 0, 360),  # a centimetre from it, all around
        (0, 2.6, 180, 150),  # behind it, facing its back
        (39, -1, 300, 120),  # near its end, looking along it
        (5, 38, 60, 160),  # close to the slanted wall
        (-50, -20, 200, 200),  # in the L's corner
        (-57, 15, 180, 90),  # off the end of the L's long leg
    ],
)
def test_visible_area_is_what_lines_of_sight_reach(
    x: float, y: float, heading: float, fov: float
) -> None:
    """Against a plain test per point: in the field of view, and no building on the way."""
    buildings = [LONG_WALL, SLANTED_WALL, L_SHAPED]
    seen = visible_area(x, y, heading, fov, 100.0, buildings)
    field = sector(x, y, heading, fov, 100.0)
    # a grid with odd steps, so that few points fall on the edge of a shadow
    gx, gy = np.meshgrid(np.arange(-99.87, 100, 1.93), np.arange(-99.71, 100, 1.87))
    px, py = x + gx.ravel(), y + gy.ravel()
    points = shapely.points(px, py)
    sights = shapely.linestrings(
        np.stack([np.full_like(px, x), np.full_like(py, y), px, py], 1).reshape(-1, 2, 2)
    )
    blocked = np.any([shapely.intersects(sights, b) for b in buildings], axis=0)
    ambiguous = shapely.dwithin(shapely.boundary(seen), points, 1e-3)  # rounding at the edge
    expected = shapely.intersects(field, points) & ~blocked
    assert expected.any()
    assert (blocked & shapely.intersects(field, points)).any()
    wrong = (shapely.intersects(seen, points) != expected) & ~ambiguous
    assert not wrong.any(), shapely.to_wkt(points[wrong][:5])
    in_range = shapely.dwithin(points, shapely.Point(x, y), 100.0)
    for building in buildings:  # and each building's shadow, the exact one
        cast = shadow(x, y, building, 100.0)
        on_edge = shapely.dwithin(shapely.boundary(cast), points, 1e-3)
        differs = shapely.intersects(cast, points) != shapely.intersects(sights, building)
        assert not (differs & in_range & ~on_edge).any()


def test_out_of_range_cameras_are_not_listed() -> None:
    assert "east" not in reasons(0, 120)
    assert "dome" not in reasons(0, 0)


def test_ranking_distance_and_bearing() -> None:
    choices = INDEX.select(place(30, 0), limit=10)
    assert [c.reason for c in choices] == sorted(
        (c.reason for c in choices), key=lambda r: list(Reason).index(r)
    )
    east = next(c for c in choices if c.camera_id == "east")
    assert east.distance_m == pytest.approx(30, abs=0.5)  # geodesic, not the plane's
    assert east.bearing_deg == pytest.approx(90, abs=0.5)
    assert len(INDEX.select(place(30, 0), limit=2)) == 2


def choice(cid: str, reason: Reason, distance: float) -> Choice:
    return Choice(cid, reason, distance, 0.0)


def sees(cid: str, distance: float) -> Choice:
    return choice(cid, Reason.SEES, distance)


@pytest.mark.parametrize(
    ("previous", "ranked", "limit", "expected"),
    [
        # a marginally closer camera does not push out one that still sees the officer
        ([sees("a", 60)], [sees("b", 50), sees("a", 60)], 1, ["a"]),
        # a clearly closer one does (70 % and 20 m closer)
        ([sees("a", 60)], [sees("b", 10), sees("a", 60)], 1, ["b"]),
        # a camera that no longer sees is not held
        ([sees("a", 60)], [sees("b", 55), choice("a", Reason.NEARBY, 60)], 1, ["b"]),
        # a better reason wins over a held camera
        (
            [choice("a", Reason.CAN_AIM, 10)],
            [sees("b", 90), choice("a", Reason.CAN_AIM, 10)],
            1,
            ["b"],
        ),
        # with room, both stay, best first
        ([sees("a", 60)], [sees("b", 50), sees("a", 60)], 2, ["b", "a"]),
        # the PTZ camera turned toward the officer keeps following them...
        (
            [sees("s", 30), choice("ptz-a", Reason.CAN_AIM, 50)],
            [
                sees("s", 30),
                choice("ptz-b", Reason.CAN_AIM, 49),
                choice("ptz-a", Reason.CAN_AIM, 51),
            ],
            2,
            ["s", "ptz-a"],
        ),
        # ...unless another one is clearly closer
        (
            [sees("s", 30), choice("ptz-a", Reason.CAN_AIM, 80)],
            [
                sees("s", 30),
                choice("ptz-b", Reason.CAN_AIM, 10),
                choice("ptz-a", Reason.CAN_AIM, 80),
            ],
            2,
            ["s", "ptz-b"],
        ),
    ],
)
def test_hysteresis(
    previous: list[Choice], ranked: list[Choice], limit: int, expected: list[str]
) -> None:
    assert [c.camera_id for c in hold(previous, ranked, limit)] == expected
