"""Synthetic test picture and sound whose frame counter, flashes and beeps survive compression.

The picture carries a machine-readable frame counter: a strip of 24 cells along the bottom,
each cell a pair of blocks one above the other, white over black for a 1 and black over white
for a 0, on a grey band. Reading compares the two blocks of each cell, so the result does not
depend on the encoder's brightness or contrast; every cell must show a clear difference, and
the guard cells and two parity bits must match, or the reader answers None rather than a
wrong number. Cells are 1/24 of the width and 1/16 of the height, large enough to survive
H.264 or VP8 at a few hundred kbit/s at 320x240.

Cell layout, left to right: guard 1, guard 0, 20 counter bits (most significant first),
parity of the even-position counter bits, parity of the odd-position ones.

Flashes and beeps mark the same media instants: every flash interval one video frame (exactly
one) is white above the strip, and a loud 1 kHz beep of 100 ms starts at that frame's media
time, to the sample. The counter strip stays on flash frames so a test knows which frame
flashed.
"""

from __future__ import annotations

import datetime
import math
from fractions import Fraction

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

COUNTER_BITS = 20
COUNTER_MODULO = 1 << COUNTER_BITS
STRIP_CELLS = 24
AUDIO_RATE = 48000
BEEP_HZ = 1000.0
BEEP_SECONDS = 0.1
BEEP_LEVEL = 0.7
TONE_HZ = 440.0
TONE_LEVEL = 0.03

# Reading thresholds on the 0..255 luma scale.
_CELL_CONTRAST = 60.0
_FLASH_MEAN = 200.0
_BAND_GREY = (128, 128, 128)


def counter_cells(counter: int) -> list[int]:
    """The 24 cell values (1 = white over black) that encode a frame counter."""
    value = counter % COUNTER_MODULO
    bits = [(value >> (COUNTER_BITS - 1 - i)) & 1 for i in range(COUNTER_BITS)]
    even = sum(bits[0::2]) & 1
    odd = sum(bits[1::2]) & 1
    return [1, 0, *bits, even, odd]


def strip_geometry(width: int, height: int) -> tuple[int, int, int, list[int]]:
    """Where the strip is: (band top, top row y, row height, cell x boundaries)."""
    row = max(4, round(height / 16))
    pad = max(2, round(height / 48))
    band_top = height - 2 * row - 2 * pad
    edges = [round(k * width / STRIP_CELLS) for k in range(STRIP_CELLS + 1)]
    return band_top, band_top + pad, row, edges


def _luma(image: np.ndarray) -> np.ndarray:
    """A 2-D float luma plane from a gray or RGB array."""
    array = np.asarray(image)
    if array.ndim == 3:
        # Equal weights are enough here: the strip and the flash are colourless.
        array = array[:, :, :3].mean(axis=2)
    return array.astype(np.float32, copy=False)


def read_frame_counter(image: np.ndarray) -> int | None:
    """The frame counter drawn in a decoded frame (gray or RGB array), or None if unreadable."""
    luma = _luma(image)
    height, width = luma.shape
    _, top, row, edges = strip_geometry(width, height)
    # Sample the middle half of every block so compression ringing at edges does not count.
    y0, y1 = top + row // 4, top + row - row // 4
    cells = []
    for k in range(STRIP_CELLS):
        quarter = (edges[k + 1] - edges[k]) // 4
        x0, x1 = edges[k] + quarter, edges[k + 1] - quarter
        upper = float(luma[y0:y1, x0:x1].mean())
        lower = float(luma[y0 + row : y1 + row, x0:x1].mean())
        if abs(upper - lower) < _CELL_CONTRAST:
            return None
        cells.append(1 if upper > lower else 0)
    bits = cells[2 : 2 + COUNTER_BITS]
    value = 0
    for bit in bits:
        value = (value << 1) | bit
    if cells != counter_cells(value):
        return None
    return value


def is_flash(image: np.ndarray) -> bool:
    """Whether a decoded frame (gray or RGB array) is a flash: white above the counter strip."""
    luma = _luma(image)
    band_top, _, _, _ = strip_geometry(luma.shape[1], luma.shape[0])
    return float(luma[:band_top].mean()) > _FLASH_MEAN


class TestCard:
    """Draws the frames of one simulated camera: label, clock, counter, moving bar, strip."""

    __test__ = False  # not a pytest class, despite the name

    def __init__(self, label: str, width: int, height: int, fps: int) -> None:
        self.label = label
        self.width = width
        self.height = height
        self.fps = fps
        self._band_top, self._strip_top, self._row, self._edges = strip_geometry(width, height)
        self._font_size = max(10, height // 14)
        self._font = ImageFont.load_default(size=self._font_size)
        self._background = self._draw_background()
        self._flash = self._draw_flash_background()

    def _draw_background(self) -> Image.Image:
        # A dark vertical gradient: far from white, so no ordinary frame reads as a flash.
        ramp = np.linspace(25, 70, self._band_top, dtype=np.float32)[:, None, None]
        tint = np.array([0.8, 0.9, 1.2], dtype=np.float32)[None, None, :]
        picture = np.empty((self.height, self.width, 3), dtype=np.uint8)
        picture[: self._band_top] = np.clip(ramp * tint, 0, 255).astype(np.uint8)
        picture[self._band_top :] = _BAND_GREY
        return Image.fromarray(picture, "RGB")

    def _draw_flash_background(self) -> Image.Image:
        picture = Image.new("RGB", (self.width, self.height), (255, 255, 255))
        ImageDraw.Draw(picture).rectangle(
            (0, self._band_top, self.width, self.height), fill=_BAND_GREY
        )
        return picture

    def render(self, index: int, counter: int, clock: str, flash: bool) -> av.VideoFrame:
        """Draw frame `index` of the track showing `counter` and the `clock` text."""
        picture = (self._flash if flash else self._background).copy()
        draw = ImageDraw.Draw(picture)
        if not flash:
            # A bar sweeping across every two seconds gives the encoder motion to code.
            bar = max(4, self.width // 40)
            x = (index * self.width) // (2 * self.fps) % self.width
            draw.rectangle((x, 0, x + bar, self._band_top - 1), fill=(230, 160, 40))
            size = self._font_size
            margin = size // 2
            lines = (f"AXIS W110  {self.label}", clock, f"frame {counter:07d}")
            for n, text in enumerate(lines):
                draw.text((margin, margin + n * size * 1.25), text, fill=(240, 240, 240))
        self._draw_strip(draw, counter)
        return av.VideoFrame.from_ndarray(np.asarray(picture), format="rgb24")

    def _draw_strip(self, draw: ImageDraw.ImageDraw, counter: int) -> None:
        top, row = self._strip_top, self._row
        for k, cell in enumerate(counter_cells(counter)):
            x0, x1 = self._edges[k], self._edges[k + 1] - 1
            upper, lower = ((255,) * 3, (0,) * 3) if cell else ((0,) * 3, (255,) * 3)
            draw.rectangle((x0, top, x1, top + row - 1), fill=upper)
            draw.rectangle((x0, top + row, x1, top + 2 * row - 1), fill=lower)


def wall_clock_text(timestamp: float) -> str:
    """Local wall-clock time as HH:MM:SS.mmm, as a camera overlays it."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC).astimezone()
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def media_clock_text(seconds: float) -> str:
    """A media time as HH:MM:SS.mmm, for loops whose picture cannot know the wall clock."""
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}.{rest % 1000:03d}"


def synth_audio(start: int, count: int, interval: int, offset: int) -> np.ndarray:
    """Mono float samples [start, start+count): a quiet tone with a loud beep every interval.

    `interval` and `offset` are in samples; a beep starts at every sample s >= offset with
    (s - offset) % interval == 0, in phase zero so its onset is sharp and its first loud sample
    comes within a fraction of a millisecond.
    """
    samples = np.arange(start, start + count, dtype=np.int64)
    # The tone restarts its phase every second: 440 whole cycles, so the sound is periodic
    # over any whole number of seconds and a loop of it joins without a click.
    tone = TONE_LEVEL * np.sin(2 * math.pi * TONE_HZ * (samples % AUDIO_RATE) / AUDIO_RATE)
    since = (samples - offset) % interval
    beeping = (samples >= offset) & (since < round(BEEP_SECONDS * AUDIO_RATE))
    beep = BEEP_LEVEL * np.sin(2 * math.pi * BEEP_HZ * since / AUDIO_RATE)
    return np.where(beeping, beep, tone).astype(np.float32)


def beep_onsets(samples: np.ndarray, rate: int = AUDIO_RATE) -> list[float]:
    """Times in seconds from the first sample at which loud beeps start in decoded audio.

    Accepts mono, (channels, n) or (n, channels) arrays of float or int16 samples. A beep
    is loud (0.7 of full scale) and the tone quiet (0.03), so half the beep level separates
    them even after Opus; a new onset needs 200 ms of quiet before it.
    """
    array = np.asarray(samples)
    if array.dtype == np.int16:
        array = array.astype(np.float32) / 32768.0
    if array.ndim == 2:
        channel_axis = 0 if array.shape[0] < array.shape[1] else 1
        array = array.mean(axis=channel_axis)
    loud = np.flatnonzero(np.abs(array) > BEEP_LEVEL / 2)
    if loud.size == 0:
        return []
    gaps = np.flatnonzero(np.diff(loud) > 0.2 * rate)
    firsts = np.concatenate(([loud[0]], loud[gaps + 1]))
    return [float(Fraction(int(i), rate)) for i in firsts]
