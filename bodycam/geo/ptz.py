"""Where to turn a PTZ camera to show an officer: pan, tilt and zoom in VAPIX units.

VAPIX `com/ptz.cgi` takes an absolute `pan` in degrees in [-180, 180] from the camera's
mechanical zero, `tilt` in degrees (negative looks down) and `zoom` in [1, 9999]. The
registry gives each PTZ camera the compass direction of its zero (`heading_deg`, its home
position), its mounting height, and its wide-end field of view (`fov_deg`).

Zoom: the picture should be about `SCENE_WIDTH_M` wide where the officer stands, enough
to show them and the people around them. The optical zoom factor is the ratio of the
tangents of the half-angles; the VAPIX scale is taken as linear from 1 (wide) to 9999
(MAX_OPTICAL_ZOOM), which is what our simulator does. Real Axis models map the scale to
focal length their own way; a model table would refine this, the direction would not change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..models import Camera

OFFICER_HEIGHT_M = 1.5  # aim at the chest, not the feet
SCENE_WIDTH_M = 12.0
MAX_OPTICAL_ZOOM = 30.0
VAPIX_ZOOM_MIN = 1
VAPIX_ZOOM_MAX = 9999


@dataclass(frozen=True)
class Aim:
    """An absolute PTZ position, ready for `ptz.cgi?pan=..&tilt=..&zoom=..`."""

    pan: float
    tilt: float
    zoom: int

    def differs(self, other: Aim | None, degrees: float, zoom_ratio: float) -> bool:
        """Whether moving from `other` to this is worth a command (None: always)."""
        if other is None:
            return True
        return (
            abs(_signed(self.pan - other.pan)) >= degrees
            or abs(self.tilt - other.tilt) >= degrees
            or abs(self.zoom - other.zoom) >= zoom_ratio * max(other.zoom, 1)
        )


def aim(camera: Camera, distance_m: float, bearing_deg: float) -> Aim:
    """Pan, tilt and zoom that centre a point `distance_m` away at compass `bearing_deg`."""
    pan = _signed(bearing_deg - camera.heading_deg)
    drop = camera.height_m - OFFICER_HEIGHT_M
    tilt = -math.degrees(math.atan2(drop, max(distance_m, 0.1)))
    tilt = min(max(tilt, camera.tilt_min_deg), camera.tilt_max_deg)
    wanted = 2.0 * math.atan(SCENE_WIDTH_M / 2.0 / max(distance_m, 0.1))
    wide = math.radians(min(camera.fov_deg, 179.0))
    factor = math.tan(wide / 2.0) / math.tan(min(wanted, wide) / 2.0)
    factor = min(factor, MAX_OPTICAL_ZOOM)
    zoom = VAPIX_ZOOM_MIN + (factor - 1.0) / (MAX_OPTICAL_ZOOM - 1.0) * (
        VAPIX_ZOOM_MAX - VAPIX_ZOOM_MIN
    )
    return Aim(round(pan, 2), round(tilt, 2), round(zoom))


def _signed(degrees: float) -> float:
    """An angle in [-180, 180)."""
    return (degrees + 180.0) % 360.0 - 180.0
