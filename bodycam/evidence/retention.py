"""How long recordings are kept: pure decisions on dates, taking `now` explicitly.

The law says "one month"; the default is 30 days. `"1 month"` means the calendar month: a
session recorded on 31 January expires on the last day of February, at the same time of day.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_PERIOD = re.compile(r"^\s*(\d+)\s*(day|days|month|months)\s*$")


@dataclass(frozen=True)
class Retention:
    """A keeping period: a number of days, or of calendar months."""

    count: int
    unit: str  # "days" or "months"

    def __str__(self) -> str:
        unit = self.unit if self.count != 1 else self.unit[:-1]
        return f"{self.count} {unit}"


def parse_retention(text: str) -> Retention:
    """`"30 days"`, `"1 month"`; raises ValueError with what is accepted."""
    match = _PERIOD.match(text.lower())
    if match is None:
        raise ValueError(f'{text!r} is not a period: write "30 days" or "1 month"')
    count, unit = int(match[1]), match[2]
    if count < 1:
        raise ValueError(f"{text!r}: the period must be at least 1 day")
    return Retention(count, "days" if unit.startswith("day") else "months")


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later, or the month's last day if it is shorter."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def expires_at(recorded_until: datetime, retention: Retention) -> datetime:
    """When a recording whose last image is at `recorded_until` must be destroyed."""
    if retention.unit == "months":
        return add_months(recorded_until, retention.count)
    return recorded_until + timedelta(days=retention.count)


def is_expired(recorded_until: datetime, retention: Retention, now: datetime) -> bool:
    return expires_at(recorded_until, retention) <= now


def years_before(now: datetime, years: int) -> datetime:
    """The same moment `years` earlier (29 February becomes the 28th)."""
    return add_months(now, -12 * years)
