"""How long recordings are kept: pure decisions on dates, taking `now` explicitly.

The law says "one month"; the default is 30 days. `"1 month"` means the calendar month: a
session recorded on 31 January expires on the last day of February, at the same time of day.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

from ..models import Retention


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
