"""The camera's telemetry channel: one JSON object per data channel message.

Messages: ``hello`` (identity), ``position`` (GPS fix), ``battery``, ``button``. A message
that does not validate raises TelemetryError with the reason; the caller counts and logs
it, and the session goes on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..clock import parse_iso
from ..models import Position


class TelemetryError(ValueError):
    """A telemetry message that cannot be used; the message says why."""


@dataclass(frozen=True)
class Hello:
    serial: str
    model: str
    firmware: str


@dataclass(frozen=True)
class Battery:
    percent: float


@dataclass(frozen=True)
class ButtonPress:
    at: datetime | None


Message = Hello | Position | Battery | ButtonPress


def parse(raw: str | bytes, max_bytes: int) -> Message:
    """Validate one message; whatever is wrong with it raises TelemetryError."""
    if len(raw) > max_bytes:
        raise TelemetryError(f"message of {len(raw)} bytes is over the {max_bytes}-byte limit")
    try:
        return _parse(raw)
    except (OverflowError, RecursionError) as err:  # huge numbers, deep nesting, year 9999+
        raise TelemetryError(f"unusable value: {err}") from None


def _parse(raw: str | bytes) -> Message:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise TelemetryError(f"not JSON: {err}") from None
    if not isinstance(data, dict):
        raise TelemetryError("not a JSON object")
    kind = data.get("type")
    if kind == "position":
        return _position(data)
    if kind == "battery":
        return Battery(_number(data, "percent", 0, 100))
    if kind == "button":
        return ButtonPress(_time(data, "time") if "time" in data else None)
    if kind == "hello":
        return Hello(_text(data, "serial"), _text(data, "model"), _text(data, "firmware"))
    raise TelemetryError(f"unknown message type {kind!r}")


def _position(data: dict[str, Any]) -> Position:
    heading = _number(data, "heading", 0, 360) if data.get("heading") is not None else None
    speed = _number(data, "speed", 0, 100) if data.get("speed") is not None else None
    return Position(
        lat=_number(data, "lat", -90, 90),
        lon=_number(data, "lon", -180, 180),
        accuracy_m=_number(data, "accuracy", 0, 100_000),
        time=_time(data, "time"),
        heading_deg=None if heading is None else heading % 360,
        speed_mps=speed,
    )


def _number(data: dict[str, Any], key: str, low: float, high: float) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TelemetryError(f"{data.get('type')}.{key}: expected a number, got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise TelemetryError(f"{data.get('type')}.{key}: {value} is outside [{low}, {high}]")
    return float(value)


def _time(data: dict[str, Any], key: str) -> datetime:
    value = data.get(key)
    if not isinstance(value, str):
        raise TelemetryError(f"{data.get('type')}.{key}: expected an ISO 8601 time")
    try:
        return parse_iso(value)
    except ValueError as err:
        raise TelemetryError(f"{data.get('type')}.{key}: {err}") from None


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str) or len(value) > 100:
        raise TelemetryError(f"{data.get('type')}.{key}: expected a string of at most 100 chars")
    return value
