"""PostgreSQL queries of the catalogue: devices, people and logins, alerts, sessions,
segments, the city, positions (the interface and its docstrings: `store.base.Store`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

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
from .connection import Connection, PostgresConnection
from .schema import CAMERAS_LOCK

ALERT = (
    "SELECT alerts.*, sessions.device_id, sessions.officer FROM alerts"
    " JOIN sessions ON sessions.id = alerts.session_id"
)


class CatalogueQueries(PostgresConnection):
    """Devices, people, alerts, sessions, segments, city and positions."""

    # devices

    def add_device(self, device_id: str, officer: str, token_hash: str, now: datetime) -> bool:
        return (
            self._run(
                "INSERT INTO devices (id, officer, token_hash, created_at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (device_id, officer, token_hash, iso(now)),
            )
            == 1
        )

    def get_device(self, device_id: str) -> Device | None:
        row = self._one("SELECT * FROM devices WHERE id = %s", (device_id,))
        return rows.device(row) if row else None

    def device_by_token_hash(self, token_hash: str) -> Device | None:
        row = self._one("SELECT * FROM devices WHERE token_hash = %s", (token_hash,))
        return rows.device(row) if row else None

    def list_devices(self) -> list[Device]:
        return [rows.device(r) for r in self._all("SELECT * FROM devices ORDER BY id")]

    def revoke_device(self, device_id: str, now: datetime) -> bool:
        return (
            self._run(
                "UPDATE devices SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (iso(now), device_id),
            )
            == 1
        )

    def set_device_token(self, device_id: str, token_hash: str) -> bool:
        return (
            self._run(
                "UPDATE devices SET token_hash = %s, revoked_at = NULL WHERE id = %s",
                (token_hash, device_id),
            )
            == 1
        )

    def set_device_identity(self, device_id: str, serial: str, model: str, firmware: str) -> None:
        self._run(
            "UPDATE devices SET serial = %s, model = %s, firmware = %s WHERE id = %s",
            (serial, model, firmware, device_id),
        )

    # people and their logins

    def add_user(self, user: User, password_hash: str) -> bool:
        return (
            self._run(
                "INSERT INTO users (name, role, service, password_hash, created_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (user.name, user.role.value, user.service, password_hash, iso(user.created_at)),
            )
            == 1
        )

    def get_user(self, name: str) -> tuple[User, str] | None:
        row = self._one("SELECT * FROM users WHERE name = %s", (name,))
        return (rows.user(row), str(row["password_hash"])) if row else None

    def list_users(self) -> list[User]:
        return [rows.user(r) for r in self._all("SELECT * FROM users ORDER BY name")]

    def set_password(self, name: str, password_hash: str) -> bool:
        with self._transaction() as tx:
            tx.execute("DELETE FROM logins WHERE user_name = %s", (name,))
            cur = tx.execute(
                "UPDATE users SET password_hash = %s WHERE name = %s", (password_hash, name)
            )
            return cur.rowcount == 1

    def add_login(self, token_hash: str, name: str, now: datetime, expires: datetime) -> None:
        self._run(
            "INSERT INTO logins (token_hash, user_name, created_at, expires_at)"
            " VALUES (%s, %s, %s, %s)",
            (token_hash, name, iso(now), iso(expires)),
        )

    def user_of_login(self, token_hash: str, now: datetime) -> User | None:
        row = self._one(
            "SELECT users.* FROM logins JOIN users ON users.name = logins.user_name"
            " WHERE token_hash = %s AND expires_at > %s",
            (token_hash, iso(now)),
        )
        return rows.user(row) if row else None

    def end_login(self, token_hash: str, now: datetime) -> None:
        self._run(
            "DELETE FROM logins WHERE token_hash = %s OR expires_at <= %s", (token_hash, iso(now))
        )

    def live_logins(self, token_hashes: list[str], now: datetime) -> set[str]:
        found = self._all(
            "SELECT token_hash FROM logins JOIN users ON users.name = logins.user_name"
            " WHERE token_hash = ANY(%s) AND expires_at > %s AND users.disabled_at IS NULL",
            (token_hashes, iso(now)),
        )
        return {str(r["token_hash"]) for r in found}

    def disable_user(self, name: str, now: datetime) -> bool:
        with self._transaction() as tx:
            touched = tx.execute(
                "UPDATE users SET disabled_at = %s WHERE name = %s", (iso(now), name)
            ).rowcount
            tx.execute("DELETE FROM logins WHERE user_name = %s", (name,))
        return bool(touched)

    def login_failed(self, keys: list[str], now: datetime, since: datetime) -> int:
        with self._transaction() as tx:
            tx.execute("DELETE FROM login_failures WHERE at < %s", (iso(since),))
            with tx.cursor() as cur:
                cur.executemany(
                    "INSERT INTO login_failures (key, at) VALUES (%s, %s)",
                    [(k, iso(now)) for k in keys],
                )
            row = tx.execute(
                "SELECT COALESCE(MAX(n), 0) AS n FROM (SELECT COUNT(*) AS n FROM login_failures"
                " WHERE key = ANY(%s) GROUP BY key) AS counted",
                (keys,),
            ).fetchone()
            return int(row["n"]) if row else 0

    def login_succeeded(self, keys: list[str]) -> None:
        self._run("DELETE FROM login_failures WHERE key = ANY(%s)", (keys,))

    # alerts

    def add_alert(self, session_id: str, now: datetime) -> None:
        self._run(
            "INSERT INTO alerts (session_id, state, raised_at) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (session_id, AlertState.NEW.value, iso(now)),
        )

    def get_alert(self, session_id: str) -> Alert | None:
        with self._connection() as conn:
            row = conn.execute(f"{ALERT} WHERE session_id = %s".encode(), (session_id,))
            found = row.fetchone()
            return _alert(conn, found) if found else None

    def recent_alerts(self, since: datetime) -> list[Alert]:
        with self._connection() as conn:
            found = conn.execute(
                f"{ALERT} WHERE alerts.state != %s OR alerts.raised_at >= %s"
                " ORDER BY alerts.raised_at DESC".encode(),
                (AlertState.CLOSED.value, iso(since)),
            ).fetchall()
            return [_alert(conn, r) for r in found]

    def act_on_alert(self, session_id: str, expected: AlertState, action: AlertAction) -> bool:
        with self._transaction() as tx:
            cur = tx.execute(
                "UPDATE alerts SET state = %s WHERE session_id = %s AND state = %s",
                (action.state.value, session_id, expected.value),
            )
            if cur.rowcount != 1:
                return False
            tx.execute(
                "INSERT INTO alert_actions (session_id, state, user_name, role, service, at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
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

    # sessions

    def create_session(self, session: Session, resource_id: str) -> None:
        with self._transaction() as tx:
            tx.execute(
                "INSERT INTO sessions (id, device_id, officer, state, started_at, video_codec,"
                " audio_codec, node) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    session.id,
                    session.device_id,
                    session.officer,
                    str(session.state),
                    iso(session.started_at),
                    session.video_codec,
                    session.audio_codec,
                    session.node,
                ),
            )
            tx.execute(
                "INSERT INTO whip_resources (id, session_id, created_at) VALUES (%s, %s, %s)",
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
        with self._transaction() as tx:
            touched = tx.execute(
                "UPDATE sessions SET state = 'live', interrupted_at = NULL,"
                " connections = connections + 1, node = %s WHERE id = %s AND state != 'ended'"
                " AND (%s::text IS NULL OR node = %s)",
                (node, session_id, held_by, held_by),
            ).rowcount
            if not touched:
                return False
            tx.execute(
                "INSERT INTO whip_resources (id, session_id, created_at) VALUES (%s, %s, %s)",
                (resource_id, session_id, iso(now)),
            )
        return True

    def interrupt_session(self, session_id: str, now: datetime, node: str | None = None) -> bool:
        return (
            self._run(
                "UPDATE sessions SET state = 'interrupted', interrupted_at = %s"
                " WHERE id = %s AND state = 'live' AND (%s::text IS NULL OR node = %s)",
                (iso(now), session_id, node, node),
            )
            > 0
        )

    def end_session(
        self, session_id: str, reason: str, ended_at: datetime, node: str | None = None
    ) -> bool:
        return (
            self._run(
                "UPDATE sessions SET state = 'ended', ended_at = %s, end_reason = %s"
                " WHERE id = %s AND state != 'ended' AND (%s::text IS NULL OR node = %s)",
                (iso(ended_at), str(reason), session_id, node, node),
            )
            > 0
        )

    def rehold_session(self, session_id: str, node: str, held_by: str, state: str) -> bool:
        if state not in ("live", "interrupted"):
            return False
        with self._transaction() as tx:
            recovered = tx.execute(
                "SELECT 1 FROM segments WHERE session_id = %s AND node = %s"
                " AND state IN ('recovered', 'empty')",
                (session_id, held_by),
            ).fetchone()
            if recovered:  # another node has sealed what this run was writing: too late
                return False
            touched = tx.execute(
                "UPDATE sessions SET node = %s, state = %s,"
                " interrupted_at = CASE WHEN %s = 'live' THEN NULL ELSE interrupted_at END"
                " WHERE id = %s AND node = %s AND state != 'ended'",
                (node, state, state, session_id, held_by),
            ).rowcount
            if touched:
                tx.execute(
                    "UPDATE segments SET node = %s WHERE session_id = %s AND node = %s"
                    " AND state = 'open'",
                    (node, session_id, held_by),
                )
        return bool(touched)

    def live_session_of_device(self, device_id: str) -> Session | None:
        row = self._one(
            "SELECT * FROM sessions WHERE device_id = %s AND state != 'ended'"
            " ORDER BY started_at DESC LIMIT 1",
            (device_id,),
        )
        return rows.session(row) if row else None

    def sessions_held_by(self, nodes: list[str]) -> list[Session]:
        found = self._all(
            "SELECT * FROM sessions WHERE state != 'ended' AND node = ANY(%s) ORDER BY started_at",
            (nodes,),
        )
        return [rows.session(r) for r in found]

    def update_session_media(self, session_id: str, video_codec: str, audio_codec: str) -> None:
        self._run(
            "UPDATE sessions SET video_codec = %s, audio_codec = %s WHERE id = %s",
            (video_codec, audio_codec, session_id),
        )

    def update_session_telemetry(
        self, session_id: str, battery_percent: float | None, invalid_telemetry: int
    ) -> None:
        self._run(
            "UPDATE sessions SET battery_percent = COALESCE(%s, battery_percent),"
            " invalid_telemetry = %s WHERE id = %s",
            (battery_percent, invalid_telemetry, session_id),
        )

    def get_session(self, session_id: str) -> Session | None:
        row = self._one("SELECT * FROM sessions WHERE id = %s", (session_id,))
        return rows.session(row) if row else None

    def session_of_resource(self, resource_id: str) -> Session | None:
        row = self._one(
            "SELECT s.* FROM sessions s JOIN whip_resources r ON r.session_id = s.id"
            " WHERE r.id = %s",
            (resource_id,),
        )
        return rows.session(row) if row else None

    def list_sessions(self, state: SessionState | None = None) -> list[Session]:
        if state is None:
            found = self._all("SELECT * FROM sessions ORDER BY started_at, id")
        else:
            found = self._all(
                "SELECT * FROM sessions WHERE state = %s ORDER BY started_at, id", (str(state),)
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
        with self._transaction() as tx:
            # one writer per session's segments: its recorder; the lock keeps two from racing
            tx.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (session_id,))
            row = tx.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM segments WHERE session_id = %s",
                (session_id,),
            ).fetchone()
            assert row is not None
            seq = int(row["seq"])
            made = tx.execute(
                "INSERT INTO segments (session_id, seq, path, started_at, video_codec, width,"
                " height, state, node) VALUES (%s, %s, %s, %s, %s, %s, %s, 'open', %s)"
                " RETURNING id",
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
            ).fetchone()
            assert made is not None
            return int(made["id"]), seq

    def close_segment(
        self, segment_id: int, ended_at: datetime, size: int, sha256: str, state: str = "closed"
    ) -> str:
        with self._transaction() as tx:
            seg = tx.execute(
                "SELECT session_id, state FROM segments WHERE id = %s FOR UPDATE", (segment_id,)
            ).fetchone()
            assert seg is not None, f"no segment {segment_id}"
            if seg["state"] != "open":  # sealed once, by its writer or by recovery
                raise Conflict(f"segment {segment_id} is sealed already ({seg['state']})")
            # one seal of a session at a time, whichever node seals: one chain
            tx.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (seg["session_id"],))
            last = tx.execute(
                "SELECT sha256, chain_index FROM segments WHERE session_id = %s"
                " AND chain_index > 0 ORDER BY chain_index DESC LIMIT 1",
                (seg["session_id"],),
            ).fetchone()
            prev_sha = str(last["sha256"]) if last else GENESIS_HASH
            index = int(last["chain_index"]) + 1 if last else 1
            tx.execute(
                "UPDATE segments SET ended_at = %s, bytes = %s, sha256 = %s, prev_sha256 = %s,"
                " state = %s, chain_index = %s WHERE id = %s",
                (iso(ended_at), size, sha256, prev_sha, state, index, segment_id),
            )
        return prev_sha

    def drop_segment(self, segment_id: int) -> None:
        self._run("DELETE FROM segments WHERE id = %s", (segment_id,))

    def segments_of(self, session_id: str) -> list[Segment]:
        found = self._all(
            "SELECT * FROM segments WHERE session_id = %s ORDER BY seq", (session_id,)
        )
        return [rows.segment(r) for r in found]

    def open_segments(self, nodes: list[str] | None = None) -> list[Segment]:
        if nodes is None:
            found = self._all("SELECT * FROM segments WHERE state = 'open' ORDER BY id")
        else:
            found = self._all(
                "SELECT * FROM segments WHERE state = 'open' AND node = ANY(%s) ORDER BY id",
                (nodes,),
            )
        return [rows.segment(r) for r in found]

    def heartbeat(self, node: str, name: str, url: str, first: bool = False) -> bool:
        if first:
            self._run(
                "INSERT INTO nodes (id, name, url, started_at, seen_at)"
                " VALUES (%s, %s, %s, to_char(clock_timestamp() AT TIME ZONE 'UTC',"
                ' \'YYYY-MM-DD"T"HH24:MI:SS"+00:00"\'), extract(epoch FROM clock_timestamp()))'
                " ON CONFLICT (id) DO NOTHING",
                (node, name, url),
            )
        row = self._one(
            "UPDATE nodes SET seen_at = extract(epoch FROM clock_timestamp()) WHERE id = %s"
            " RETURNING dead_at",
            (node,),
        )
        return row is not None and row["dead_at"] is None

    def declare_dead(
        self, after_seconds: float, name: str, alive: str, everyone_else: bool = False
    ) -> list[str]:
        found = self._all(
            "UPDATE nodes SET dead_at = CASE WHEN name = %s OR %s THEN 0"
            " ELSE extract(epoch FROM clock_timestamp()) END"
            " WHERE dead_at IS NULL AND id != %s AND (name = %s OR %s"
            " OR seen_at < extract(epoch FROM clock_timestamp()) - %s) RETURNING id",
            (name, everyone_else, alive, name, everyone_else, after_seconds),
        )
        return sorted(str(r["id"]) for r in found)

    def dead_nodes(self, settled_seconds: float) -> list[str]:
        found = self._all(
            "SELECT id FROM nodes WHERE dead_at <= extract(epoch FROM clock_timestamp()) - %s"
            " ORDER BY id",
            (settled_seconds,),
        )
        return ["", *(str(r["id"]) for r in found)]

    def node_stopped(self, node: str) -> None:
        self._run("UPDATE nodes SET dead_at = 0 WHERE id = %s", (node,))

    def forget_node(self, node: str) -> None:
        self._run("DELETE FROM nodes WHERE id = %s", (node,))

    def recording_totals(self, session_id: str) -> tuple[int, int]:
        row = self._one(
            "SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS size FROM segments"
            " WHERE session_id = %s AND state != 'open'",
            (session_id,),
        )
        assert row is not None
        return int(row["n"]), int(row["size"])

    # camera registry and places

    def replace_cameras(self, features: list[tuple[str, str]]) -> None:
        with self._transaction() as tx:
            tx.execute("DELETE FROM cameras")
            with tx.cursor() as cur:
                cur.executemany("INSERT INTO cameras (id, feature) VALUES (%s, %s)", features)
            _bump_geo_version(tx)

    def camera_features(self) -> list[str]:
        return [str(r["feature"]) for r in self._all("SELECT feature FROM cameras ORDER BY id")]

    def claim_cameras(
        self, camera_ids: list[str], node: str, now: datetime, until: datetime
    ) -> list[str]:
        if not camera_ids:
            return []
        with self._transaction() as tx:
            # one node's claims at a time: rows locked in one order, never a deadlock
            tx.execute("SELECT pg_advisory_xact_lock(%s)", (CAMERAS_LOCK,))
            with tx.cursor() as cur:
                cur.executemany(
                    "INSERT INTO camera_health (camera_id) VALUES (%s) ON CONFLICT DO NOTHING",
                    [(c,) for c in camera_ids],
                )
            claimed = tx.execute(
                "UPDATE camera_health SET polled_by = %s, claimed_until = %s"
                " WHERE camera_id = ANY(%s) AND (polled_by = %s OR claimed_until <= %s)"
                " RETURNING camera_id",
                (node, iso(until), camera_ids, node, iso(now)),
            ).fetchall()
        return sorted(r["camera_id"] for r in claimed)

    def record_camera_checks(self, checks: list[CameraCheck], node: str) -> None:
        with self._transaction() as tx, tx.cursor() as cur:
            cur.executemany(
                "UPDATE camera_health SET state = %s, since = %s, checked_at = %s, error = %s,"
                " serial = %s, model = %s, firmware = %s, polls = %s"
                " WHERE camera_id = %s AND polled_by = %s",
                [(*rows.check_values(c), node) for c in sorted(checks, key=by_camera)],
            )

    def camera_checks(self) -> list[CameraCheck]:
        found = self._all("SELECT * FROM camera_health ORDER BY camera_id")
        return [rows.camera_check(r) for r in found]

    def replace_places(self, places: list[tuple[str, str, str]]) -> None:
        with self._transaction() as tx:
            tx.execute("DELETE FROM places")
            with tx.cursor() as cur:
                cur.executemany(
                    "INSERT INTO places (kind, name, geometry) VALUES (%s, %s, %s)", places
                )
            _bump_geo_version(tx)

    def geo_version(self) -> int:
        row = self._one("SELECT value FROM meta WHERE key = 'geo_version'")
        return int(row["value"]) if row else 0

    def places(self, kind: str) -> list[tuple[str, str]]:
        found = self._all("SELECT name, geometry FROM places WHERE kind = %s ORDER BY id", (kind,))
        return [(str(r["name"]), str(r["geometry"])) for r in found]

    # positions

    def add_position(self, session_id: str, position: Position, verdict: str = "kept") -> None:
        self._run(
            "INSERT INTO positions (session_id, time, lat, lon, accuracy_m, heading_deg,"
            " speed_mps, verdict) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
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
        found = self._all(
            "SELECT * FROM positions WHERE session_id = %s"
            + (" AND verdict IN ('kept', 'restart')" if track_only else "")
            + " ORDER BY time, id",
            (session_id,),
        )
        return [rows.position(r) for r in found]


def _alert(conn: Connection, row: dict[str, Any]) -> Alert:
    actions = conn.execute(
        "SELECT * FROM alert_actions WHERE session_id = %s ORDER BY id", (row["session_id"],)
    ).fetchall()
    return rows.alert(row, actions)


def _bump_geo_version(tx: Connection) -> None:
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('geo_version', '1') ON CONFLICT (key)"
        " DO UPDATE SET value = (CAST(meta.value AS INTEGER) + 1)::text"
    )
