"""Street names, offline: the nearest named street to a position, from the city's GeoJSON.

"Rue Dupont-des-Loges, 15 m" is what an operator radios to a patrol; it is computed from
the imported streets (no geocoding service), in the same local-metre plane as the cameras.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shapely import LineString, MultiLineString, Point, STRtree

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
