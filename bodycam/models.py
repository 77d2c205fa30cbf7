"""Plain data types shared by the store, the gateway and the command line."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


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
