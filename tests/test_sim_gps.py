"""Simulated GPS: routes from GeoJSON, walking speed, heading, bounded noise, bad fixes."""

from __future__ import annotations

import datetime
import itertools
import math
from typing import Any

import pytest

from simulators.gps import (
    DEFAULT_POINT,
    RUNNING_SPEED,
    WALKING_SPEED,
    Position,
    Route,
    Walk,
    distance,
    load_route,
    parse_route,
)

NOON = datetime.datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=datetime.UTC)
LINE = {"type": "LineString", "coordinates": [[6.1733, 49.1183], [6.1760, 49.1190]]}


def bearing(a: Position, b: Position) -> float:
    east = math.radians(b.lon - a.lon) * math.cos(math.radians(a.lat))
    north = math.radians(b.lat - a.lat)
    return math.degrees(math.atan2(east, north)) % 360


def angle_between(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


@pytest.mark.parametrize(
    "document",
    [
        LINE,
        {"type": "Feature", "properties": {}, "geometry": LINE},
        {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "geometry": {"type": "Point", "coordinates": [6, 49]}},
                {"type": "Feature", "geometry": LINE},
            ],
        },
    ],
)
def test_routes_parse_from_any_geojson_shape_in_lon_lat_order(document: dict[str, Any]) -> None:
    route = parse_route(document)
    assert route.points == (Position(49.1183, 6.1733), Position(49.1190, 6.1760))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"type": "Point", "coordinates": [6.17, 49.11]}, "not a LineString"),
        ({"type": "LineString", "coordinates": [[6.17, 49.11]]}, "two points"),
        ({"type": "FeatureCollection", "features": []}, "no LineString"),
    ],
)
def test_bad_routes_are_refused(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_route(document)


@pytest.mark.parametrize("name", ["metz-mandela", "metz-charrons", "metz-comedie"])
def test_demo_routes_are_in_metz(name: str) -> None:
    route = load_route(name)
    assert len(route.points) >= 9
    for point in route.points:
        assert distance(point, Position(*DEFAULT_POINT)) < 1500
    length = sum(distance(a, b) for a, b in itertools.pairwise(route.points))
    assert 300 < length < 1500


@pytest.mark.parametrize("speed", [WALKING_SPEED, RUNNING_SPEED])
def test_true_position_moves_at_the_walking_speed(speed: float) -> None:
    walk = Walk(route=load_route("metz-mandela"), speed=speed, end="bounce")
    steps = [walk.truth(t)[0] for t in range(0, 120)]
    travelled = sum(distance(a, b) for a, b in itertools.pairwise(steps))
    # Chords cut the corners a little, and a bounce turns round once at most.
    assert travelled == pytest.approx(speed * 119, rel=0.02)
    assert all(walk.truth(t)[2] == speed for t in range(0, 120, 7))


def test_loop_returns_to_start_and_bounce_turns_round() -> None:
    route = load_route("metz-mandela")
    length = sum(distance(a, b) for a, b in itertools.pairwise(route.points))
    closing = distance(route.points[-1], route.points[0])
    loop = Walk(route=route, end="loop")
    lap = (length + closing) / WALKING_SPEED
    assert distance(loop.truth(lap)[0], route.points[0]) < 0.5
    bounce = Walk(route=route, end="bounce")
    there = length / WALKING_SPEED
    assert distance(bounce.truth(there)[0], route.points[-1]) < 0.5
    assert distance(bounce.truth(2 * there)[0], route.points[0]) < 0.5
    out, back = bounce.truth(there - 20)[1], bounce.truth(there + 20)[1]
    assert angle_between(out, back) == pytest.approx(180, abs=1)


def test_heading_follows_the_direction_of_travel() -> None:
    route = load_route("metz-comedie")
    walk = Walk(route=route, seed=3)
    first_leg = bearing(route.points[0], route.points[1])
    _, heading, _ = walk.truth(10)
    assert angle_between(heading, first_leg) < 0.5
    for t in range(0, 300, 5):
        fix, (_, true_heading, _) = walk.fix(t, NOON), walk.truth(t)
        assert 0 <= fix.heading < 360
        assert angle_between(fix.heading, true_heading) <= 3.0


def test_noise_is_bounded_correlated_and_bad_fixes_are_flagged() -> None:
    walk = Walk(route=load_route("metz-charrons"), seed=42)
    fixes = [walk.fix(t, NOON) for t in range(0, 1800)]
    errors = [distance(Position(f.lat, f.lon), walk.truth(t)[0]) for t, f in enumerate(fixes)]
    good = [(f, e) for f, e in zip(fixes, errors, strict=True) if not f.bad]
    bad = [(f, e) for f, e in zip(fixes, errors, strict=True) if f.bad]
    assert all(3.0 <= f.accuracy <= 8.0 and e <= f.accuracy for f, e in good)
    assert all(30.0 <= f.accuracy <= 80.0 and e <= f.accuracy for f, e in bad)
    assert 0.005 < len(bad) / len(fixes) < 0.05
    # Real receivers' errors wander slowly; they do not jump metres from one second to the next.
    for t in range(1, 1800):
        if not fixes[t].bad and not fixes[t - 1].bad:
            assert abs(errors[t] - errors[t - 1]) < 1.0
    assert max(e for _, e in good) > 2.0  # there is noise at all


def test_fixes_are_a_pure_function_of_time_and_seed() -> None:
    route = load_route("metz-mandela")
    assert Walk(route=route, seed=1).fix(33.0, NOON) == Walk(route=route, seed=1).fix(33.0, NOON)
    assert Walk(route=route, seed=1).fix(33.0, NOON) != Walk(route=route, seed=2).fix(33.0, NOON)


def test_standing_still_without_a_route() -> None:
    walk = Walk(seed=5)
    for t in range(0, 600, 3):
        fix = walk.fix(t, NOON)
        if not fix.bad:
            assert distance(Position(fix.lat, fix.lon), Position(*DEFAULT_POINT)) <= 8.0
        assert fix.speed < 0.2


def test_position_message_format() -> None:
    message = Walk(route=load_route("metz-mandela"), seed=9).fix(12.5, NOON).message()
    assert message["type"] == "position"
    assert message["time"] == "2026-11-22T10:00:00.123Z"
    assert set(message) == {"type", "lat", "lon", "accuracy", "heading", "speed", "time"}
    assert 49.11 < message["lat"] < 49.13
    assert 6.17 < message["lon"] < 6.19
    assert message["speed"] == pytest.approx(WALKING_SPEED, abs=0.11)


def test_route_needs_two_points() -> None:
    with pytest.raises(ValueError, match="two"):
        Route("one", (Position(49.0, 6.0),))
