"""The store's interface, on both backends: the same cases on SQLite and on a real
PostgreSQL server (each test on a schema of its own). Behaviour the rest of bodycam relies
on, checked where the SQL is, so that a second backend cannot differ quietly."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from bodycam.cli import main
from bodycam.evidence import register
from bodycam.models import (
    GENESIS_HASH,
    SYSTEM,
    Action,
    Actor,
    AlertAction,
    AlertState,
    CameraCheck,
    Entry,
    Hold,
    Position,
    Role,
    Session,
    SessionState,
    User,
)
from bodycam.store import (
    PostgresStore,
    SchemaTooNew,
    SqliteStore,
    Store,
    StoreThreadError,
    StoreUnavailable,
)
from bodycam.store.postgres import schema as postgres_schema
from bodycam.store.sqlite import schema as sqlite_schema

T0 = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)
LATEST = len(sqlite_schema.MIGRATIONS)
assert len(postgres_schema.MIGRATIONS) == LATEST, "the two backends' schemas must keep in step"
OPERATOR = Actor("martin", "operator", "CSU")


def open_backend(kind: str, place: str | Path) -> Store:
    return SqliteStore(Path(place)) if kind == "sqlite" else PostgresStore(str(place), 2)


@pytest.fixture(params=["sqlite", "postgres"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | Path]:
    """Where a store of each backend lives: a file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return "sqlite", tmp_path / "bodycam.sqlite3"
    return "postgres", request.getfixturevalue("postgres_url")


@pytest.fixture
def store(place: tuple[str, str | Path]) -> Iterator[Store]:
    opened = open_backend(*place)
    yield opened
    opened.close()


def session(
    store: Store, sid: str = "s1", device: str = "cam-1", at: datetime = T0, node: str = ""
) -> None:
    if store.call(store.get_device, device) is None:
        store.call(store.add_device, device, "Agent Martin", f"hash-{device}", at)
    store.call(
        store.create_session,
        Session(sid, device, "Agent Martin", SessionState.LIVE, at, node=node),
        f"r-{sid}",
    )


def test_devices(store: Store) -> None:
    assert store.call(store.add_device, "cam-1", "Agent", "h1", T0)
    assert not store.call(store.add_device, "cam-1", "Other", "h2", T0)  # taken: no error
    assert store.call(store.add_device, "cam-0", "", "h0", T0)
    assert [d.id for d in store.call(store.list_devices)] == ["cam-0", "cam-1"]
    found = store.call(store.device_by_token_hash, "h1")
    assert found is not None
    assert found.officer == "Agent"
    assert store.call(store.revoke_device, "cam-1", T0)
    assert not store.call(store.revoke_device, "cam-1", T0)  # already
    assert store.call(store.set_device_token, "cam-1", "h3")  # and un-revoked
    device = store.call(store.get_device, "cam-1")
    assert device is not None
    assert not device.revoked
    assert store.call(store.device_by_token_hash, "h1") is None
    store.call(store.set_device_identity, "cam-1", "ACCC8E", "AXIS W110", "11.2")
    device = store.call(store.get_device, "cam-1")
    assert device is not None
    assert (device.serial, device.model, device.firmware) == ("ACCC8E", "AXIS W110", "11.2")
    assert not store.call(store.set_device_token, "ghost", "h4")


def test_people_and_logins(store: Store) -> None:
    person = User("dupont", Role.OPERATOR, "CSU", T0)
    assert store.call(store.add_user, person, "scrypt$hash")
    assert not store.call(store.add_user, person, "other")
    found = store.call(store.get_user, "dupont")
    assert found is not None
    assert found[0] == person
    assert found[1] == "scrypt$hash"
    store.call(store.add_login, "t1", "dupont", T0, T0 + timedelta(hours=1))
    store.call(store.add_login, "t2", "dupont", T0, T0 + timedelta(minutes=1))
    assert store.call(store.user_of_login, "t1", T0 + timedelta(minutes=30)) == person
    assert store.call(store.user_of_login, "t2", T0 + timedelta(minutes=30)) is None  # expired
    store.call(store.end_login, "t1", T0 + timedelta(minutes=30))
    assert store.call(store.user_of_login, "t1", T0) is None
    store.call(store.add_login, "t3", "dupont", T0, T0 + timedelta(hours=1))
    assert store.call(store.set_password, "dupont", "new$hash")  # ends every login
    assert store.call(store.user_of_login, "t3", T0) is None
    assert not store.call(store.set_password, "ghost", "x")
    assert [u.name for u in store.call(store.list_users)] == ["dupont"]
    # what open consoles and views ask: which of their logins still let their person in
    store.call(store.add_login, "t4", "dupont", T0, T0 + timedelta(hours=1))
    store.call(store.add_login, "t5", "dupont", T0, T0 + timedelta(minutes=1))
    live = store.call(store.live_logins, ["t3", "t4", "t5"], T0 + timedelta(minutes=30))
    assert live == {"t4"}
    assert store.call(store.disable_user, "dupont", T0 + timedelta(minutes=31))
    assert store.call(store.live_logins, ["t4"], T0 + timedelta(minutes=31)) == set()
    [disabled] = store.call(store.list_users)
    assert disabled.disabled_at == T0 + timedelta(minutes=31)
    assert not store.call(store.disable_user, "ghost", T0)


def test_failed_logins_are_counted_per_key_within_the_window(store: Store) -> None:
    minute = timedelta(minutes=1)
    name, address, other = "name:dupont", "addr:10.0.0.1", "addr:10.0.0.2"
    assert store.call(store.login_failed, [name, address], T0, T0 - 15 * minute) == 1
    assert store.call(store.login_failed, [name, other], T0 + minute, T0 - 14 * minute) == 2
    assert store.call(store.login_failed, [other], T0 + 2 * minute, T0 - 13 * minute) == 2
    # sixteen minutes on, the first has left the window: the name counts two, not three
    later = T0 + 16 * minute
    assert store.call(store.login_failed, [name], later, later - 15 * minute) == 2
    store.call(store.login_succeeded, [name, other])
    assert store.call(store.login_failed, [name, address], later, later - 15 * minute) == 1


def test_cameras_are_polled_by_one_node_at_a_time(store: Store) -> None:
    minute = timedelta(minutes=1)
    claim = store.call(store.claim_cameras, ["c2", "c1"], "node-a", T0, T0 + 2 * minute)
    assert claim == ["c1", "c2"]
    # node B, a minute on: A's claims still cover them; a new camera is B's
    claim = store.call(
        store.claim_cameras, ["c1", "c2", "c3"], "node-b", T0 + minute, T0 + 3 * minute
    )
    assert claim == ["c3"]
    up = CameraCheck("c1", "up", T0, T0 + minute, serial="ACCC", polls="011")
    store.call(store.record_camera_checks, [up, CameraCheck("c3", "down", polls="0")], "node-a")
    checks = {c.camera_id: c for c in store.call(store.camera_checks)}
    assert checks["c1"] == up  # A's to write
    assert checks["c2"] == CameraCheck("c2")  # claimed, never polled yet
    assert checks["c3"] == CameraCheck("c3")  # not A's: its write is left out
    # A renews its own; when it stops renewing, B takes them over
    assert store.call(store.claim_cameras, ["c1"], "node-a", T0 + minute, T0 + 3 * minute) == ["c1"]
    late = T0 + 3 * minute
    claim = store.call(store.claim_cameras, ["c1", "c2", "c3"], "node-b", late, late + minute)
    assert claim == ["c1", "c2", "c3"]
    assert store.call(store.claim_cameras, [], "node-b", late, late) == []


def test_alerts_move_forward_with_who_and_when(store: Store) -> None:
    session(store, "s1")
    session(store, "s2", "cam-2", T0 + timedelta(minutes=1))
    store.call(store.add_alert, "s1", T0)
    store.call(store.add_alert, "s1", T0 + timedelta(hours=1))  # once only
    store.call(store.add_alert, "s2", T0 + timedelta(minutes=1))
    ack = AlertAction(AlertState.ACKNOWLEDGED, "dupont", "operator", "CSU", T0)
    assert store.call(store.act_on_alert, "s1", AlertState.NEW, ack)
    assert not store.call(store.act_on_alert, "s1", AlertState.NEW, ack)  # not there any more
    close = AlertAction(AlertState.CLOSED, "durand", "supervisor", "CSU", T0 + timedelta(1))
    assert store.call(store.act_on_alert, "s1", AlertState.ACKNOWLEDGED, close)
    alert = store.call(store.get_alert, "s1")
    assert alert is not None
    assert alert.raised_at == T0
    assert alert.device_id == "cam-1"
    assert [(a.state, a.user) for a in alert.actions] == [
        (AlertState.ACKNOWLEDGED, "dupont"),
        (AlertState.CLOSED, "durand"),
    ]
    # open ones whenever raised, closed ones only since the given moment; newest first
    assert [a.session_id for a in store.call(store.recent_alerts, T0)] == ["s2", "s1"]
    assert [a.session_id for a in store.call(store.recent_alerts, T0 + timedelta(1))] == ["s2"]
    assert store.call(store.get_alert, "nope") is None


def test_a_session_from_press_to_end(store: Store) -> None:
    session(store)
    assert store.call(store.session_of_resource, "r-s1") is not None
    store.call(store.interrupt_session, "s1", T0 + timedelta(seconds=5))
    store.call(store.resume_session, "s1", "r2", T0 + timedelta(seconds=9))
    store.call(store.update_session_media, "s1", "VP8", "opus")
    store.call(store.update_session_telemetry, "s1", 80.5, 2)
    store.call(store.update_session_telemetry, "s1", None, 3)  # no reading: the last stays
    store.call(store.end_session, "s1", "button", T0 + timedelta(minutes=1))
    store.call(store.end_session, "s1", "delete", T0 + timedelta(minutes=2))  # once
    ended = store.call(store.get_session, "s1")
    assert ended is not None
    assert ended.state == SessionState.ENDED
    assert ended.connections == 2
    assert ended.interrupted_at is None  # cleared by the reconnect
    assert (ended.video_codec, ended.battery_percent, ended.invalid_telemetry) == ("VP8", 80.5, 3)
    assert (ended.end_reason, ended.ended_at) == ("button", T0 + timedelta(minutes=1))
    resumed = store.call(store.session_of_resource, "r2")
    assert resumed is not None
    assert resumed.id == "s1"
    session(store, "s2", at=T0 + timedelta(hours=1))
    assert [s.id for s in store.call(store.list_sessions)] == ["s1", "s2"]
    assert [s.id for s in store.call(store.list_sessions, SessionState.LIVE)] == ["s2"]


def test_segments_chain_as_they_are_sealed(store: Store) -> None:
    session(store)
    first, seq1 = store.call(
        store.open_segment, "s1", T0, "H264", 320, 240, lambda seq: f"s1/{seq:05d}.mkv"
    )
    second, seq2 = store.call(store.open_segment, "s1", T0, "H264", 640, 360, str)
    assert (seq1, seq2) == (1, 2)
    assert [s.id for s in store.call(store.open_segments)] == [first, second]
    assert store.call(store.recording_totals, "s1") == (0, 0)  # nothing sealed yet
    assert store.call(store.close_segment, first, T0 + timedelta(seconds=4), 1000, "a" * 64) == (
        GENESIS_HASH
    )
    assert store.call(store.close_segment, second, T0, 500, "b" * 64, "recovered") == "a" * 64
    third, _ = store.call(store.open_segment, "s1", T0, "H264", 640, 360, str)
    store.call(store.drop_segment, third)
    segments = store.call(store.segments_of, "s1")
    assert [(s.seq, s.state, s.prev_sha256) for s in segments] == [
        (1, "closed", GENESIS_HASH),
        (2, "recovered", "a" * 64),
    ]
    assert segments[0].path == "s1/00001.mkv"
    assert (segments[1].width, segments[1].height) == (640, 360)
    assert store.call(store.recording_totals, "s1") == (2, 1500)
    assert store.call(store.open_segments) == []


def test_a_session_taken_over_by_another_node_is_out_of_the_first_ones_hands(
    store: Store,
) -> None:
    minute = timedelta(minutes=1)
    session(store, "s1", node="a~1")
    assert store.call(store.live_session_of_device, "cam-1") is not None
    assert [s.id for s in store.call(store.sessions_held_by, ["a~1"])] == ["s1"]
    # the camera comes back through node B: B takes it over, C cannot as well
    assert store.call(store.resume_session, "s1", "r2", T0 + minute, "b~1", "a~1")
    assert not store.call(store.resume_session, "s1", "r3", T0 + minute, "c~1", "a~1")
    assert store.call(store.session_of_resource, "r3") is None
    taken = store.call(store.get_session, "s1")
    assert taken is not None
    assert (taken.node, taken.state, taken.connections) == ("b~1", SessionState.LIVE, 2)
    assert store.call(store.sessions_held_by, ["a~1"]) == []
    # A, late, says the link is lost and ends it: not A's any more, nothing changes
    assert not store.call(store.interrupt_session, "s1", T0 + minute, "a~1")
    assert not store.call(store.end_session, "s1", "link_lost", T0 + minute, "a~1")
    assert store.call(store.get_session, "s1") == taken
    assert store.call(store.interrupt_session, "s1", T0 + 2 * minute, "b~1")
    assert store.call(store.end_session, "s1", "button", T0 + 3 * minute, "b~1")
    assert not store.call(store.end_session, "s1", "button", T0 + 4 * minute)  # once
    assert store.call(store.live_session_of_device, "cam-1") is None


def test_the_chain_follows_the_sealing_order_across_nodes(store: Store) -> None:
    session(store)
    a_first, _ = store.call(store.open_segment, "s1", T0, "H264", 320, 240, str, "a~1")
    store.call(store.close_segment, a_first, T0, 10, "1" * 64)
    a_cut, _ = store.call(store.open_segment, "s1", T0, "H264", 320, 240, str, "a~1")
    # A dies writing its second segment; B takes over and seals one before recovery runs
    b_first, _ = store.call(store.open_segment, "s1", T0, "H264", 320, 240, str, "b~1")
    assert [s.id for s in store.call(store.open_segments, ["a~1"])] == [a_cut]
    assert [s.id for s in store.call(store.open_segments)] == [a_cut, b_first]
    assert store.call(store.close_segment, b_first, T0, 10, "3" * 64) == "1" * 64
    assert store.call(store.close_segment, a_cut, T0, 5, "2" * 64, "recovered") == "3" * 64
    segments = store.call(store.segments_of, "s1")
    assert [(s.seq, s.node, s.chain_index) for s in segments] == [
        (1, "a~1", 1),
        (2, "a~1", 3),
        (3, "b~1", 2),
    ]
    chained = sorted(segments, key=lambda s: s.chain_index)
    assert [s.prev_sha256 for s in chained] == [GENESIS_HASH, "1" * 64, "3" * 64]


def test_a_node_not_heard_from_is_dead(store: Store) -> None:
    # liveness runs on the database's clock (PostgreSQL's, or this machine's for SQLite)
    assert store.call(store.heartbeat, "a~1", "node-a", "http://a:8080", True)
    assert store.call(store.heartbeat, "b~1", "node-b", "http://b:8080", True)
    time.sleep(0.4)
    assert store.call(store.heartbeat, "b~1", "node-b", "http://b:8080")
    assert store.call(store.declare_dead, 0.3, "node-c", "c~1") == ["a~1"]
    assert store.call(store.declare_dead, 0.3, "node-c", "c~1") == []  # once
    # A was only silent: it hears it is dead, and another waits before taking its files
    assert not store.call(store.heartbeat, "a~1", "node-a", "http://a:8080")
    assert store.call(store.dead_nodes, 10) == [""]
    assert store.call(store.dead_nodes, 0) == ["", "a~1"]
    # node B starts again: its earlier run is known gone, whenever it was last heard from
    assert store.call(store.heartbeat, "b~2", "node-b", "http://b:8080", True)
    assert store.call(store.declare_dead, 60, "node-b", "b~2") == ["b~1"]
    assert store.call(store.dead_nodes, 10) == ["", "b~1"]
    store.call(store.forget_node, "a~1")
    assert store.call(store.dead_nodes, 0) == ["", "b~1"]
    # a forgotten run that beats again is still dead (its sessions are over or elsewhere)
    assert not store.call(store.heartbeat, "a~1", "node-a", "http://a:8080")
    assert store.call(store.dead_nodes, 0) == ["", "b~1"]
    # one node per SQLite database: at its start every other process is gone
    assert store.call(store.heartbeat, "c~1", "node-c", "http://c:8080", True)
    assert store.call(store.declare_dead, 60, "node-x", "x~1", True) == ["b~2", "c~1"]


def test_the_city_and_its_version(store: Store) -> None:
    assert store.call(store.geo_version) == 0
    store.call(store.replace_cameras, [("cam-b", '{"b": 1}'), ("cam-a", '{"a": 1}')])
    store.call(store.replace_places, [("street", "Rue A", "{}"), ("building", "", "{}")])
    store.call(store.replace_cameras, [("cam-c", '{"c": 1}')])  # the whole registry at once
    assert store.call(store.geo_version) == 3
    assert store.call(store.camera_features) == ['{"c": 1}']
    assert store.call(store.places, "street") == [("Rue A", "{}")]


def test_positions_in_time_order_with_their_verdicts(store: Store) -> None:
    session(store)
    later = Position(49.1, 6.1, 5.0, T0 + timedelta(seconds=2), 90.0, 1.5)
    store.call(store.add_position, "s1", later)
    store.call(store.add_position, "s1", Position(49.0, 6.0, 5.0, T0), "jump")
    assert [p.time for p in store.call(store.positions_of, "s1")] == [T0, later.time]
    assert store.call(store.positions_of, "s1", True) == [later]


def test_keys_holds_and_a_destruction_in_its_steps(store: Store) -> None:
    session(store)
    store.call(store.add_wrapped_key, "s1", b"\x00wrapped\xff")
    store.call(store.add_wrapped_key, "s1", b"another")  # the first one made wins
    assert store.call(store.wrapped_key, "s1") == b"\x00wrapped\xff"
    seg, _ = store.call(store.open_segment, "s1", T0, "H264", 320, 240, str)
    store.call(store.close_segment, seg, T0 + timedelta(seconds=30), 10, "c" * 64)
    store.call(store.end_session, "s1", "button", T0 + timedelta(seconds=20))
    [pending] = store.call(store.pending_destructions)
    assert pending.recorded_until == T0 + timedelta(seconds=30)  # the last image, not the end
    hold = Hold(0, "s1", "PV 1", "enquête", "durand", T0)
    placed = Entry(Action.HOLD_PLACED, OPERATOR, T0, session_id="s1", reference="PV 1")
    hold_id = store.call(store.place_hold, hold, placed)
    assert store.call(store.held_sessions) == {"s1"}
    assert not store.call(store.shred_key, "s1", T0)  # a hold keeps it
    lifted = Entry(Action.HOLD_LIFTED, OPERATOR, T0, session_id="s1")
    assert store.call(store.lift_hold, hold_id, "durand", "CL 1", lifted)
    assert not store.call(store.lift_hold, hold_id, "durand", "CL 1", lifted)
    [kept] = store.call(store.holds_of, "s1")
    assert (kept.lifted_by, kept.lift_reference) == ("durand", "CL 1")
    assert store.call(store.shred_key, "s1", T0 + timedelta(days=31))
    assert not store.call(store.shred_key, "s1", T0 + timedelta(days=31))  # once
    assert store.call(store.wrapped_key, "s1") is None
    assert store.call(store.destroyed_at, "s1") == T0 + timedelta(days=31)
    assert store.call(store.forget_deleted)
    with pytest.raises(Exception, match="destroyed"):
        store.call(store.place_hold, hold, placed)  # never on a destroyed session
    done = Entry(Action.DESTRUCTION, SYSTEM, T0, session_id="s1")
    assert store.call(store.finish_destruction, "s1", done)
    assert not store.call(store.finish_destruction, "s1", done)  # another purge did it
    assert store.call(store.segments_of, "s1") == []
    assert store.call(store.pending_destructions) == []
    actions = [e["action"] for e in store.call(store.register_entries, session_id="s1")]
    assert actions == ["hold_placed", "hold_lifted", "destruction"]


def test_the_register_is_one_chain_that_verifies_and_prunes(store: Store) -> None:
    for day in range(6):
        seq = store.call(store.record, Entry(Action.LOGIN, OPERATOR, T0 + timedelta(days=day)))
        assert seq == day + 1
    store.call(
        store.record_all,
        [Entry(Action.LOGOUT, OPERATOR, T0 + timedelta(days=7), session_id="s9")] * 2,
    )
    assert store.call(store.register_head)[0] == 8
    assert store.call(register.verify, store).ok
    page = store.call(store.register_entries, after_seq=2, limit=3)
    assert [e["seq"] for e in page] == ["3", "4", "5"]
    since = store.call(store.register_entries, since=T0 + timedelta(days=5))
    assert [e["action"] for e in since] == ["login", "logout", "logout"]
    assert len(store.call(store.register_entries, session_id="s9")) == 2
    now = T0 + timedelta(days=3 * 365)
    assert store.call(store.prune_register, T0 + timedelta(days=3, hours=1), now) == 4
    checkpoint = store.call(store.register_checkpoint)
    assert checkpoint is not None
    assert (checkpoint.last_seq, checkpoint.pruned) == (4, 4)
    verdict = store.call(register.verify, store)
    assert verdict.ok, verdict.text()
    assert verdict.checked == 5  # 5 to 8, and the pruning's own entry
    assert store.call(store.prune_register, T0, now) == 0  # nothing older


def raw_connection(place: tuple[str, str | Path]) -> sqlite3.Connection | psycopg.Connection:
    kind, where = place
    if kind == "sqlite":
        return sqlite3.connect(where)
    return psycopg.connect(str(where), autocommit=True)


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        ("UPDATE register SET user_name = 'x' WHERE seq = 5", "append-only"),
        ("DELETE FROM register WHERE seq = 5", "behind a checkpoint"),
        ("UPDATE register_checkpoints SET pruned = 0", "append-only"),
    ],
)
def test_the_database_itself_refuses_to_rewrite_the_register(
    store: Store, place: tuple[str, str | Path], sql: str, refusal: str
) -> None:
    for _ in range(3):
        store.call(store.record, Entry(Action.LOGIN, OPERATOR, T0))
    # 1 to 3 pruned behind a checkpoint (the pruning is entry 4), then entry 5
    assert store.call(store.prune_register, T0 + timedelta(seconds=1), T0) == 3
    store.call(store.record, Entry(Action.LOGIN, OPERATOR, T0 + timedelta(days=1)))
    raw = raw_connection(place)  # what anyone with a connection to the database can try
    try:
        with pytest.raises((sqlite3.IntegrityError, psycopg.errors.IntegrityError), match=refusal):
            raw.execute(sql)
    finally:
        raw.close()
    assert store.call(register.verify, store).ok


def as_role(url: str, role: str, password: str) -> str:
    """The same database and schema, reached as another PostgreSQL role."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))


def test_a_gateways_role_has_no_right_to_rewrite_the_register(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    role, password = f"bodycam_gw_{secrets.token_hex(4)}", secrets.token_hex(12)
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'".encode())
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("BODYCAM_STORE_URL", postgres_url)  # the owner gives the rights
            assert main(["grant", role]) == 0
        assert f"role {role}:" in capsys.readouterr().out
        gateway = PostgresStore(as_role(postgres_url, role, password), 2)  # migrations: none due
        try:
            long_ago = datetime(2020, 1, 6, 9, 0, tzinfo=UTC)  # on any clock, over 3 years
            for _ in range(3):
                gateway.call(gateway.record, Entry(Action.LOGIN, OPERATOR, long_ago))
            session(gateway, "s1")
            # the pruning goes through the owner's function, which writes the checkpoint
            assert gateway.call(gateway.prune_register, long_ago + timedelta(seconds=1), T0) == 3
            assert gateway.call(register.verify, gateway).ok
            # entries younger than register_years are kept, whatever date a gateway passes
            gateway.call(gateway.record, Entry(Action.LOGIN, OPERATOR, T0))
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="younger than"):
                gateway.call(gateway.prune_register, T0 + timedelta(days=1), T0)
            assert gateway.call(register.verify, gateway).ok
        finally:
            gateway.close()
        with psycopg.connect(as_role(postgres_url, role, password), autocommit=True) as raw:
            for sql in (
                "UPDATE register SET user_name = 'x'",
                "DELETE FROM register",
                "TRUNCATE register",
                "DELETE FROM register_checkpoints",
                # a forged checkpoint far ahead would let the pruning remove everything
                "INSERT INTO register_checkpoints (at, last_seq, last_hash, pruned)"
                " VALUES ('2020-01-01', 1000000, 'x', 0)",
                "DELETE FROM register_policy",
                "DELETE FROM schema_migrations",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    raw.execute(sql.encode())
            raw.execute("UPDATE sessions SET officer = 'x'")  # what a gateway must do, it does
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}".encode())
            admin.execute(f"DROP ROLE {role}".encode())


def test_monthly_statistics(store: Store) -> None:
    session(store, "s1", at=T0)
    session(store, "s2", at=T0 + timedelta(days=31))  # April
    entries = [
        Entry(Action.LIVE_VIEW_START, OPERATOR, T0),
        Entry(Action.EXPORT, OPERATOR, T0, reference="PV 1"),
        Entry(Action.HOLD_PLACED, OPERATOR, T0 + timedelta(days=31), reference="PV 1"),
        Entry(Action.EXPORT, OPERATOR, T0, outcome="refused: role", reference="PV 2"),
    ]
    store.call(store.record_all, entries)
    months = store.call(store.monthly_stats, 2027)
    assert months["2027-03"] == {
        "sessions": 1,
        "live_views": 1,
        "recording_views": 0,
        "exports": 1,
        "requisitions": 1,
    }
    assert months["2027-04"]["requisitions"] == 1
    assert store.call(store.yearly_requisitions, 2027) == 1  # PV 1 counts once
    assert store.call(store.yearly_requisitions, 2026) == 0


def test_a_snapshot_sees_one_state(place: tuple[str, str | Path]) -> None:
    reader, writer = open_backend(*place), open_backend(*place)  # two nodes, one database
    try:
        writer.call(writer.replace_cameras, [("cam-a", "{}")])

        def read_twice() -> tuple[int, int]:
            with reader.snapshot():
                first = reader.geo_version()
                writer.call(writer.replace_cameras, [("cam-b", "{}")])  # meanwhile
                return first, reader.geo_version()

        assert reader.call(read_twice) == (1, 1)
        assert reader.call(reader.geo_version) == 2  # after the snapshot
    finally:
        reader.close()
        writer.close()


def test_two_nodes_appending_at_once_make_one_chain(place: tuple[str, str | Path]) -> None:
    """The database serialises appends (SQLite's write lock, PostgreSQL's advisory lock):
    two nodes never take the same number or link to the same head."""
    nodes = [open_backend(*place), open_backend(*place)]
    try:
        barrier = threading.Barrier(len(nodes))

        def append(node: Store, who: str) -> None:
            barrier.wait()
            for _ in range(25):
                node.call(node.record, Entry(Action.LOGIN, Actor(who, "operator"), T0))

        threads = [
            threading.Thread(target=append, args=(node, f"agent{i}"))
            for i, node in enumerate(nodes)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        entries = nodes[0].call(nodes[0].register_entries)
        assert [int(e["seq"]) for e in entries] == list(range(1, 51))
        verdict = nodes[1].call(register.verify, nodes[1])
        assert verdict.ok, verdict.text()
    finally:
        for node in nodes:
            node.close()


LOCK_HOLDER = """
import sys, time
from pathlib import Path
from bodycam.store import PostgresStore, SqliteStore
kind, where = sys.argv[1:]
store = SqliteStore(Path(where)) if kind == "sqlite" else PostgresStore(where, 1)
with store.exclusive("purge") as mine:
    print(mine, flush=True)
    time.sleep(120)
"""


def test_one_holder_of_a_lock_at_a_time_and_a_killed_one_lets_go(
    place: tuple[str, str | Path],
) -> None:
    store = open_backend(*place)  # the schema first, so that the other process only reads it
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, place[0], str(place[1])],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "True\n"
        with store.exclusive("purge") as mine:
            assert not mine  # another process (another node) holds it
        holder.kill()  # as kill -9: no unlock, no goodbye
        holder.wait()
        deadline = time.monotonic() + 10
        while True:
            with store.exclusive("purge") as mine:
                if mine:
                    with store.exclusive("purge") as again:
                        assert not again  # not re-entrant, even in the holder's process
                    break
            assert time.monotonic() < deadline, "the dead holder's lock was never freed"
            time.sleep(0.05)
        with store.exclusive("purge") as mine:
            assert mine  # given back at the end of the block
        with pytest.raises(KeyError):
            store.exclusive("nothing").__enter__()
    finally:
        holder.kill()
        holder.communicate()
        store.close()


def test_queries_only_on_the_stores_threads(store: Store) -> None:
    with pytest.raises(StoreThreadError, match=r"store\.call"):
        store.get_device("cam-1")  # directly, from the test's thread

    async def from_the_loop() -> None:
        with pytest.raises(StoreThreadError, match=r"await store\.run"):
            store.call(store.get_device, "cam-1")
        assert await store.run(store.get_device, "cam-1") is None

    asyncio.run(from_the_loop())


def test_migrations_are_recorded_and_a_newer_database_is_refused(
    place: tuple[str, str | Path],
) -> None:
    made = open_backend(*place)  # every migration applied
    session(made, "old")
    for _ in range(2):
        segment, _ = made.call(made.open_segment, "old", T0, "H264", 320, 240, str)
        made.call(made.close_segment, segment, T0, 10, "c" * 64)
    made.close()
    raw = raw_connection(place)
    try:
        assert raw.execute("SELECT MAX(version) FROM schema_migrations").fetchone() == (LATEST,)
        # back to a database of version 1, as bodycam 0.1 made it
        raw.execute("DELETE FROM schema_migrations WHERE version > 1")
        for undo in (
            "DROP TABLE login_failures",
            "DROP TABLE camera_health",
            "DROP TABLE nodes",
            "DROP INDEX segments_open",
            "ALTER TABLE sessions DROP COLUMN node",
            "ALTER TABLE segments DROP COLUMN node",
            "ALTER TABLE segments DROP COLUMN chain_index",
        ):
            raw.execute(undo)
        if isinstance(raw, sqlite3.Connection):
            raw.commit()
        else:
            raw.execute("DROP FUNCTION register_prune(TEXT, TEXT)")
            raw.execute("DROP TABLE register_policy")
    finally:
        raw.close()
    upgraded = open_backend(*place)
    try:
        assert upgraded.call(upgraded.login_failed, ["name:x"], T0, T0) == 1
        assert upgraded.call(upgraded.camera_checks) == []
        # segments sealed before the chain had its own order keep theirs (that of the files)
        assert [s.chain_index for s in upgraded.call(upgraded.segments_of, "old")] == [1, 2]
    finally:
        upgraded.close()
    raw = raw_connection(place)
    try:
        assert raw.execute("SELECT MAX(version) FROM schema_migrations").fetchone() == (LATEST,)
        raw.execute(
            "INSERT INTO schema_migrations (version, description, applied_at)"
            " VALUES (7, 'from the future', '2030-01-01T00:00:00.000Z')"
        )
        if isinstance(raw, sqlite3.Connection):
            raw.commit()
    finally:
        raw.close()
    with pytest.raises(SchemaTooNew, match="schema version 7, newer than this bodycam"):
        open_backend(*place)


def test_a_server_that_does_not_answer_is_named_without_its_password() -> None:
    with pytest.raises(StoreUnavailable, match=r"PostgreSQL at postgresql://bodycam:…@127") as err:
        PostgresStore("postgresql://bodycam:secret@127.0.0.1:1/none?connect_timeout=1", 1)
    assert "secret" not in str(err.value)
