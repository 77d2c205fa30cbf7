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
    GATEWAY_RESTART = "gateway_restart"
    SHUTDOWN = "shutdown"


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

    @property
    def closed(self) -> bool:
        return self.state == "closed"


@dataclass(frozen=True)
class Position:
    """A GPS fix from a camera, as received (lat, lon in degrees WGS 84)."""

    lat: float
    lon: float
    accuracy_m: float
    time: datetime
    heading_deg: float | None = None
    speed_mps: float | None = None
