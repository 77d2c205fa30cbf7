"""The GPS filter: which fixes join an officer's track, as a table of cases."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bodycam.geo.track import Limits, Track, Verdict, judge
from bodycam.models import Position
from tests.geo_scene import T0, fix

LIMITS = Limits(max_accuracy_m=50.0, max_speed_mps=60.0, restart_after=3, future_seconds=30)
NOW = T0 + timedelta(seconds=10)  # the gateway's clock when the fixes arrive


@pytest.mark.parametrize(
    ("last", "new", "verdict"),
    [
        (None, fix(0, 0), Verdict.KEPT),
        (None, fix(0, 0, accuracy=80), Verdict.INACCURATE),
        (fix(0, 0), fix(10, 0, 1, accuracy=50.5), Verdict.INACCURATE),
        (fix(0, 0), fix(10, 0, 1), Verdict.KEPT),  # walking pace
        (fix(0, 0), fix(1, 0, 0), Verdict.STALE),  # same time
        (fix(0, 0, 5), fix(1, 0, 4), Verdict.STALE),  # out of order
        (fix(0, 0), fix(500, 0, 1), Verdict.JUMP),  # 500 m/s
        (fix(0, 0, accuracy=45), fix(500, 0, 1, accuracy=45), Verdict.JUMP),
        # 100 m in a second, but both fixes ±30 m: 40 m/s after the doubt, possible
        (fix(0, 0, accuracy=30), fix(100, 0, 1, accuracy=30), Verdict.KEPT),
        (fix(0, 0), fix(500, 0, 10), Verdict.KEPT),  # 50 m/s: a car
        (fix(0, 0), fix(700, 0, 10), Verdict.JUMP),  # 70 m/s
        (None, fix(0, 0, 41), Verdict.FUTURE),  # 31 s ahead of the gateway's clock
        (fix(0, 0), fix(0, 0, 86400), Verdict.FUTURE),  # a receiver a day ahead
        (None, fix(0, 0, 39), Verdict.KEPT),  # 29 s ahead: clocks differ that much
    ],
)
def test_judge(last: Position | None, new: Position, verdict: Verdict) -> None:
    assert judge(last, new, LIMITS, NOW) == verdict


def test_an_outlier_is_left_out_and_the_track_goes_on() -> None:
    track = Track(LIMITS)
    verdicts = [
        track.add(fix(0, 0, 0), NOW),
        track.add(fix(900, 0, 1), NOW),  # multipath: a kilometre away for one second
        track.add(fix(2, 0, 2), NOW),
        track.add(fix(90, 0, 3, accuracy=120), NOW),
        track.add(fix(4, 0, 4), NOW),
    ]
    assert verdicts == [
        Verdict.KEPT,
        Verdict.JUMP,
        Verdict.KEPT,
        Verdict.INACCURATE,
        Verdict.KEPT,
    ]
    assert [round(p.lat, 7) for p in track.points] == [round(fix(x, 0).lat, 7) for x in (0, 2, 4)]
    assert track.current == fix(4, 0, 4)
    assert track.rejected == {
        Verdict.INACCURATE: 1,
        Verdict.FUTURE: 0,
        Verdict.STALE: 0,
        Verdict.JUMP: 1,
    }


def test_a_bad_first_fix_does_not_freeze_the_track() -> None:
    """The first fix was the outlier: agreeing fixes elsewhere restart the track there."""
    track = Track(LIMITS)
    assert track.add(fix(2000, 0, 0), NOW) == Verdict.KEPT
    assert track.add(fix(0, 0, 1), NOW) == Verdict.JUMP
    assert track.add(fix(1, 0, 2), NOW) == Verdict.JUMP
    assert track.add(fix(2, 0, 3), NOW) == Verdict.RESTART
    assert track.current == fix(2, 0, 3)
    assert track.add(fix(3, 0, 4), NOW) == Verdict.KEPT


def test_jumps_that_disagree_do_not_restart_the_track() -> None:
    track = Track(LIMITS)
    track.add(fix(0, 0, 0), NOW)
    scattered = [fix(1000, 0, 1), fix(-1000, 0, 2), fix(0, 1000, 3), fix(0, -1000, 4)]
    assert [track.add(f, NOW) for f in scattered] == [Verdict.JUMP] * 4
    assert track.current == fix(0, 0, 0)


def test_a_fix_dated_ahead_does_not_freeze_the_track() -> None:
    """A kept fix dated 25 s ahead makes the next ones look stale; they restart the track."""
    track = Track(LIMITS)
    assert track.add(fix(0, 0, 35), NOW) == Verdict.KEPT  # within the 30 s allowed
    assert track.add(fix(1, 0, 11), NOW) == Verdict.STALE
    assert track.add(fix(2, 0, 12), NOW) == Verdict.STALE
    assert track.add(fix(3, 0, 13), NOW) == Verdict.RESTART
    assert track.add(fix(4, 0, 14), NOW) == Verdict.KEPT
    assert track.current == fix(4, 0, 14)
    assert track.add(fix(5, 0, 3600), NOW) == Verdict.FUTURE
    assert track.current == fix(4, 0, 14)
