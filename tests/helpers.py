"""Helpers shared by the test modules (fixtures live in conftest.py; no test module imports
another one)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta


class ShiftedClock:
    """Wall-clock time that starts at a fixed moment and then runs at the real pace.

    A gateway started on it believes the date is `start`: a test that records on a fixed
    date and then starts a gateway gives it this clock, so that nothing it decides (the
    purge, statistics of "this year", login expiry) depends on the day the suite runs.
    Monotonic time is the real one.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ShiftedClock needs an aware datetime")
        self._start = start
        self._origin = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._origin)

    def monotonic(self) -> float:
        return time.monotonic()
