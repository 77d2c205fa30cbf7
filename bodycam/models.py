"""Plain data types shared by the store, the domains, the gateway and the command line.

Also the formats the law fixes and several layers read: a keeping period (`Retention`) and
the register's entries with the canonical encoding their hashes cover.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .clock import iso

GENESIS_HASH = "0" * 64  # what every chain starts from: the register's, each session's segments


class SessionState(enum.StrEnum):
    """A live session's lifecycle: live, link lost for a while, over."""

    LIVE = "live"
    INTERRUPTED = "interrupted"
    ENDED = "ended"


class EndReason(enum.StrEnum):
    """Why a session ended."""

    BUTTON = "button"
    DELETE = "delete"
    LINK_LOST = "link_lost"


class Role(enum.StrEnum):
    """What a person may do (DESIGN, access matrix)."""

    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    POLICE_NATIONALE = "police_nationale"
    AUDITOR = "auditor"
    ADMIN = "admin"


@dataclass(frozen=True)
class User:
    """A person who logs in; only a memory-hard hash of the password is kept."""

    name: str
    role: Role
    service: str
    created_at: datetime
    disabled_at: datetime | None = None

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role.value, "service": self.service}


class AlertState(enum.StrEnum):
    """An alert only moves forward, in this order."""

    NEW = "nouvelle"
    ACKNOWLEDGED = "prise_en_compte"
    DISPATCHED = "renforts_envoyes"
    CLOSED = "cloturee"


@dataclass(frozen=True)
class AlertAction:
    state: AlertState
    user: str
    role: str
    service: str
    at: datetime


@dataclass(frozen=True)
class Alert:
    """Raised when an officer goes live; operators acknowledge, dispatch, close it."""

    session_id: str
    device_id: str
    officer: str
    raised_at: datetime
    state: AlertState
    actions: tuple[AlertAction, ...] = ()


@dataclass(frozen=True)
class Device:
    """An enrolled body camera; only the hash of its token is kept."""

    id: str
    officer: str
    created_at: datetime
    revoked_at: datetime | None = None
    serial: str = ""
    model: str = ""
    firmware: str = ""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class Session:
    """One press-to-stop live session of a device, possibly across reconnects."""

    id: str
    device_id: str
    officer: str
    state: SessionState
    started_at: datetime
    ended_at: datetime | None = None
    interrupted_at: datetime | None = None
    end_reason: str | None = None
    video_codec: str = ""
    audio_codec: str = ""
    connections: int = 1
    battery_percent: float | None = None
    invalid_telemetry: int = 0
    destroyed_at: datetime | None = None  # its key destroyed at expiry: media unreadable
    node: str = ""  # the gateway process holding it (a node's run: `Store.heartbeat`)


@dataclass(frozen=True)
class Segment:
    """One file of a session's recording, chained to the previous one by its hash."""

    id: int
    session_id: str
    seq: int
    path: str
    started_at: datetime
    ended_at: datetime | None
    bytes: int
    sha256: str
    prev_sha256: str
    video_codec: str
    width: int
    height: int
    state: str
    node: str = ""  # the gateway process writing it
    chain_index: int = 0  # its place in the session's chain, in sealing order (0: open)


@dataclass(frozen=True)
class Hold:
    """A legal hold: the session is kept past its retention for a judicial procedure."""

    id: int
    session_id: str
    reference: str  # the requisition or procedure reference
    reason: str
    placed_by: str
    placed_at: datetime
    lifted_by: str | None = None
    lifted_at: datetime | None = None
    lift_reference: str | None = None


@dataclass(frozen=True)
class Position:
    """A GPS fix from a camera, as received (lat, lon in degrees WGS 84)."""

    lat: float
    lon: float
    accuracy_m: float
    time: datetime
    heading_deg: float | None = None
    speed_mps: float | None = None


class CameraKind(enum.StrEnum):
    """Fixed cameras look one way; PTZ cameras can be turned; domes see all around."""

    FIXED = "fixed"
    PTZ = "ptz"
    DOME = "dome"


@dataclass(frozen=True)
class Camera:
    """A CCTV camera of the city, as the registry knows it (lat, lon in degrees WGS 84)."""

    id: str
    name: str
    kind: CameraKind
    lat: float
    lon: float
    heading_deg: float  # where it looks (a PTZ camera: its home position)
    fov_deg: float
    range_m: float
    height_m: float = 5.0
    pan_min_deg: float = 0.0  # PTZ: pan limits, relative to north, clockwise
    pan_max_deg: float = 360.0
    tilt_min_deg: float = -90.0
    tilt_max_deg: float = 0.0
    commune: str = ""
    vapix_url: str = ""
    credentials_ref: str = ""
    mjpeg_url: str = ""
    rtsp_url: str = ""
    # GeoJSON Polygon coordinates ([[lon, lat], ...] rings) the camera must never show
    privacy_masks: tuple[tuple[tuple[tuple[float, float], ...], ...], ...] = ()


@dataclass(frozen=True)
class CameraCheck:
    """A camera's health as its last poll left it, shared by every node (`gateway.health`)."""

    camera_id: str
    state: str = "unknown"  # a `gateway.health.Health`
    since: datetime | None = None  # in this state since
    checked_at: datetime | None = None
    error: str = ""
    serial: str = ""
    model: str = ""
    firmware: str = ""
    polls: str = ""  # the recent polls, oldest first: "1" answered, "0" did not


# retention

_PERIOD = re.compile(r"^\s*(\d+)\s*(day|days|month|months)\s*$")


@dataclass(frozen=True)
class Retention:
    """A keeping period: a number of days, or of calendar months (`evidence.retention`)."""

    count: int
    unit: str  # "days" or "months"

    @classmethod
    def parse(cls, text: str) -> Retention:
        """`"30 days"`, `"1 month"`; raises ValueError with what is accepted."""
        match = _PERIOD.match(text.lower())
        if match is None:
            raise ValueError(f'{text!r} is not a period: write "30 days" or "1 month"')
        count, unit = int(match[1]), match[2]
        if count < 1:
            raise ValueError(f"{text!r}: the period must be at least 1 day")
        return cls(count, "days" if unit.startswith("day") else "months")

    def __str__(self) -> str:
        unit = self.unit if self.count != 1 else self.unit[:-1]
        return f"{self.count} {unit}"


# the register's entries (the chain itself is kept by the store, checked by evidence.register)


class Action(enum.StrEnum):
    """What a register entry is about."""

    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    LIVE_VIEW_START = "live_view_start"
    LIVE_VIEW_END = "live_view_end"
    CAMERA_VIEW = "camera_view"
    CAMERA_VIEW_END = "camera_view_end"
    PTZ_CONTROL = "ptz_control"
    PTZ_RELEASE = "ptz_release"
    PTZ_MOVE = "ptz_move"
    POSITION_VIEW = "position_view"  # an officer's position and street, asked for
    TRACK_VIEW = "track_view"
    CONSOLE_OPEN = "console_open"  # the console's live updates (alerts, positions)
    CONSOLE_CLOSE = "console_close"
    ALERT_ACTION = "alert_action"
    RECORDING_VIEW = "recording_view"
    EXPORT = "export"
    EXPORT_DOWNLOAD = "export_download"
    HOLD_PLACED = "hold_placed"
    HOLD_LIFTED = "hold_lifted"
    DESTRUCTION = "destruction"
    ACCESS_REFUSED = "access_refused"
    USER_ADDED = "user_added"
    PASSWORD_CHANGED = "password_changed"
    USER_DISABLED = "user_disabled"
    DEVICE_ADDED = "device_added"
    DEVICE_TOKEN_ROTATED = "device_token_rotated"
    DEVICE_REVOKED = "device_revoked"
    REGISTER_PRUNED = "register_pruned"
    # a node took a session over from another (time_from, time_to: the recording's gap)
    SESSION_TAKEN_OVER = "session_taken_over"
    SESSION_RESUMED = "session_resumed"  # a camera back within the grace window


@dataclass(frozen=True)
class Actor:
    """Who acted: a person (name, role, service) or the gateway itself."""

    user: str
    role: str
    service: str = ""

    @classmethod
    def of(cls, person: User) -> Actor:
        return cls(person.name, person.role.value, person.service)


SYSTEM = Actor("bodycam", "system", "gateway")

# The register as CSV, and the names of an entry's fields in its canonical encoding.
CSV_FIELDS = (
    "seq",
    "at",
    "action",
    "outcome",
    "user",
    "role",
    "service",
    "session",
    "camera",
    "from",
    "to",
    "reason",
    "reference",
    "detail",
    "prev_hash",
    "hash",
)


@dataclass(frozen=True)
class Entry:
    """One fact for the register: who, when, what, why, and how it ended."""

    action: Action
    actor: Actor
    at: datetime
    outcome: str = "ok"
    session_id: str = ""
    camera_id: str = ""
    time_from: datetime | None = None
    time_to: datetime | None = None
    reason: str = ""
    reference: str = ""
    detail: str = ""

    def fields(self) -> dict[str, str]:
        """The entry as the register stores it, every value text."""
        return {
            "at": iso(self.at),
            "action": self.action.value,
            "outcome": self.outcome,
            "user": self.actor.user,
            "role": self.actor.role,
            "service": self.actor.service,
            "session": self.session_id,
            "camera": self.camera_id,
            "from": iso(self.time_from) if self.time_from else "",
            "to": iso(self.time_to) if self.time_to else "",
            "reason": self.reason,
            "reference": self.reference,
            "detail": self.detail,
        }


def canonical(seq: int, fields: dict[str, str], prev_hash: str) -> bytes:
    """The bytes an entry's hash covers (this encoding is part of the register's format):
    JSON of its fields, its number and the previous hash, keys sorted, no spaces, UTF-8."""
    body: dict[str, Any] = dict(fields, seq=seq, prev_hash=prev_hash)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(seq: int, fields: dict[str, str], prev_hash: str) -> str:
    return hashlib.sha256(canonical(seq, fields, prev_hash)).hexdigest()
