"""The camera registry and the city's places, read from GeoJSON (RFC 7946, lon/lat order).

Import validates every feature and reports every error by feature index and property;
a file with any error changes nothing. Cameras are Point features; places are building
footprints (Polygon, MultiPolygon) and streets (LineString, MultiLineString with a name).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

import shapely
from shapely import Polygon

from ..errors import Unprocessable
from ..models import Camera, CameraKind
from ..store import Store

MAX_FEATURES = 200_000
CAMERA_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
URL_SCHEMES = {
    "vapix_url": ("http", "https"),
    "mjpeg_url": ("http", "https"),
    "rtsp_url": ("rtsp", "rtsps"),
}
MAX_ERRORS_SHOWN = 20
Masks = tuple[tuple[tuple[tuple[float, float], ...], ...], ...]


class GeoJSONError(Unprocessable):
    """A GeoJSON file that cannot be imported; `errors` lists every problem found."""

    def __init__(self, source: str, errors: list[str]) -> None:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = f"\n  … and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        super().__init__(
            f"{source}: {len(errors)} error(s), nothing imported:\n  " + "\n  ".join(shown) + more
        )
        self.errors = errors


@dataclass(frozen=True)
class Place:
    """A building footprint or a street, as GeoJSON geometry."""

    kind: str  # "building" or "street"
    name: str
    geometry: dict[str, Any]


def _features(document: Any, source: str) -> list[Any]:
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise GeoJSONError(source, ["the document is not a GeoJSON FeatureCollection"])
    features = document.get("features")
    if not isinstance(features, list):
        raise GeoJSONError(source, ["'features' is not a list"])
    if len(features) > MAX_FEATURES:
        raise GeoJSONError(source, [f"{len(features)} features: more than {MAX_FEATURES}"])
    return features


def load_json(text: str | bytes, source: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as err:
        raise GeoJSONError(source, [f"not JSON: {err}"]) from None
    except RecursionError:  # `[[[…` deeper than any GeoJSON geometry nests
        raise GeoJSONError(source, ["JSON nested too deeply"]) from None


def _lonlat(value: Any) -> tuple[float, float] | None:
    if (
        isinstance(value, list)
        and len(value) >= 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value[:2])
        and -180 <= value[0] <= 180
        and -90 <= value[1] <= 90
    ):
        return float(value[0]), float(value[1])
    return None


def _rings(coordinates: Any, where: str, errors: list[str]) -> list[list[tuple[float, float]]]:
    """Validated Polygon rings: closed, at least four positions, each a (lon, lat)."""
    if not isinstance(coordinates, list) or not coordinates:
        errors.append(f"{where}: a Polygon needs a list of rings")
        return []
    rings: list[list[tuple[float, float]]] = []
    for r, ring in enumerate(coordinates):
        found = [_lonlat(p) for p in ring] if isinstance(ring, list) else [None]
        points = [p for p in found if p is not None]
        if len(points) != len(found) or len(points) < 4:
            errors.append(f"{where} ring {r}: needs at least 4 [lon, lat] positions in range")
            continue
        if points[0] != points[-1]:
            errors.append(f"{where} ring {r}: not closed (first and last positions differ)")
            continue
        rings.append(points)
    if len(rings) == len(coordinates):
        # GIS exports hold bow-ties and holes outside their shell: GEOS fails on them later,
        # when the city is built, so they are refused here with their place in the file.
        reason = shapely.is_valid_reason(Polygon(rings[0], rings[1:]))
        if reason != "Valid Geometry":
            errors.append(f"{where}: not a valid polygon: {reason}")
            return []
    return rings


@dataclass(frozen=True)
class Bounds:
    """A camera property's allowed range, and its default when a feature leaves it out."""

    low: float
    high: float
    unit: str
    default: float | None = None  # None: required
    low_open: bool = False  # (low, high] rather than [low, high]

    def allows(self, value: float) -> bool:
        return (self.low < value if self.low_open else self.low <= value) and value <= self.high

    def rule(self) -> str:
        opening = "(" if self.low_open else "["
        return f"a number of {self.unit} in {opening}{self.low:g}, {self.high:g}]"


# The camera properties that are numbers, checked the same way; an error names the property
# and says the rule ("feature 3.properties.fov_deg: a number of degrees in (0, 360], got 0").
CAMERA_NUMBERS = {
    "heading_deg": Bounds(0, 360, "degrees"),
    "fov_deg": Bounds(0, 360, "degrees", low_open=True),
    "range_m": Bounds(0, 5000, "metres", low_open=True),
    "height_m": Bounds(0, 300, "metres", default=5.0),
    "pan_min_deg": Bounds(0, 360, "degrees", default=0.0),
    "pan_max_deg": Bounds(0, 360, "degrees", default=360.0),
    "tilt_min_deg": Bounds(-90, 90, "degrees", default=-90.0),
    "tilt_max_deg": Bounds(-90, 90, "degrees", default=0.0),
}
CAMERA_TEXTS = ("name", "commune", "vapix_url", "credentials_ref", "mjpeg_url", "rtsp_url")


def _number(
    props: dict[str, Any], key: str, bounds: Bounds, where: str, errors: list[str]
) -> float:
    value = props.get(key, bounds.default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not bounds.allows(value)  # first: a 400-digit integer is no float (isfinite)
        or not math.isfinite(value)
    ):
        errors.append(f"{where}.properties.{key}: {bounds.rule()}, got {value!r}")
        return 0.0
    return float(value)


def _text(
    props: dict[str, Any], key: str, where: str, errors: list[str], required: bool = False
) -> str:
    value = props.get(key, "")
    if not isinstance(value, str) or (required and not value) or len(value) > 500:
        errors.append(
            f"{where}.properties.{key}: "
            + ("required text" if required else "text of at most 500 characters")
            + f", got {value!r}"
        )
        return ""
    return value


def parse_cameras(document: Any, source: str = "cameras") -> list[Camera]:
    """Every camera of a FeatureCollection, or GeoJSONError listing every problem."""
    errors: list[str] = []
    cameras: list[Camera] = []
    seen: set[str] = set()
    for index, feature in enumerate(_features(document, source)):
        camera = _camera(feature, f"feature {index}", seen, errors)
        if camera is not None:
            cameras.append(camera)
    if errors:
        raise GeoJSONError(source, errors)
    return cameras


def _camera(feature: Any, where: str, seen: set[str], errors: list[str]) -> Camera | None:
    """One camera feature checked property by property; None (and `errors` says why) if any
    property is wrong."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        errors.append(f"{where}: not a GeoJSON Feature")
        return None
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict):
        geometry = {}
    point = _lonlat(geometry.get("coordinates")) if geometry.get("type") == "Point" else None
    if point is None:
        errors.append(f"{where}.geometry: a Point with [lon, lat] in range is required")
    props = feature.get("properties")
    if not isinstance(props, dict):
        errors.append(f"{where}.properties: missing")
        return None
    count = len(errors)
    camera_id = _camera_id(props, where, seen, errors)
    kind = props.get("kind")
    if not isinstance(kind, str) or kind not in {k.value for k in CameraKind}:
        errors.append(f"{where}.properties.kind: one of fixed, ptz, dome, got {kind!r}")
    masks = _privacy_masks(props, where, errors)
    numbers: dict[str, Any] = {
        key: _number(props, key, bounds, where, errors) for key, bounds in CAMERA_NUMBERS.items()
    }
    texts: dict[str, Any] = {key: _text(props, key, where, errors) for key in CAMERA_TEXTS}
    _check_urls(texts, where, errors)
    if len(errors) > count or point is None:
        return None
    return Camera(
        id=camera_id,
        kind=CameraKind(str(kind)),
        lat=point[1],
        lon=point[0],
        privacy_masks=masks,
        **numbers,
        **texts,
    )


def _camera_id(props: dict[str, Any], where: str, seen: set[str], errors: list[str]) -> str:
    camera_id = _text(props, "id", where, errors, required=True)
    if camera_id and not CAMERA_ID.fullmatch(camera_id):
        errors.append(
            f"{where}.properties.id: letters, digits, '.', '_' or '-' (at most 64),"
            f" got {camera_id!r}"
        )
    if camera_id in seen:
        errors.append(f"{where}.properties.id: {camera_id!r} appears twice")
    seen.add(camera_id)
    return camera_id


def _privacy_masks(props: dict[str, Any], where: str, errors: list[str]) -> Masks:
    raw = props.get("privacy_masks", [])
    if not isinstance(raw, list):
        errors.append(f"{where}.properties.privacy_masks: a list of Polygon geometries")
        return ()
    masks = []
    for m, mask in enumerate(raw):
        mask_where = f"{where}.properties.privacy_masks[{m}]"
        if not isinstance(mask, dict) or mask.get("type") != "Polygon":
            errors.append(f"{mask_where}: a GeoJSON Polygon geometry is required")
            continue
        rings = _rings(mask.get("coordinates"), mask_where, errors)
        masks.append(tuple(tuple(ring) for ring in rings))
    return tuple(masks)


def _check_urls(texts: dict[str, str], where: str, errors: list[str]) -> None:
    for key, schemes in URL_SCHEMES.items():
        if not texts[key]:
            continue
        url = urlsplit(texts[key])
        if url.scheme not in schemes or not url.hostname:
            errors.append(
                f"{where}.properties.{key}: a {' or '.join(schemes)} URL, got {texts[key]!r}"
            )
        elif url.username is not None or url.password is not None:
            # said without echoing the URL: it holds a password
            errors.append(
                f"{where}.properties.{key}: no user or password in the URL;"
                " name the credentials with credentials_ref"
            )


def camera_from_feature(feature: dict[str, Any]) -> Camera:
    """One camera from a feature `cameras_to_geojson` wrote (the store keeps them so)."""
    [camera] = parse_cameras({"type": "FeatureCollection", "features": [feature]})
    return camera


def cameras_to_geojson(cameras: list[Camera]) -> dict[str, Any]:
    """The registry as a FeatureCollection that `parse_cameras` reads back unchanged."""
    features = []
    for camera in cameras:
        props = {
            f.name: getattr(camera, f.name)
            for f in fields(camera)
            if f.name not in ("lat", "lon", "privacy_masks")
        }
        props["kind"] = camera.kind.value
        props["privacy_masks"] = [
            {"type": "Polygon", "coordinates": [[list(p) for p in ring] for ring in mask]}
            for mask in camera.privacy_masks
        ]
        features.append(
            {
                "type": "Feature",
                "properties": props,
                "geometry": {"type": "Point", "coordinates": [camera.lon, camera.lat]},
            }
        )
    return {"type": "FeatureCollection", "features": features}


def parse_places(document: Any, source: str = "places") -> list[Place]:
    """Buildings and streets of a FeatureCollection, or GeoJSONError listing every problem."""
    errors: list[str] = []
    places: list[Place] = []
    for index, feature in enumerate(_features(document, source)):
        where = f"feature {index}"
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict):
            errors.append(f"{where}: not a GeoJSON Feature with a geometry")
            continue
        props = feature.get("properties") or {}
        name = props.get("name", "") if isinstance(props, dict) else ""
        kind = geometry.get("type")
        coordinates = geometry.get("coordinates")
        if kind in ("Polygon", "MultiPolygon"):
            polygons = [coordinates] if kind == "Polygon" else coordinates
            if not isinstance(polygons, list):
                errors.append(f"{where}.geometry: a MultiPolygon needs a list of polygons")
                continue
            count = len(errors)
            for p, polygon in enumerate(polygons):
                _rings(polygon, f"{where}.geometry polygon {p}", errors)
            if len(errors) == count:
                places.append(Place("building", str(name), geometry))
        elif kind in ("LineString", "MultiLineString"):
            lines = [coordinates] if kind == "LineString" else coordinates
            if (
                not isinstance(lines, list)
                or not lines
                or any(
                    not isinstance(line, list)
                    or len(line) < 2
                    or None in [_lonlat(p) for p in line]
                    for line in lines
                )
            ):
                errors.append(f"{where}.geometry: lines of at least 2 [lon, lat] positions")
                continue
            if not isinstance(name, str) or not name:
                errors.append(f"{where}.properties.name: a street needs its name")
                continue
            places.append(Place("street", name, geometry))
        else:
            errors.append(
                f"{where}.geometry: a building (Polygon) or a street (LineString), got {kind!r}"
            )
    if errors:
        raise GeoJSONError(source, errors)
    return places


def import_cameras(store: Store, document: Any, source: str) -> list[Camera]:
    """Validate, then replace the whole registry in one transaction. Off the event loop
    (validating a large city takes a while): the store is reached with `store.call`."""
    cameras = parse_cameras(document, source)
    features = cameras_to_geojson(cameras)["features"]
    rows = [(c.id, json.dumps(f)) for c, f in zip(cameras, features, strict=True)]
    store.call(store.replace_cameras, rows)
    return cameras


def load_cameras(features: list[str]) -> list[Camera]:
    """The registry from the features the store keeps (`Store.camera_features`)."""
    return [camera_from_feature(json.loads(text)) for text in features]


def import_places(store: Store, document: Any, source: str) -> list[Place]:
    """Validate, then replace every place in one transaction; off the event loop."""
    places = parse_places(document, source)
    store.call(store.replace_places, [(p.kind, p.name, json.dumps(p.geometry)) for p in places])
    return places
