"""Measure the demo city as the gateway reads it: clean import, sound geometry, route coverage.

The files are parsed with the registry's own `parse_cameras` / `parse_places` (which raise
GeoJSONError listing every problem), and the routes are sampled every SAMPLE_M metres and
put to the gateway's `CameraIndex.select`, as a walking officer's fixes would be.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shapely import LineString, Point, Polygon, STRtree

from bodycam.geo.geometry import sector
from bodycam.geo.registry import GeoJSONError, load_json, parse_cameras, parse_places
from bodycam.geo.selection import CameraIndex, Reason
from bodycam.models import Position
from simulators.data.metz.layout import XY
from simulators.data.metz.make_city import FRAME, ROUTE_NAMES, load_route

SAMPLE_M = 10.0
MIN_SEES = 0.70  # of a route's points, seen by at least one camera
MIN_IN_RANGE = 0.95  # of a route's points, in range of at least one camera
MAX_CAMERA_INSIDE_M = 1.0  # a camera point inside a footprint: mounted on its wall
ROUNDING_M2 = 0.05  # overlaps smaller than this are the rounding of coordinates


def samples(vertices: Sequence[XY], step: float = SAMPLE_M) -> list[XY]:
    """Points every `step` metres (or a little less) along a polyline, both ends included."""
    line = LineString(vertices)
    count = max(1, math.ceil(line.length / step))
    points = (line.interpolate(line.length * i / count) for i in range(count + 1))
    return [(p.x, p.y) for p in points]


def check(directory: Path) -> bool:
    """Print what was measured; False if a rule is broken."""
    places_path, cameras_path = directory / "places.geojson", directory / "cameras.geojson"
    try:
        cameras = parse_cameras(
            load_json(cameras_path.read_bytes(), cameras_path.name), cameras_path.name
        )
        places = parse_places(
            load_json(places_path.read_bytes(), places_path.name), places_path.name
        )
    except GeoJSONError as err:
        print(err)
        return False
    rings = [p.geometry["coordinates"] for p in places if p.geometry["type"] == "Polygon"]
    streets = [p for p in places if p.kind == "street"]
    buildings = [FRAME.polygon(r) for r in rings]
    tree = STRtree(buildings)

    kinds = {k: sum(c.kind == k for c in cameras) for k in ("fixed", "ptz", "dome")}
    print(
        f"{places_path.name}: {len(streets)} streets and squares, {len(buildings)} buildings,"
        f" {places_path.stat().st_size / 1024:.0f} KB"
    )
    print(
        f"{cameras_path.name}: {len(cameras)} cameras"
        f" ({', '.join(f'{n} {k}' for k, n in kinds.items())}),"
        f" {sum(bool(c.privacy_masks) for c in cameras)} with a privacy mask,"
        f" {cameras_path.stat().st_size / 1024:.0f} KB"
    )

    invalid = sum(not b.is_valid for b in buildings)
    overlapping = sum(
        i < j and buildings[i].intersection(buildings[j]).area > ROUNDING_M2
        for i, j in zip(*tree.query(buildings, predicate="intersects"), strict=True)
    )
    crossing = sorted(
        {
            street.name
            for street in streets
            for line in _lines(street.geometry)
            if _crosses(line, buildings, tree)
        }
    )
    inside, unseen_masks = [], []
    for camera in cameras:
        x, y = FRAME.lonlat_to_xy(camera.lon, camera.lat)
        for i in tree.query(Point(x, y), predicate="within"):
            if buildings[i].exterior.distance(Point(x, y)) > MAX_CAMERA_INSIDE_M:
                inside.append(camera.id)
        fov = 360.0 if camera.kind == "dome" else camera.fov_deg
        view = sector(x, y, camera.heading_deg, fov, camera.range_m)
        # a mask that a fixed camera cannot see hides nothing (a PTZ's may be for other aims)
        if camera.kind != "ptz" and any(
            not view.intersects(FRAME.polygon(mask)) for mask in camera.privacy_masks
        ):
            unseen_masks.append(camera.id)
    print(
        f"footprints invalid: {invalid}, overlapping pairs: {overlapping};"
        f" streets through a building: {', '.join(crossing) or 0};"
        f" cameras over {MAX_CAMERA_INSIDE_M:.0f} m inside a building: {', '.join(inside) or 0};"
        f" masks out of view: {', '.join(unseen_masks) or 0}"
    )
    ok = not (invalid or overlapping or crossing or inside or unseen_masks)

    index = CameraIndex(cameras, rings)
    now = datetime.now(UTC)
    for name in ROUTE_NAMES:
        points = samples(load_route(name))
        sees = in_range = blocked = 0
        for x, y in points:
            lon, lat = FRAME.xy_to_lonlat(x, y)
            choices = index.select(Position(lat, lon, 5.0, now), limit=4)
            sees += any(c.reason == Reason.SEES for c in choices)
            in_range += bool(choices)
            blocked += len(tree.query(Point(x, y), predicate="within")) > 0
        n = len(points)
        print(
            f"{name}: {n} points every {SAMPLE_M:.0f} m: seen {sees / n:.0%},"
            f" a camera in range {in_range / n:.0%}, inside a building {blocked}"
        )
        ok = ok and sees / n >= MIN_SEES and in_range / n >= MIN_IN_RANGE and not blocked
    print("ok" if ok else "FAILED")
    return ok


def _lines(geometry: dict[str, Any]) -> list[LineString]:
    parts = geometry["coordinates"]
    parts = parts if geometry["type"] == "MultiLineString" else [parts]
    return [LineString([FRAME.lonlat_to_xy(lon, lat) for lon, lat in part]) for part in parts]


def _crosses(line: LineString, buildings: list[Polygon], tree: STRtree) -> bool:
    """The line's inside meets a building's inside (running along a wall is fine)."""
    return any(line.relate_pattern(buildings[i], "T********") for i in tree.query(line))
