"""SQLite queries of the catalogue: devices, people and logins, alerts, sessions,
segments, the city, positions (the interface and its docstrings: `store.base.Store`)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime

from ...clock import iso
from ...errors import Conflict
from ...models import (
    GENESIS_HASH,
    Alert,
    AlertAction,
    AlertState,
    CameraCheck,
    Device,
    Position,
    Segment,
    Session,
    SessionState,
    User,
)
from .. import rows
from ..rows import by_camera
from .connection import SqliteConnection


class CatalogueQueries(SqliteConnection):
    """Devices, people, alerts, sessions, segments, city and positions."""

    # devices

    def add_device(self, device_id: str, officer: str, token_hash: str, now: datetime) -> bool:
        cur = self._db.execute(
            "INSERT INTO devices (id, officer, token_hash, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (device_id, officer, token_hash, iso(now)),
        )
        return cur.rowcount == 1

    def get_device(self, device_id: str) -> Device | None:
        row = self._db.execute("SELECT * FROM devices WHERE id = ?", (device_id,)).fetchone()
        return rows.device(row) if row else None

    def device_by_token_hash(self, token_hash: str) -> Device | None:
        row = self._db.execute(
            "SELECT * FROM devices WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        return rows.device(row) if row else None

    def list_devices(self) -> list[Device]:
        return [rows.device(r) for r in self._db.execute("SELECT * FROM devices ORDER BY id")]

    def revoke_device(self, device_id: str, now: datetime) -> bool:
        """Mark a device revoked; False if it does not exist or was already revoked."""
        cur = self._db.execute(
            "UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (iso(now), device_id),
        )
        return cur.rowcount == 1

    def set_device_token(self, device_id: str, token_hash: str) -> bool:
        """Replace a device's token (and un-revoke it); False if the device does not exist."""
        cur = self._db.execute(
            "UPDATE devices SET token_hash = ?, revoked_at = NULL WHERE id = ?",
            (token_hash, device_id),
        )
        return cur.rowcount == 1

    def set_device_identity(self, device_id: str, serial: str, model: str, firmware: str) -> None:
        self._db.execute(
            "UPDATE devices SET serial = ?, model = ?, firmware = ? WHERE id = ?",
            (serial, model, firmware, device_id),
        )

    # people and their logins

    def add_user(self, user: User, password_hash: str) -> bool:
        cur = self._db.execute(
            "INSERT INTO users (name, role, service, password_hash, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (user.name, user.role.value, user.service, password_hash, iso(user.created_at)),
        )
        return cur.rowcount == 1

    def get_user(self, name: str) -> tuple[User, str] | None:
        """A person and their password hash."""
        row = self._db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return (rows.user(row), row["password_hash"]) if row else None

    def list_users(self) -> list[User]:
        return [rows.user(r) for r in self._db.execute("SELECT * FROM users ORDER BY name")]

    def set_password(self, name: str, password_hash: str) -> bool:
        """Replace a password and end the person's logins; False if there is no such user."""
        with self._transaction() as db:
            db.execute("DELETE FROM logins WHERE user_name = ?", (name,))
            cur = db.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)
            )
            return cur.rowcount == 1

    def add_login(self, token_hash: str, name: str, now: datetime, expires: datetime) -> None:
        self._db.execute(
            "INSERT INTO logins (token_hash, user_name, created_at, expires_at)"
            " VALUES (?, ?, ?, ?)",
            (token_hash, name, iso(now), iso(expires)),
        )

    def user_of_login(self, token_hash: str, now: datetime) -> User | None:
        """The person a login token belongs to, while it has not expired."""
        row = self._db.execute(
            "SELECT users.* FROM logins JOIN users ON users.name = logins.user_name"
            " WHERE token_hash = ? AND expires_at > ?",
            (token_hash, iso(now)),
        ).fetchone()
        return rows.user(row) if row else None

    def end_login(self, token_hash: str, now: datetime) -> None:
        """Log out; expired logins go at the same time."""
        self._db.execute(
            "DELETE FROM logins WHERE token_hash = ? OR expires_at <= ?", (token_hash, iso(now))
        )

    def live_logins(self, token_hashes: list[str], now: datetime) -> set[str]:
        found = self._db.execute(
            "SELECT token_hash FROM logins JOIN users ON users.name = logins.user_name"
            f" WHERE token_hash IN ({', '.join('?' * len(token_hashes))})"
            " AND expires_at > ? AND users.disabled_at IS NULL",
            (*token_hashes, iso(now)),
        )
        return {str(r[0]) for r in found}

    def disable_user(self, name: str, now: datetime) -> bool:
        with self._transaction() as db:
            touched = db.execute(
                "UPDATE users SET disabled_at = ? WHERE name = ?", (iso(now), name)
            ).rowcount
            db.execute("DELETE FROM logins WHERE user_name = ?", (name,))
        return bool(touched)

    def login_failed(self, keys: list[str], now: datetime, since: datetime) -> int:
        with self._transaction() as db:
            db.execute("DELETE FROM login_failures WHERE at < ?", (iso(since),))
            db.executemany(
                "INSERT INTO login_failures (key, at) VALUES (?, ?)", [(k, iso(now)) for k in keys]
            )
            row = db.execute(
                "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM login_failures"
                f" WHERE key IN ({', '.join('?' * len(keys))}) GROUP BY key)",
                keys,
            ).fetchone()
            return int(row[0])

    def login_succeeded(self, keys: list[str]) -> None:
        self._db.execute(
            f"DELETE FROM login_failures WHERE key IN ({', '.join('?' * len(keys))})", keys
        )

    # alerts

    def add_alert(self, session_id: str, now: datetime) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO alerts (session_id, state, raised_at) VALUES (?, ?, ?)",
            (session_id, AlertState.NEW.value, iso(now)),
        )

    def get_alert(self, session_id: str) -> Alert | None:
        row = self._db.execute(
            "SELECT alerts.*, sessions.device_id, sessions.officer FROM alerts"
            " JOIN sessions ON sessions.id = alerts.session_id WHERE session_id = ?",
            (session_id,),
        ).fetchone()
        return self._alert(row) if row else None

    def recent_alerts(self, since: datetime) -> list[Alert]:
        """Alerts not closed, and those raised since `since`; newest first."""
        found = self._db.execute(
            "SELECT alerts.*, sessions.device_id, sessions.officer FROM alerts"
            " JOIN sessions ON sessions.id = alerts.session_id"
            " WHERE alerts.state != ? OR alerts.raised_at >= ? ORDER BY alerts.raised_at DESC",
            (AlertState.CLOSED.value, iso(since)),
        ).fetchall()
        return [self._alert(r) for r in found]

    def act_on_alert(self, session_id: str, expected: AlertState, action: AlertAction) -> bool:
        """Move an alert from `expected` to the action's state; False if it was not there."""
        with self._transaction() as db:
            cur = db.execute(
                "UPDATE alerts SET state = ? WHERE session_id = ? AND state = ?",
                (action.state.value, session_id, expected.value),
            )
            if cur.rowcount != 1:
                return False
            db.execute(
                "INSERT INTO alert_actions (session_id, state, user_name, role, service, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    session_id,
                    action.state.value,
                    action.user,
                    action.role,
                    action.service,
                    iso(action.at),
                ),
            )
            return True

    def _alert(self, row: sqlite3.Row) -> Alert:
        actions = self._db.execute(
            "SELECT * FROM alert_actions WHERE session_id = ? ORDER BY rowid", (row["session_id"],)
        )
        return rows.alert(row, actions)

    # sessions

    def create_session(self, session: Session, resource_id: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO sessions (id, device_id, officer, state, started_at, video_codec,"
                " audio_codec, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session.id,
                    session.device_id,
                    session.officer,
                    session.state,
                    iso(session.started_at),
                    session.video_codec,
                    session.audio_codec,
                    session.node,
                ),
            )
            db.execute(
                "INSERT INTO whip_resources (id, session_id, created_at) VALUES (?, ?, ?)",
                (resource_id, session.id, iso(session.started_at)),
            )

    def resume_session(
        self,
        session_id: str,
        resource_id: str,
        now: datetime,
        node: str = "",
        held_by: str | None = None,
    ) -> bool:
        with self._transaction() as db:
            touched = db.execute(
                "UPDATE sessions SET state = 'live', interrupted_at = NULL,"
                " connections = connections + 1, node = ? WHERE id = ? AND state != 'ended'"
                " AND (? IS NULL OR node = ?)",
                (node, session_id, held_by, held_by),
            ).rowcount
            if not touched:
                return False
            db.execute(
                "INSERT INTO whip_resources (id, session_id, created_at) VALUES (?, ?, ?)",
                (resource_id, session_id, iso(now)),
            )
        return True

    def interrupt_session(self, session_id: str, now: datetime, node: str | None = None) -> bool:
        cur = self._db.execute(
            "UPDATE sessions SET state = 'interrupted', interrupted_at = ?"
            " WHERE id = ? AND state = 'live' AND (? IS NULL OR node = ?)",
            (iso(now), session_id, node, node),
        )
        return cur.rowcount > 0

    def end_session(
        self, session_id: str, reason: str, ended_at: datetime, node: str | None = None
    ) -> bool:
        cur = self._db.execute(
            "UPDATE sessions SET state = 'ended', ended_at = ?, end_reason = ?"
            " WHERE id = ? AND state != 'ended' AND (? IS NULL OR node = ?)",
            (iso(ended_at), reason, session_id, node, node),
        )
        return cur.rowcount > 0

    def rehold_session(self, session_id: str, node: str, held_by: str, state: str) -> bool:
        if state not in ("live", "interrupted"):
            return False
        with self._transaction() as db:
            recovered = db.execute(
                "SELECT 1 FROM segments WHERE session_id = ? AND node = ?"
                " AND state IN ('recovered', 'empty')",
                (session_id, held_by),
            ).fetchone()
            if recovered:  # another node has sealed what this run was writing: too late
                return False
            touched = db.execute(
                "UPDATE sessions SET node = ?, state = ?,"
                " interrupted_at = CASE WHEN ? = 'live' THEN NULL ELSE interrupted_at END"
                " WHERE id = ? AND node = ? AND state != 'ended'",
                (node, state, state, session_id, held_by),
            ).rowcount
            if touched:
                db.execute(
                    "UPDATE segments SET node = ? WHERE session_id = ? AND node = ?"
                    " AND state = 'open'",
                    (node, session_id, held_by),
                )
        return bool(touched)

    def live_session_of_device(self, device_id: str) -> Session | None:
        row = self._db.execute(
            "SELECT * FROM sessions WHERE device_id = ? AND state != 'ended'"
            " ORDER BY started_at DESC LIMIT 1",
            (device_id,),
        ).fetchone()
        return rows.session(row) if row else None

    def sessions_held_by(self, nodes: list[str]) -> list[Session]:
        found = self._db.execute(
            "SELECT * FROM sessions WHERE state != 'ended'"
            f" AND node IN ({', '.join('?' * len(nodes))}) ORDER BY started_at",
            nodes,
        )
        return [rows.session(r) for r in found]

    def update_session_media(self, session_id: str, video_codec: str, audio_codec: str) -> None:
        self._db.execute(
            "UPDATE sessions SET video_codec = ?, audio_codec = ? WHERE id = ?",
            (video_codec, audio_codec, session_id),
        )

    def update_session_telemetry(
        self, session_id: str, battery_percent: float | None, invalid_telemetry: int
    ) -> None:
        self._db.execute(
            "UPDATE sessions SET battery_percent = COALESCE(?, battery_percent),"
            " invalid_telemetry = ? WHERE id = ?",
            (battery_percent, invalid_telemetry, session_id),
        )

    def get_session(self, session_id: str) -> Session | None:
        row = self._db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return rows.session(row) if row else None

    def session_of_resource(self, resource_id: str) -> Session | None:
        row = self._db.execute(
            "SELECT s.* FROM sessions s JOIN whip_resources r ON r.session_id = s.id"
            " WHERE r.id = ?",
            (resource_id,),
        ).fetchone()
        return rows.session(row) if row else None

    def list_sessions(self, state: SessionState | None = None) -> list[Session]:
        if state is None:
            found = self._db.execute("SELECT * FROM sessions ORDER BY started_at")
        else:
            found = self._db.execute(
                "SELECT * FROM sessions WHERE state = ? ORDER BY started_at", (state,)
            )
        return [rows.session(r) for r in found]

    # segments

    def open_segment(
        self,
        session_id: str,
        started_at: datetime,
        video_codec: str,
        width: int,
        height: int,
        path_for: Callable[[int], str],
        node: str = "",
    ) -> tuple[int, int]:
        with self._transaction() as db:
            row = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM segments WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            seq = int(row[0])
            cur = db.execute(
                "INSERT INTO segments (session_id, seq, path, started_at, video_codec, width,"
                " height, state, node) VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?)",
                (
                    session_id,
                    seq,
                    path_for(seq),
                    iso(started_at),
                    video_codec,
                    width,
                    height,
                    node,
                ),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid, seq

    def close_segment(
        self, segment_id: int, ended_at: datetime, size: int, sha256: str, state: str = "closed"
    ) -> str:
        with self._transaction() as db:
            seg = db.execute(
                "SELECT session_id, state FROM segments WHERE id = ?", (segment_id,)
            ).fetchone()
            if seg["state"] != "open":  # sealed once, by its writer or by recovery
                raise Conflict(f"segment {segment_id} is sealed already ({seg['state']})")
            last = db.execute(
                "SELECT sha256, chain_index FROM segments WHERE session_id = ? AND chain_index > 0"
                " ORDER BY chain_index DESC LIMIT 1",
                (seg["session_id"],),
            ).fetchone()
            prev_sha, index = (
                (last["sha256"], last["chain_index"] + 1) if last else (GENESIS_HASH, 1)
            )
            db.execute(
                "UPDATE segments SET ended_at = ?, bytes = ?, sha256 = ?, prev_sha256 = ?,"
                " state = ?, chain_index = ? WHERE id = ?",
                (iso(ended_at), size, sha256, prev_sha, state, index, segment_id),
            )
        return str(prev_sha)

    def drop_segment(self, segment_id: int) -> None:
        self._db.execute("DELETE FROM segments WHERE id = ?", (segment_id,))

    def segments_of(self, session_id: str) -> list[Segment]:
        found = self._db.execute(
            "SELECT * FROM segments WHERE session_id = ? ORDER BY seq", (session_id,)
        )
        return [rows.segment(r) for r in found]

    def open_segments(self, nodes: list[str] | None = None) -> list[Segment]:
        if nodes is None:
            found = self._db.execute("SELECT * FROM segments WHERE state = 'open' ORDER BY id")
        else:
            found = self._db.execute(
                "SELECT * FROM segments WHERE state = 'open'"
                f" AND node IN ({', '.join('?' * len(nodes))}) ORDER BY id",
                nodes,
            )
        return [rows.segment(r) for r in found]

    def heartbeat(self, node: str, name: str, url: str, first: bool = False) -> bool:
        if first:
            self._db.execute(
                "INSERT INTO nodes (id, name, url, started_at, seen_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (node, name, url, iso(datetime.now(UTC)), time.time()),
            )
        row = self._db.execute(
            "UPDATE nodes SET seen_at = ? WHERE id = ? RETURNING dead_at", (time.time(), node)
        ).fetchone()
        return row is not None and row[0] is None

    def declare_dead(
        self, after_seconds: float, name: str, alive: str, everyone_else: bool = False
    ) -> list[str]:
        now = time.time()
        with self._transaction() as db:
            found = db.execute(
                "UPDATE nodes SET dead_at = CASE WHEN name = ? OR ? THEN 0 ELSE ? END"
                " WHERE dead_at IS NULL AND id != ? AND (name = ? OR ? OR seen_at < ?)"
                " RETURNING id",
                (name, everyone_else, now, alive, name, everyone_else, now - after_seconds),
            ).fetchall()
        return sorted(str(r[0]) for r in found)

    def dead_nodes(self, settled_seconds: float) -> list[str]:
        found = self._db.execute(
            "SELECT id FROM nodes WHERE dead_at <= ? ORDER BY id",
            (time.time() - settled_seconds,),
        )
        return ["", *(r[0] for r in found)]

    def node_stopped(self, node: str) -> None:
        self._db.execute("UPDATE nodes SET dead_at = 0 WHERE id = ?", (node,))

    def forget_node(self, node: str) -> None:
        self._db.execute("DELETE FROM nodes WHERE id = ?", (node,))

    def recording_totals(self, session_id: str) -> tuple[int, int]:
        """(number of sealed segments, their total bytes)."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM segments"
            " WHERE session_id = ? AND state != 'open'",
            (session_id,),
        ).fetchone()
        return int(row[0]), int(row[1])

    # camera registry and places (GeoJSON kept as imported, validated on the way in)

    def replace_cameras(self, features: list[tuple[str, str]]) -> None:
        """The whole registry at once: (camera id, GeoJSON Feature text) pairs."""
        with self._transaction() as db:
            db.execute("DELETE FROM cameras")
            db.executemany("INSERT INTO cameras (id, feature) VALUES (?, ?)", features)
            _bump_geo_version(db)

    def camera_features(self) -> list[str]:
        return [r["feature"] for r in self._db.execute("SELECT feature FROM cameras ORDER BY id")]

    def claim_cameras(
        self, camera_ids: list[str], node: str, now: datetime, until: datetime
    ) -> list[str]:
        if not camera_ids:
            return []
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO camera_health (camera_id) VALUES (?) ON CONFLICT DO NOTHING",
                [(c,) for c in camera_ids],
            )
            claimed = db.execute(
                "UPDATE camera_health SET polled_by = ?, claimed_until = ?"
                f" WHERE camera_id IN ({', '.join('?' * len(camera_ids))})"
                " AND (polled_by = ? OR claimed_until <= ?) RETURNING camera_id",
                (node, iso(until), *camera_ids, node, iso(now)),
            ).fetchall()
        return sorted(r[0] for r in claimed)

    def record_camera_checks(self, checks: list[CameraCheck], node: str) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE camera_health SET state = ?, since = ?, checked_at = ?, error = ?,"
                " serial = ?, model = ?, firmware = ?, polls = ?"
                " WHERE camera_id = ? AND polled_by = ?",
                [(*rows.check_values(c), node) for c in sorted(checks, key=by_camera)],
            )

    def camera_checks(self) -> list[CameraCheck]:
        found = self._db.execute("SELECT * FROM camera_health ORDER BY camera_id")
        return [rows.camera_check(r) for r in found]

    def replace_places(self, places: list[tuple[str, str, str]]) -> None:
        """All places at once: (kind, name, GeoJSON geometry text) triples."""
        with self._transaction() as db:
            db.execute("DELETE FROM places")
            db.executemany("INSERT INTO places (kind, name, geometry) VALUES (?, ?, ?)", places)
            _bump_geo_version(db)

    def geo_version(self) -> int:
        """Changes with every import of cameras or places (a running gateway reloads)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'geo_version'").fetchone()
        return int(row["value"]) if row else 0

    def places(self, kind: str) -> list[tuple[str, str]]:
        """(name, GeoJSON geometry text) of every place of a kind."""
        found = self._db.execute(
            "SELECT name, geometry FROM places WHERE kind = ? ORDER BY id", (kind,)
        )
        return [(r["name"], r["geometry"]) for r in found]

    # positions

    def add_position(self, session_id: str, position: Position, verdict: str = "kept") -> None:
        """Every fix is kept, with the filter's verdict ('kept', 'jump', …)."""
        self._db.execute(
            "INSERT INTO positions (session_id, time, lat, lon, accuracy_m, heading_deg,"
            " speed_mps, verdict) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session_id,
                iso(position.time),
                position.lat,
                position.lon,
                position.accuracy_m,
                position.heading_deg,
                position.speed_mps,
                verdict,
            ),
        )

    def positions_of(self, session_id: str, track_only: bool = False) -> list[Position]:
        """A session's fixes in time order; `track_only`: those the filter kept."""
        found = self._db.execute(
            "SELECT * FROM positions WHERE session_id = ?"
            + (" AND verdict IN ('kept', 'restart')" if track_only else "")
            + " ORDER BY time",
            (session_id,),
        )
        return [rows.position(r) for r in found]


def _bump_geo_version(db: sqlite3.Connection) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('geo_version', '1') ON CONFLICT(key)"
        " DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )
