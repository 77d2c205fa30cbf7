"""Rows as the backends read them, turned into the plain types of `models`: one conversion
for every backend (a row is anything indexable by column name: sqlite3.Row, a dict)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from ..clock import iso, parse_iso
from ..models import (
    Alert,
    AlertAction,
    AlertState,
    CameraCheck,
    Device,
    Hold,
    Position,
    Role,
    Segment,
    Session,
    SessionState,
    User,
)
from .base import Destruction

# CSV field of the register -> its column, where they differ
REGISTER_COLUMNS = {
    "user": "user_name",
    "session": "session_id",
    "camera": "camera_id",
    "from": "time_from",
    "to": "time_to",
}
STATS_OF_ACTION = {  # register action -> the monthly statistic it counts toward
    "live_view_start": "live_views",
    "recording_view": "recording_views",
    "export": "exports",
}


class Row(Protocol):
    def __getitem__(self, key: str) -> Any: ...


def moment(value: str | None) -> datetime | None:
    return parse_iso(value) if value else None


def camera_check(row: Row) -> CameraCheck:
    return CameraCheck(
        row["camera_id"],
        row["state"],
        moment(row["since"]),
        moment(row["checked_at"]),
        row["error"],
        row["serial"],
        row["model"],
        row["firmware"],
        row["polls"],
    )


def by_camera(check: CameraCheck) -> str:
    return check.camera_id


def check_values(check: CameraCheck) -> tuple[str | None, ...]:
    """A check as the UPDATE of both backends takes it (the camera id last)."""
    return (
        check.state,
        iso(check.since) if check.since else None,
        iso(check.checked_at) if check.checked_at else None,
        check.error,
        check.serial,
        check.model,
        check.firmware,
        check.polls,
        check.camera_id,
    )


def user(row: Row) -> User:
    return User(
        row["name"],
        Role(row["role"]),
        row["service"],
        parse_iso(row["created_at"]),
        moment(row["disabled_at"]),
    )


def device(row: Row) -> Device:
    return Device(
        id=row["id"],
        officer=row["officer"],
        created_at=parse_iso(row["created_at"]),
        revoked_at=moment(row["revoked_at"]),
        serial=row["serial"],
        model=row["model"],
        firmware=row["firmware"],
    )


def session(row: Row) -> Session:
    return Session(
        id=row["id"],
        device_id=row["device_id"],
        officer=row["officer"],
        state=SessionState(row["state"]),
        started_at=parse_iso(row["started_at"]),
        ended_at=moment(row["ended_at"]),
        interrupted_at=moment(row["interrupted_at"]),
        end_reason=row["end_reason"],
        video_codec=row["video_codec"],
        audio_codec=row["audio_codec"],
        connections=row["connections"],
        battery_percent=row["battery_percent"],
        invalid_telemetry=row["invalid_telemetry"],
        destroyed_at=moment(row["destroyed_at"]),
        node=row["node"],
    )


def segment(row: Row) -> Segment:
    return Segment(
        id=row["id"],
        session_id=row["session_id"],
        seq=row["seq"],
        path=row["path"],
        started_at=parse_iso(row["started_at"]),
        ended_at=moment(row["ended_at"]),
        bytes=row["bytes"],
        sha256=row["sha256"],
        prev_sha256=row["prev_sha256"],
        video_codec=row["video_codec"],
        width=row["width"],
        height=row["height"],
        state=row["state"],
        node=row["node"],
        chain_index=row["chain_index"],
    )


def alert(row: Row, actions: Iterable[Row]) -> Alert:
    """An alert row (joined with its session's device and officer) and its action rows."""
    return Alert(
        row["session_id"],
        row["device_id"],
        row["officer"],
        parse_iso(row["raised_at"]),
        AlertState(row["state"]),
        tuple(
            AlertAction(
                AlertState(a["state"]), a["user_name"], a["role"], a["service"], parse_iso(a["at"])
            )
            for a in actions
        ),
    )


def position(row: Row) -> Position:
    return Position(
        lat=row["lat"],
        lon=row["lon"],
        accuracy_m=row["accuracy_m"],
        time=parse_iso(row["time"]),
        heading_deg=row["heading_deg"],
        speed_mps=row["speed_mps"],
    )


def hold(row: Row) -> Hold:
    return Hold(
        id=row["id"],
        session_id=row["session_id"],
        reference=row["reference"],
        reason=row["reason"],
        placed_by=row["placed_by"],
        placed_at=parse_iso(row["placed_at"]),
        lifted_by=row["lifted_by"],
        lifted_at=moment(row["lifted_at"]),
        lift_reference=row["lift_reference"],
    )


def destruction(row: Row) -> Destruction:
    """A session to destroy: its last recorded moment is the latest of its start, its end
    and its last segment's end (the `last` column)."""
    moments = [parse_iso(v) for v in (row["started_at"], row["ended_at"], row["last"]) if v]
    return Destruction(row["id"], max(moments), row["destroy_state"])


def register_entry(row: Row, fields: Iterable[str]) -> dict[str, str]:
    """A register row as a CSV row of `models.CSV_FIELDS`, with its number and hashes."""
    values = {name: str(row[REGISTER_COLUMNS.get(name, name)]) for name in fields}
    return {"seq": str(row["seq"]), **values, "prev_hash": row["prev_hash"], "hash": row["hash"]}


def empty_month() -> dict[str, int]:
    return {"sessions": 0, "live_views": 0, "recording_views": 0, "exports": 0, "requisitions": 0}
