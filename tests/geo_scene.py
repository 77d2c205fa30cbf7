"""The geo tests' scene: points and fixes in metres around a fixed origin, and a street
("Rue du Test") with its cameras, a building block and a walking officer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bodycam.config import Config
from bodycam.geo.geometry import LocalFrame
from bodycam.geo.registry import import_cameras, import_places
from bodycam.models import Position
from bodycam.store import Store
from simulators.axis_camera import AxisCameraSimulator
from simulators.gps import Position as GpsPosition
from simulators.gps import Route, Walk

FRAME = LocalFrame(49.1196, 6.1764)  # place d'Armes, Metz
T0 = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)


def at(x: float, y: float) -> tuple[float, float]:
    """(lat, lon) of a point x metres east, y metres north of the origin."""
    lon, lat = FRAME.xy_to_lonlat(x, y)
    return lat, lon


def fix(x: float, y: float, seconds: float = 0.0, accuracy: float = 5.0) -> Position:
    """A GPS fix at (x, y) metres, `seconds` after T0."""
    lat, lon = at(x, y)
    return Position(lat, lon, accuracy, T0 + timedelta(seconds=seconds))


def line(*points: tuple[float, float]) -> dict[str, Any]:
    """A GeoJSON LineString through points given in metres."""
    return {"type": "LineString", "coordinates": [list(reversed(at(x, y))) for x, y in points]}


CAMERA_PASSWORD = "s3cret-csu"  # of the scene's simulated Axis cameras
SPEED = 20.0  # m/s: the officer runs the 200 m street in 10 s


def point(x: float, y: float) -> list[float]:
    lat, lon = at(x, y)
    return [lon, lat]


def camera(cid: str, kind: str, x: float, y: float, heading: float, **props: Any) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": point(x, y)},
        "properties": {
            "id": cid,
            "name": f"Caméra {cid}",
            "kind": kind,
            "heading_deg": heading,
            "fov_deg": 60,
            "range_m": 100,
            "height_m": 8,
            "credentials_ref": "csu",
            **props,
        },
    }


SCENE_CAMERAS = [
    camera("fixed-west", "fixed", -120, 5, 90),  # looks east along the street
    camera("fixed-east", "fixed", 120, 5, 270),  # looks west along the street
    camera("ptz-1", "ptz", 0, -10, 0, range_m=150),  # zero north: must turn to the street
    camera("behind", "fixed", 0, 70, 180),  # looks south, but through the block
    camera("offline", "dome", 300, 300, 0),  # far away, and switched off
    camera("unwired", "fixed", -300, 300, 0),  # in the registry, no VAPIX URL yet
]
BLOCK = [[point(-100, 15), point(100, 15), point(100, 60), point(-100, 60), point(-100, 15)]]
PLACES = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"name": "Rue du Test"},
            "geometry": line((-200, 0), (200, 0)),
        },
        {
            "type": "Feature",
            "properties": {},
            "geometry": {"type": "Polygon", "coordinates": BLOCK},
        },
    ],
}


def street_walk() -> Walk:
    route = Route("rue du Test", tuple(GpsPosition(*at(x, 0)) for x in (-100, 100)))
    return Walk(route=route, speed=SPEED, end="bounce", seed=3)


def import_street(store: Store, cameras: AxisCameraSimulator) -> None:
    """The street scene into a store, each wired camera at its simulator's address."""
    wired = {c.id for c in cameras.cameras} - {"unwired"}
    features = [
        {**f, "properties": {**f["properties"], "vapix_url": cameras.base_url(cid)}}
        if (cid := f["properties"]["id"]) in wired
        else f
        for f in SCENE_CAMERAS
    ]
    import_cameras(store, {"type": "FeatureCollection", "features": features}, "scene")
    import_places(store, PLACES, "scene")


def give_camera_password(config: Config) -> None:
    """The scene cameras' credentials, where the gateway looks for them."""
    config.camera_credentials_path.parent.mkdir(parents=True, exist_ok=True)
    config.camera_credentials_path.write_text(
        f'[csu]\nusername = "root"\npassword = "{CAMERA_PASSWORD}"\n'
    )
    config.camera_credentials_path.chmod(0o600)
