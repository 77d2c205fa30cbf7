"""Street names computed offline: the nearest named street and its distance."""

from __future__ import annotations

import pytest

from bodycam.geo.places import MAX_STREET_DISTANCE_M, Address, StreetIndex
from tests.geo_scene import FRAME, fix, line

STREETS = StreetIndex(
    [
        ("Rue Dupont-des-Loges", line((-100, 0), (100, 0))),
        ("En Fournirue", line((50, -100), (50, 100))),
        (
            "Place de la Comédie",
            {
                "type": "MultiLineString",
                "coordinates": [
                    line((-300, 200), (-250, 200))["coordinates"],
                    line((-250, 200), (-250, 250))["coordinates"],
                ],
            },
        ),
    ],
    FRAME,
)


@pytest.mark.parametrize(
    ("x", "y", "street", "distance"),
    [
        (0, 15, "Rue Dupont-des-Loges", 15.0),
        (-40, -7, "Rue Dupont-des-Loges", 7.0),
        (45, 60, "En Fournirue", 5.0),
        (56, 2, "Rue Dupont-des-Loges", 2.0),  # the crossing: the nearer of the two
        (-240, 230, "Place de la Comédie", 10.0),  # second part of a MultiLineString
    ],
)
def test_nearest_street(x: float, y: float, street: str, distance: float) -> None:
    address = STREETS.nearest(fix(x, y))
    assert address is not None
    assert address.street == street
    assert address.distance_m == pytest.approx(distance, abs=0.2)


def test_far_from_every_street_there_is_no_address() -> None:
    # 177 m from the end of En Fournirue, 270 m from rue Dupont-des-Loges
    assert STREETS.nearest(fix(0, -270)) is None
    assert STREETS.nearest(fix(0, -MAX_STREET_DISTANCE_M + 5)) is not None


def test_an_address_reads_as_an_operator_says_it() -> None:
    assert str(Address("Rue Dupont-des-Loges", 14.6)) == "Rue Dupont-des-Loges, 15 m"


def test_a_city_without_streets_has_no_addresses() -> None:
    assert StreetIndex([], FRAME).nearest(fix(0, 0)) is None
