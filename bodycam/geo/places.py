"""Street names, offline: the nearest named street to a position, from the city's GeoJSON.

"Rue Dupont-des-Loges, 15 m" is what an operator radios to a patrol; it is computed from
the imported streets (no geocoding service), in the same local-metre plane as the cameras.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from shapely import LineString, MultiLineString, MultiPoint, Point, STRtree, transform
from shapely.geometry import shape

from ..models import Position
from .geometry import LocalFrame

# Beyond this, the nearest street says little about where the officer is (a park, a yard).
MAX_STREET_DISTANCE_M = 150.0


@dataclass(frozen=True)
class Address:
    """The nearest street and how far it is."""

    street: str
    distance_m: float

    def __str__(self) -> str:
        return f"{self.street}, {self.distance_m:.0f} m"


class StreetIndex:
    """Named streets (GeoJSON LineString / MultiLineString geometries) in local metres."""

    def __init__(self, streets: Iterable[tuple[str, dict[str, Any]]], frame: LocalFrame) -> None:
        self.frame = frame
        self._names: list[str] = []
        lines: list[LineString | MultiLineString] = []
        for name, geometry in streets:
            parts = geometry["coordinates"]
            if geometry["type"] == "LineString":
                parts = [parts]
            plane = [[frame.lonlat_to_xy(p[0], p[1]) for p in part] for part in parts]
            lines.append(MultiLineString(plane) if len(plane) > 1 else LineString(plane[0]))
            self._names.append(name)
        self._lines = lines
        self._tree = STRtree(lines)

    def __len__(self) -> int:
        return len(self._names)

    def nearest(self, position: Position) -> Address | None:
        """The nearest street within MAX_STREET_DISTANCE_M, or None."""
        if not self._names:
            return None
        point = Point(self.frame.to_xy(position))
        found = self._tree.query_nearest(point, max_distance=MAX_STREET_DISTANCE_M)
        if len(found) == 0:
            return None
        i = int(found[0])
        return Address(self._names[i], round(self._lines[i].distance(point), 1))


PLACE_METRES = 50.0  # an officer this close to a place was there
MAX_PLACES = 20


def went_by(
    places: Iterable[tuple[str, str]], name: str
) -> Callable[[list[Position]], bool] | None:
    """Whether a track came within PLACE_METRES of a street or building named like `name`
    (any case; `places` as the store gives them: name and GeoJSON geometry); None when the
    city has no such place."""
    wanted = name.casefold()
    shapes = [
        shape(json.loads(geometry)) for place, geometry in places if wanted in place.casefold()
    ][:MAX_PLACES]
    if not shapes:
        return None

    def near(positions: list[Position]) -> bool:
        if not positions:
            return False
        frame = LocalFrame(positions[0].lat, positions[0].lon)
        track = MultiPoint([frame.to_xy(p) for p in positions])

        def local(coords: NDArray[np.float64]) -> NDArray[np.float64]:
            return np.column_stack(frame.lonlat_to_xy_arrays(coords[:, 0], coords[:, 1]))

        return any(transform(s, local).distance(track) <= PLACE_METRES for s in shapes)

    return near
