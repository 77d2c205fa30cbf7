"""The picture of a simulated Axis camera: a cheap drawn scene, its name, the clock, its PTZ.

The scene (sky, paved ground, a skyline fixed per camera) moves with pan, tilt and zoom, so
a test can tell from the JPEG alone that a camera was turned. The VAPIX zoom scale is linear
in optical factor up to `MAX_OPTICAL_ZOOM`, as bodycam's aim assumes.
"""

from __future__ import annotations

import functools
import io
import random
import threading
import unicodedata
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bodycam.geo.ptz import MAX_OPTICAL_ZOOM

WIDE_FOV_DEG = 60.0
SKY_TOP, SKY_LOW = np.array([70, 120, 200]), np.array([190, 220, 240])  # RGB
GROUND_FAR, GROUND_NEAR = np.array([95, 105, 80]), np.array([45, 55, 40])
_TYPOGRAPHY = str.maketrans(
    {"–": "-", "—": "-", "’": "'", "«": '"', "»": '"', "œ": "oe", "Œ": "OE"}
)


@dataclass(frozen=True)
class View:
    """What one JPEG shows, and its cache key: the clock is to the second."""

    camera_id: str
    name: str
    kind: str
    position: tuple[float, float, float]
    size: tuple[int, int]
    clock: str


@functools.lru_cache(maxsize=256)
def _font(size: int, thread: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font, one per thread: a FreeType face is not safe to share."""
    return ImageFont.load_default(size)


def render_jpeg(view: View) -> bytes:
    """The camera's picture: its scene under Axis-like overlay boxes, as a JPEG."""
    image = _scene(view)
    _overlay(image, view)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    return buffer.getvalue()


def _scene(view: View) -> Image.Image:
    """Sky, paved ground and buildings as seen at the view's pan, tilt and zoom."""
    (width, height), (pan, tilt, zoom) = view.size, view.position
    optical = 1.0 + (zoom - 1.0) / 9998.0 * (MAX_OPTICAL_ZOOM - 1.0)
    per_degree = width * optical / WIDE_FOV_DEG  # pixels
    horizon = height / 2 + tilt * per_degree  # looking down raises the horizon
    rows = np.arange(height, dtype=np.float32)[:, None]
    sky = SKY_TOP + (SKY_LOW - SKY_TOP) * np.clip(rows / max(horizon, 1), 0, 1)
    ground = GROUND_FAR + (GROUND_NEAR - GROUND_FAR) * np.clip((rows - horizon) / height, 0, 1)
    column = np.where(rows < horizon, sky, ground).astype(np.uint8)
    # Paving: squares 10 degrees of azimuth wide, in rows by the angle below the horizon.
    azimuths = pan + (np.arange(width) - width / 2) / per_degree
    below = np.log2(np.maximum(rows - horizon, 1) / per_degree)
    across = (np.floor(azimuths / 10) % 2).astype(np.uint8)
    along = (np.floor(below * 2) % 2).astype(np.uint8)
    paving = (across ^ along) * (rows >= horizon).astype(np.uint8) * 12
    bands = [Image.fromarray(column[:, [band]] - paving) for band in range(3)]  # fast in 2-D
    image = Image.merge("RGB", bands)
    draw = ImageDraw.Draw(image)
    rng = random.Random(view.camera_id)  # the same skyline every time for one camera
    for _ in range(40):
        bearing, span, rise = rng.uniform(-180, 180), rng.uniform(3, 14), rng.uniform(2, 12)
        shade = rng.randrange(60, 180)
        left = width / 2 + (((bearing - pan + 180) % 360 - 180) - span / 2) * per_degree
        right, top = left + span * per_degree, horizon - rise * per_degree
        if left < width and right > 0:
            draw.rectangle((left, top, right, horizon), fill=(shade, shade - 10, shade - 30))
    return image


def _ascii(text: str) -> str:
    """Text as Pillow's built-in font can draw it (ASCII): "Comédie – mât" → "Comedie - mat"."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_TYPOGRAPHY))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return plain.encode("ascii", "replace").decode()


def _overlay(image: Image.Image, view: View) -> None:
    """Name (and PTZ position) top left, clock bottom left: white on black boxes."""
    lines = [_ascii(view.name)]
    if view.kind == "ptz":
        pan, tilt, zoom = view.position
        lines.append(f"PTZ pan {pan:.1f}° tilt {tilt:.1f}° zoom {zoom:g}")
    draw = ImageDraw.Draw(image)
    size = max(10, image.height // 20)
    font = _font(size, threading.get_ident())
    for xy, text in (((6, 4), "\n".join(lines)), ((6, image.height - size - 10), view.clock)):
        left, top, right, bottom = draw.multiline_textbbox(xy, text, font)
        draw.rectangle((left - 4, top - 3, right + 4, bottom + 3), fill="black")
        draw.multiline_text(xy, text, "white", font)
