"""Camera registry and places from GeoJSON: round trips, and bad files that change nothing."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bodycam.cli import main
from bodycam.geo.registry import (
    GeoJSONError,
    cameras_to_geojson,
    load_cameras,
    load_json,
    parse_cameras,
    parse_places,
)
from bodycam.models import CameraKind
from bodycam.store import SqliteStore

OPEN_RING = {"type": "Polygon", "coordinates": [[[6, 49], [6.1, 49], [6.1, 49.1], [6, 49.2]]]}
BOW_TIE = {
    "type": "Polygon",
    "coordinates": [[[6.17, 49.11], [6.18, 49.12], [6.18, 49.11], [6.17, 49.12], [6.17, 49.11]]],
}
SHORT_RING = {"type": "Polygon", "coordinates": [[[6, 49], [6.1, 49], [6.1, 49.1]]]}
MASK = {
    "type": "Polygon",
    "coordinates": [[[6.1760, 49.1190], [6.1762, 49.1190], [6.1762, 49.1192], [6.1760, 49.1190]]],
}


def feature(**props: Any) -> dict[str, Any]:
    base = {
        "id": "cam-01",
        "name": "Place Mandela nord",
        "kind": "ptz",
        "heading_deg": 180,
        "fov_deg": 60,
        "range_m": 120,
        "height_m": 8,
        "pan_min_deg": 0,
        "pan_max_deg": 360,
        "commune": "Metz",
        "vapix_url": "http://127.0.0.1:9000/cam-01",
        "credentials_ref": "vault:cctv/cam-01",
        "mjpeg_url": "",
        "rtsp_url": "",
        "privacy_masks": [MASK],
    }
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [6.1764, 49.1196]},
        "properties": {**base, **props},
    }


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def test_cameras_round_trip() -> None:
    [camera] = parse_cameras(collection(feature()))
    assert camera.kind == CameraKind.PTZ
    assert (camera.lat, camera.lon) == (49.1196, 6.1764)  # GeoJSON is lon, lat
    assert camera.privacy_masks[0][0][1] == (6.1762, 49.1190)
    assert parse_cameras(cameras_to_geojson([camera])) == [camera]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"type": "Feature"}, "not a GeoJSON FeatureCollection"),
        (collection(feature(fov_deg=0)), "feature 0.properties.fov_deg: a number of degrees in"),
        (
            collection(feature(), feature(kind="drone", id="cam-02")),
            "feature 1.properties.kind: one of fixed, ptz, dome, got 'drone'",
        ),
        (collection(feature(), feature()), "feature 1.properties.id: 'cam-01' appears twice"),
        (collection(feature(range_m="far")), "feature 0.properties.range_m"),
        (collection(feature(id="")), "feature 0.properties.id: required text"),
        (
            collection({**feature(), "geometry": {"type": "Point", "coordinates": [200, 49]}}),
            "feature 0.geometry: a Point with [lon, lat] in range",
        ),
        (
            collection(feature(privacy_masks=[SHORT_RING])),
            "feature 0.properties.privacy_masks[0] ring 0: needs at least 4",
        ),
        (collection(feature(privacy_masks=[OPEN_RING])), "not closed"),
        (
            collection(feature(id="cam 01/../x")),
            "feature 0.properties.id: letters, digits, '.', '_' or '-' (at most 64)",
        ),
        (
            collection(feature(vapix_url="ftp://10.0.0.5/")),
            "feature 0.properties.vapix_url: a http or https URL, got 'ftp://10.0.0.5/'",
        ),
        (
            collection(feature(rtsp_url="http://10.0.0.5/axis-media/media.amp")),
            "feature 0.properties.rtsp_url: a rtsp or rtsps URL",
        ),
        (collection(feature(mjpeg_url="video.cgi")), "feature 0.properties.mjpeg_url"),
        (
            collection(feature(rtsp_url="rtsp://root:topsecret@10.0.0.5/axis-media/media.amp")),
            "feature 0.properties.rtsp_url: no user or password in the URL; name the credentials",
        ),
        (
            collection(feature(privacy_masks=[BOW_TIE])),
            "feature 0.properties.privacy_masks[0]: not a valid polygon: Self-intersection",
        ),
        (  # found by tests/test_fuzz_http.py: an AttributeError, not the file's error
            collection({**feature(), "geometry": [6.17, 49.12]}),
            "feature 0.geometry: a Point with [lon, lat] in range is required",
        ),
    ],
)
def test_bad_camera_files_name_feature_and_property(document: Any, message: str) -> None:
    with pytest.raises(GeoJSONError) as caught:
        parse_cameras(document, "cams.geojson")
    assert message in str(caught.value)
    assert str(caught.value).startswith("cams.geojson:")


def test_json_nested_too_deeply_is_a_file_error() -> None:
    """Found by tests/test_fuzz_http.py: `bodycam places import` ended in a RecursionError."""
    with pytest.raises(GeoJSONError, match=r"places.geojson: 1 error(?s:.*)nested too deeply"):
        load_json("[" * 10_000, "places.geojson")


def test_every_error_is_reported_at_once() -> None:
    with pytest.raises(GeoJSONError) as caught:
        parse_cameras(collection(feature(fov_deg=-1), feature(id="b", kind="x", range_m=0)))
    assert len(caught.value.errors) == 3


def test_places() -> None:
    building = {"type": "Feature", "properties": {}, "geometry": MASK}
    street = {
        "type": "Feature",
        "properties": {"name": "Rue Dupont-des-Loges"},
        "geometry": {"type": "LineString", "coordinates": [[6.17, 49.11], [6.18, 49.12]]},
    }
    places = parse_places(collection(building, street))
    assert [(p.kind, p.name) for p in places] == [
        ("building", ""),
        ("street", "Rue Dupont-des-Loges"),
    ]
    nameless = copy.deepcopy(street)
    nameless["properties"] = {}
    with pytest.raises(GeoJSONError, match=r"feature 1\.properties\.name: a street needs"):
        parse_places(collection(building, nameless))
    bow_tie = {"type": "Feature", "properties": {}, "geometry": BOW_TIE}
    with pytest.raises(
        GeoJSONError, match=r"feature 2\.geometry polygon 0: not a valid polygon: Self-inter"
    ):
        parse_places(collection(building, street, bow_tie))


def test_cli_import_is_all_or_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "cameras.geojson"
    good.write_text(json.dumps(collection(feature(), feature(id="cam-02", kind="fixed"))))
    assert main(["cameras", "import", str(good), "--data-dir", str(tmp_path)]) == 0
    assert "imported 2 cameras" in capsys.readouterr().out
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps(collection(feature(id="cam-03"), feature(id="cam-04", fov_deg=400))))
    assert main(["cameras", "import", str(bad), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "feature 1.properties.fov_deg" in err
    assert "nothing imported" in err
    store = SqliteStore(tmp_path / "bodycam.sqlite3")
    features = store.call(store.camera_features)
    assert [c.id for c in load_cameras(features)] == ["cam-01", "cam-02"]  # unchanged
    store.close()
    out = tmp_path / "export.geojson"
    assert main(["cameras", "export", "--out", str(out), "--data-dir", str(tmp_path)]) == 0
    assert [c.id for c in parse_cameras(json.loads(out.read_text()))] == ["cam-01", "cam-02"]
    assert (
        main(["cameras", "import", str(tmp_path / "none.geojson"), "--data-dir", str(tmp_path)])
        == 2
    )
    assert "cannot read" in capsys.readouterr().err
