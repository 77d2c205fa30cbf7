"""PTZ aim: pan, tilt and zoom toward an officer, in VAPIX units, as a table of cases."""

from __future__ import annotations

import math

import pytest

from bodycam.geo.ptz import MAX_OPTICAL_ZOOM, OFFICER_HEIGHT_M, Aim, aim
from bodycam.models import Camera, CameraKind

PTZ = Camera(
    "ptz", "ptz", CameraKind.PTZ, 49.12, 6.17, heading_deg=90.0, fov_deg=60.0, range_m=200.0,
    height_m=6.0,
)  # fmt: skip


@pytest.mark.parametrize(
    ("bearing", "pan"),
    [(90, 0.0), (0, -90.0), (180, 90.0), (270, -180.0), (300, -150.0), (89, -1.0), (91, 1.0)],
)
def test_pan_is_relative_to_the_cameras_zero(bearing: float, pan: float) -> None:
    assert aim(PTZ, 40.0, bearing).pan == pytest.approx(pan)


def test_tilt_looks_down_at_the_officer_more_the_closer_they_are() -> None:
    drop = PTZ.height_m - OFFICER_HEIGHT_M
    near, far = aim(PTZ, 10.0, 90), aim(PTZ, 100.0, 90)
    assert near.tilt == pytest.approx(-math.degrees(math.atan2(drop, 10.0)), abs=0.01)
    assert far.tilt == pytest.approx(-math.degrees(math.atan2(drop, 100.0)), abs=0.01)
    assert near.tilt < far.tilt < 0


def test_tilt_stays_within_the_cameras_limits() -> None:
    low = Camera(**{**PTZ.__dict__, "height_m": 0.5})  # below the officer's chest
    assert aim(low, 20.0, 90).tilt == low.tilt_max_deg
    limited = Camera(**{**PTZ.__dict__, "tilt_min_deg": -30.0})
    assert aim(limited, 2.0, 90).tilt == -30.0


@pytest.mark.parametrize(
    ("distance", "zoom"),
    [
        (5.0, 1),  # wider than the wide end: no zoom
        (10.4, 1),  # the 12 m scene fills the 60° wide end at about 10.4 m
        (1000.0, 9999),  # clamped at the longest focal length
    ],
)
def test_zoom_bounds(distance: float, zoom: int) -> None:
    assert aim(PTZ, distance, 90).zoom == zoom


def test_zoom_grows_with_distance_so_the_scene_keeps_its_width() -> None:
    zooms = [aim(PTZ, d, 90).zoom for d in (20, 40, 80, 160)]
    assert zooms == sorted(zooms)
    assert len(set(zooms)) == 4
    # at 40 m the optical factor is tan(30°) / tan(atan(6 / 40)) = 3.85
    factor = math.tan(math.radians(30)) / (6 / 40)
    assert aim(PTZ, 40, 90).zoom == round(1 + (factor - 1) / (MAX_OPTICAL_ZOOM - 1) * 9998)


@pytest.mark.parametrize(
    ("new", "old", "worth"),
    [
        (Aim(10, -5, 100), None, True),
        (Aim(10, -5, 100), Aim(10, -5, 100), False),
        (Aim(11.5, -5, 100), Aim(10, -5, 100), False),
        (Aim(12, -5, 100), Aim(10, -5, 100), True),
        (Aim(-179, -5, 100), Aim(179, -5, 100), True),  # 2° across the ±180 seam
        (Aim(-179.5, -5, 100), Aim(179.5, -5, 100), False),
        (Aim(10, -7, 100), Aim(10, -5, 100), True),
        (Aim(10, -5, 120), Aim(10, -5, 100), False),
        (Aim(10, -5, 130), Aim(10, -5, 100), True),
    ],
)
def test_a_move_is_sent_only_when_it_changes_the_picture(
    new: Aim, old: Aim | None, worth: bool
) -> None:
    assert new.differs(old, degrees=2.0, zoom_ratio=0.25) is worth
