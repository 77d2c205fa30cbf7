"""Injected time: every decision that depends on "now" takes a Clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

from .errors import BadRequest


class Clock(Protocol):
    """Wall-clock time as aware UTC datetimes, and a monotonic counter for intervals."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


def utc_from_timestamp(seconds: float) -> datetime:
    """An aware UTC datetime from POSIX seconds."""
    return datetime.fromtimestamp(seconds, UTC)


def iso(dt: datetime) -> str:
    """ISO 8601 with milliseconds and a Z, the one format bodycam writes."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_moment(text: str | None, name: str) -> datetime | None:
    """An optional ISO 8601 time given by a person (`--from`, `?to=`), or an error naming it."""
    if text is None:
        return None
    try:
        return parse_iso(text)
    except ValueError as err:
        raise BadRequest(f"{name}: an ISO 8601 time with its zone is required: {err}") from None


def parse_iso(text: str) -> datetime:
    """Parse ISO 8601 (a trailing Z accepted); naive times are refused, not guessed."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is a time before UTC's first day
        raise ValueError(f"time {text[:40]!r} is out of range") from None
