"""Generate the demo city of Metz (places.geojson, cameras.geojson) from the plan in layout.py.

Streets and squares are kept open; what remains of the land is cut into blocks, and each
block into building lots along its street fronts round a courtyard (or into slices when it
is too narrow for one). Frontages and depths come from a seeded generator: the same plan
always gives the same files, byte for byte.

    python -m simulators.data.metz.make_city            # write both files
    python -m simulators.data.metz.make_city --check    # measure them (see check.py)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shapely import (
    LineString,
    MultiLineString,
    Polygon,
    STRtree,
    affinity,
    box,
    polygonize,
    unary_union,
)
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient
from shapely.ops import split

if not __package__:  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bodycam.geo.geometry import LocalFrame, bearing_deg
from simulators.data.metz import layout
from simulators.data.metz.layout import XY, Along, Facade, Kerb, Route

HERE = Path(__file__).resolve().parent
ROUTES_DIR = HERE.parent / "routes"
ROUTE_NAMES = ("metz-mandela", "metz-charrons", "metz-comedie")
FRAME = LocalFrame(*layout.ORIGIN)
SEED = 57  # the Moselle's département number
DIGITS = 6  # decimals of a degree: about 10 cm

DEPTH_M = (11.0, 17.0)  # how deep lots reach from the street, per block
FRONTAGE_M = (16.0, 30.0)
YARD_M = (7.0, 12.0)  # between the street-front lots and those round an inner court
MIN_COURT_M2 = 4000.0  # a courtyard this large gets lots of its own
MIN_LOT_M2 = 35.0
OPENING_M = 2.0  # no part of a block narrower than twice this
SQUARE_INSET_M = 2.0  # a square's outline is drawn just inside its edge

DEFAULT_FOV = {"fixed": 70.0, "ptz": 60.0, "dome": 110.0}
VAPIX = "http://127.0.0.1:8091"  # the camera simulator
RTSP = "rtsp://127.0.0.1:8554"


@dataclass(frozen=True)
class City:
    """The plan resolved to shapes in local metres."""

    centre_lines: dict[str, LineString]
    widths: dict[str, float]
    squares: dict[str, BaseGeometry]  # a Polygon, unless a landmark cuts one in two
    spines: dict[str, LineString | None]
    landmarks: dict[str, Polygon]
    lots: list[Polygon]


def load_route(name: str) -> list[XY]:
    """A demo route's vertices in local metres."""
    document = json.loads((ROUTES_DIR / f"{name}.geojson").read_text(encoding="utf-8"))
    [feature] = document["features"]
    return [FRAME.lonlat_to_xy(lon, lat) for lon, lat in feature["geometry"]["coordinates"]]


def _points(parts: Iterable[XY | Route], routes: dict[str, list[XY]]) -> list[XY]:
    points: list[XY] = []
    for part in parts:
        if isinstance(part, Route):
            points += routes[part.name][part.start : part.stop]
        else:
            points.append(part)
    return points


def landmark_shape(landmark: layout.Landmark) -> Polygon:
    """The footprint: drawn along the x axis round the origin, then turned and moved."""
    length, depth = landmark.length, landmark.depth
    shape = box(-length / 2, -depth / 2, length / 2, depth / 2)
    if landmark.arms:
        offset, span, width = landmark.arms
        shape = shape.union(box(offset - width / 2, -span / 2, offset + width / 2, span / 2))
    shape = affinity.rotate(shape, 90.0 - landmark.bearing, origin=(0, 0))
    return orient(affinity.translate(shape, *landmark.centre))


def build() -> City:
    """Resolve the plan and cut the land into lots."""
    routes = {name: load_route(name) for name in ROUTE_NAMES}
    landmarks = {lm.name: landmark_shape(lm) for lm in layout.LANDMARKS}
    kept_clear = unary_union(
        [landmarks[lm.name].buffer(lm.clearance, join_style="mitre") for lm in layout.LANDMARKS]
    )
    squares, spines = {}, {}
    for square in layout.SQUARES:
        outline = _points(square.outline, routes)
        area = Polygon(outline).buffer(square.margin, join_style="mitre")
        area = area.difference(kept_clear).simplify(0.5)
        squares[square.name] = _starting_near(area, outline[0])
        spine = _points(square.spine, routes)
        spines[square.name] = LineString(spine) if spine else None
    centre_lines = {s.name: LineString(_points(s.line, routes)) for s in layout.STREETS}
    widths = {s.name: s.width for s in layout.STREETS}
    streets = [
        line.buffer(widths[name] / 2, cap_style="square", join_style="mitre")
        for name, line in centre_lines.items()
    ]
    land = unary_union([Polygon(ring) for ring in layout.LAND])
    blocks = land.difference(unary_union([*streets, *squares.values(), kept_clear]))
    # an opening drops the slivers and spikes left where two open areas nearly meet
    blocks = blocks.buffer(-OPENING_M, join_style="mitre").buffer(OPENING_M, join_style="mitre")
    rng = random.Random(SEED)
    lots = []
    for block in sorted(
        _polygons(blocks), key=lambda b: (round(b.centroid.y), round(b.centroid.x))
    ):
        lots += cut_block(block, rng)
    return City(centre_lines, widths, squares, spines, landmarks, _noded(lots))


def _starting_near(area: BaseGeometry, point: XY) -> BaseGeometry:
    """The area, its outline anticlockwise from the corner nearest `point` (where Kerb counts)."""
    if not isinstance(area, Polygon):
        return area
    area = orient(area)
    corners = list(area.exterior.coords)[:-1]
    first = min(range(len(corners)), key=lambda i: math.dist(corners[i], point))
    return Polygon(corners[first:] + corners[:first], [r.coords for r in area.interiors])


def _polygons(geometry: BaseGeometry) -> list[Polygon]:
    parts = getattr(geometry, "geoms", [geometry])
    return [g for g in parts if isinstance(g, Polygon) and not g.is_empty]


def _lines(geometry: BaseGeometry) -> list[LineString]:
    parts = getattr(geometry, "geoms", [geometry])
    return [g for g in parts if isinstance(g, LineString) and not g.is_empty]


def cut_block(block: Polygon, rng: random.Random, courts_left: int = 1) -> list[Polygon]:
    """Building lots of one block: a ring of lots round a courtyard, or slices across."""
    block = block.simplify(0.3)
    if block.area < MIN_LOT_M2:
        return []
    depth = rng.uniform(*DEPTH_M)
    courtyard = block.buffer(-depth, join_style="mitre")
    if courtyard.area < 120.0:
        return _keep(split(block, _slices(block, rng)).geoms)
    inner = []
    if courts_left and courtyard.area >= MIN_COURT_M2:
        for court in _polygons(courtyard.buffer(-rng.uniform(*YARD_M), join_style="mitre")):
            inner += cut_block(court, rng, courts_left - 1)
    cuts = []
    ring = orient(Polygon(block.exterior)).exterior.coords
    for (ax, ay), (bx, by) in itertools.pairwise(ring):
        length = math.hypot(bx - ax, by - ay)
        count = max(1, round(length / rng.uniform(*FRONTAGE_M)))
        nx, ny = -(by - ay) / length, (bx - ax) / length  # inwards: a CCW ring's left
        for i in range(1, count):
            px, py = ax + (bx - ax) * i / count, ay + (by - ay) * i / count
            reach = depth + 2.0
            cuts.append([(px - nx, py - ny), (px + nx * reach, py + ny * reach)])
    band = block.difference(courtyard)
    return _keep(split(band, MultiLineString(cuts)).geoms if cuts else [band]) + inner


def _slices(block: Polygon, rng: random.Random) -> MultiLineString:
    """Cuts across a narrow block, square to its longest side."""
    (ax, ay), (bx, by), (cx, cy), *_ = block.minimum_rotated_rectangle.exterior.coords
    if math.hypot(bx - ax, by - ay) < math.hypot(cx - bx, cy - by):
        (ax, ay), (bx, by) = (bx, by), (cx, cy)
    length = math.hypot(bx - ax, by - ay)
    ux, uy = (bx - ax) / length, (by - ay) / length
    reach = length + 50.0
    lines, along = [], rng.uniform(*FRONTAGE_M)
    while along < length - FRONTAGE_M[0] / 2:
        px, py = ax + ux * along, ay + uy * along
        lines.append([(px + uy * reach, py - ux * reach), (px - uy * reach, py + ux * reach)])
        along += rng.uniform(*FRONTAGE_M)
    return MultiLineString(lines)


def _keep(pieces: Iterable[BaseGeometry]) -> list[Polygon]:
    """Lots big and compact enough to be buildings (no slivers where cuts met)."""
    return [
        orient(p)
        for piece in pieces
        for p in _polygons(piece)
        if p.is_valid and p.area >= MIN_LOT_M2 and p.area / p.length**2 >= 0.02
    ]


def _noded(lots: list[Polygon]) -> list[Polygon]:
    """The lots again, each with a vertex wherever a neighbour's corner touches its side.

    Neighbours then share their walls vertex for vertex, and rounding the coordinates to
    DIGITS moves both sides alike: no overlap appears where one lot's corner met the middle
    of another's wall.
    """
    rings = [ring for lot in lots for ring in (lot.exterior, *lot.interiors)]
    tree = STRtree(lots)
    faces = []
    for face in polygonize([unary_union(rings)]).geoms:
        inside = tree.query(face.representative_point(), predicate="within")
        if len(inside) and face.area >= MIN_LOT_M2:
            faces.append((int(inside[0]), orient(face)))
    return [face for _, face in sorted(faces, key=lambda item: item[0])]


# --- GeoJSON ------------------------------------------------------------------------------


def _lonlat(points: Iterable[Sequence[float]]) -> list[list[float]]:
    return [[round(v, DIGITS) for v in FRAME.xy_to_lonlat(x, y)] for x, y, *_ in points]


def _polygon(polygon: Polygon) -> dict[str, Any]:
    rings = [polygon.exterior, *polygon.interiors]
    return {"type": "Polygon", "coordinates": [_lonlat(r.coords) for r in rings]}


def _multiline(lines: Sequence[LineString]) -> dict[str, Any]:
    if len(lines) == 1:
        return {"type": "LineString", "coordinates": _lonlat(lines[0].coords)}
    return {"type": "MultiLineString", "coordinates": [_lonlat(line.coords) for line in lines]}


def _feature(properties: dict[str, Any], geometry: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def place_features(city: City) -> list[dict[str, Any]]:
    """Streets, squares, then buildings (landmarks first)."""
    features = []
    squares = unary_union(list(city.squares.values()))
    for name, line in city.centre_lines.items():
        # inside a square, the square's name is the address
        lines = _lines(line.difference(squares))
        if lines:
            features.append(_feature({"name": name, "kind": "street"}, _multiline(lines)))
    for name, area in city.squares.items():
        inner = area.buffer(-SQUARE_INSET_M, join_style="mitre")
        lines = [LineString(p.exterior.coords) for p in _polygons(inner)]
        spine = city.spines[name]
        if spine is not None:
            lines += _lines(spine.intersection(inner))
        features.append(_feature({"name": name, "kind": "street"}, _multiline(lines)))
    for name, shape in city.landmarks.items():
        features.append(_feature({"name": name, "kind": "building"}, _polygon(shape)))
    for lot in city.lots:
        geometry = _polygon(lot)
        # a lot thinner somewhere than the rounding would cross itself: leave it out
        if FRAME.polygon(geometry["coordinates"]).is_valid:
            features.append(_feature({"kind": "building"}, geometry))
    return features


def _edge(name: str, city: City) -> tuple[LineString, float]:
    """The line a Kerb or Facade is measured along, and its distance to the façades."""
    if name in city.centre_lines:
        return city.centre_lines[name], city.widths[name] / 2
    [area] = _polygons(city.squares[name])
    return LineString(area.exterior.coords), 0.0


def _kerb(name: str, at: float, side: str, inset: float, city: City) -> tuple[XY, XY]:
    """A point `inset` metres in front of a façade, and the unit vector along the façade."""
    line, half = _edge(name, city)
    at = at if at >= 0 else line.length + at
    point = line.interpolate(at)
    before, after = line.interpolate(max(at - 1, 0)), line.interpolate(min(at + 1, line.length))
    norm = math.hypot(after.x - before.x, after.y - before.y)
    ux, uy = (after.x - before.x) / norm, (after.y - before.y) / norm
    # how far to the left of the line: a square's edge runs anticlockwise, inside on its left
    left = {"left": half - inset, "right": inset - half}[side] if half else inset
    return (point.x - uy * left, point.y + ux * left), (ux, uy)


def _anchor(anchor: layout.Anchor, city: City) -> XY:
    if isinstance(anchor, Kerb):
        return _kerb(anchor.street, anchor.at, anchor.side, anchor.inset, city)[0]
    if isinstance(anchor, Along):
        line = city.centre_lines[anchor.street]
        point = line.interpolate(anchor.at if anchor.at >= 0 else line.length + anchor.at)
        return point.x, point.y
    return anchor


def _mask(facade: Facade, city: City) -> Polygon:
    """From a metre inside the façade to `depth` metres in front of it, `length` along it."""
    (x, y), (ux, uy) = _kerb(facade.street, facade.at, facade.side, -1.0, city)
    _, half = _edge(facade.street, city)
    # the façade faces the open ground: a square's inside, a street's other side
    nx, ny = (-uy, ux) if half == 0.0 or facade.side == "right" else (uy, -ux)
    depth, along = facade.depth + 1.0, facade.length / 2
    return orient(
        Polygon(
            [
                (x - ux * along, y - uy * along),
                (x + ux * along, y + uy * along),
                (x + ux * along + nx * depth, y + uy * along + ny * depth),
                (x - ux * along + nx * depth, y - uy * along + ny * depth),
            ]
        )
    )


def camera_features(city: City) -> list[dict[str, Any]]:
    """The cameras with every registry property (parse_cameras reads them)."""
    features = []
    for n, cam in enumerate(layout.CAMERAS, start=1):
        camera_id = f"metz-cam-{n:02d}"
        x, y = _anchor(cam.at, city)
        if isinstance(cam.look, int | float):
            heading = float(cam.look)
        else:
            tx, ty = _anchor(cam.look, city)
            heading = bearing_deg(tx - x, ty - y)
        props: dict[str, Any] = {
            "id": camera_id,
            "name": cam.name,
            "kind": cam.kind,
            "heading_deg": _number(round(heading, 1) % 360),
            "fov_deg": _number(cam.fov_deg or DEFAULT_FOV[cam.kind]),
            "range_m": _number(cam.range_m),
            "height_m": _number(cam.height_m),
        }
        if cam.kind == "ptz":
            props |= {
                "pan_min_deg": cam.pan[0],
                "pan_max_deg": cam.pan[1],
                "tilt_min_deg": -90,
                "tilt_max_deg": 0,
            }
        props |= {
            "commune": "Metz",
            "vapix_url": f"{VAPIX}/{camera_id}/",
            "credentials_ref": "csu-metz",
            "mjpeg_url": f"{VAPIX}/{camera_id}/axis-cgi/mjpg/video.cgi",
            "rtsp_url": f"{RTSP}/{camera_id}/axis-media/media.amp",
            "privacy_masks": [_polygon(_mask(m, city)) for m in cam.masks],
        }
        [point] = _lonlat([(x, y)])
        features.append(_feature(props, {"type": "Point", "coordinates": point}))
    return features


def _number(value: float) -> float | int:
    """60 rather than 60.0 in the file."""
    return int(value) if float(value).is_integer() else value


def write_collection(path: Path, features: list[dict[str, Any]]) -> None:
    """Compact JSON, one feature a line (readable diffs)."""
    lines = [json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in features]
    text = '{"type":"FeatureCollection","features":[\n' + ",\n".join(lines) + "\n]}\n"
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="measure the files instead of writing them"
    )
    parser.add_argument("--output", type=Path, default=HERE, help="where the two files are")
    args = parser.parse_args(argv)
    if args.check:
        from simulators.data.metz.check import check

        return 0 if check(args.output) else 1
    city = build()
    for name, features in (
        ("places.geojson", place_features(city)),
        ("cameras.geojson", camera_features(city)),
    ):
        write_collection(args.output / name, features)
        print(f"wrote {args.output / name}: {len(features)} features")
    return 0


if __name__ == "__main__":
    sys.exit(main())
