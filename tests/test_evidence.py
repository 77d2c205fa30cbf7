"""Evidence at rest: retention and purge (injected clock), legal hold, crypto-shredding,
crash in the middle of a purge, the register's chain, signed bundles and their checker."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bodycam import users
from bodycam.cli import main
from bodycam.clock import SystemClock
from bodycam.config import Config
from bodycam.errors import ConfigError
from bodycam.evidence import bundle, register, sealed
from bodycam.evidence.keyring import KeyDestroyed, Keyring, segment_label
from bodycam.evidence.purge import PurgeReport, purge
from bodycam.evidence.reasons import Requisition
from bodycam.evidence.recordings import verify_session
from bodycam.evidence.retention import add_months, expires_at
from bodycam.gateway.app import create_app
from bodycam.models import SYSTEM, Action, Actor, Entry, Hold, Retention
from bodycam.store import SqliteStore, Store, open_store

from .evidence_data import record_session
from .helpers import PASSWORD, Gateway, make_config, session_of, wait_for_store

JAN31 = datetime(2027, 1, 31, 10, 0, tzinfo=UTC)
SUPERVISOR = Actor("durand", "supervisor", "CSU Metz")


@pytest.mark.parametrize(
    ("period", "recorded", "expires"),
    [
        ("30 days", "2027-01-31T10:00:02", "2027-03-02T10:00:02"),
        ("1 month", "2027-01-31T10:00:02", "2027-02-28T10:00:02"),  # February is short
        ("1 month", "2028-01-31T10:00:02", "2028-02-29T10:00:02"),  # leap year
        ("1 month", "2027-03-15T23:59:59", "2027-04-15T23:59:59"),
        ("1 month", "2027-12-31T08:00:00", "2028-01-31T08:00:00"),
        ("2 months", "2027-12-31T08:00:00", "2028-02-29T08:00:00"),
        ("7 days", "2027-02-25T00:00:00", "2027-03-04T00:00:00"),
    ],
)
def test_expiry_dates(period: str, recorded: str, expires: str) -> None:
    until = datetime.fromisoformat(recorded).replace(tzinfo=UTC)
    assert expires_at(until, Retention.parse(period)) == datetime.fromisoformat(expires).replace(
        tzinfo=UTC
    )


@pytest.mark.parametrize("text", ["", "30", "month", "0 days", "1 week", "-1 month"])
def test_bad_retention_is_named(text: str) -> None:
    with pytest.raises(ValueError, match=r"30 days|at least 1 day"):
        Retention.parse(text)
    with pytest.raises(ConfigError, match=r"evidence\.retention"):
        Config.load(None, environ={"BODYCAM_EVIDENCE_RETENTION": text})


def test_add_months_goes_back_too() -> None:
    assert add_months(datetime(2028, 2, 29, tzinfo=UTC), -12) == datetime(2027, 2, 28, tzinfo=UTC)


async def open_data(tmp_path: Path, **overrides: object) -> tuple[Config, Store, Keyring]:
    config = make_config(tmp_path / "data", **overrides)
    store = await asyncio.to_thread(open_store, config)
    return config, store, await store.run(Keyring.load, config, store)


async def purge_at(
    store: Store, config: Config, now: datetime, dry_run: bool = False
) -> PurgeReport:
    """The purge as the gateway runs it: on a worker thread."""
    return await asyncio.to_thread(
        purge, store, config.recordings_dir, config.retention, now, dry_run=dry_run
    )


async def test_purge_under_the_calendar_month(tmp_path: Path) -> None:
    config, store, keyring = await open_data(tmp_path, evidence_retention="1 month")
    await record_session(config, store, keyring, "jan31", JAN31)
    await record_session(config, store, keyring, "feb01", JAN31 + timedelta(days=1))
    folder = config.recordings_dir / "jan31"
    assert len(list(folder.iterdir())) == 2
    ended = JAN31 + timedelta(seconds=2)

    before = await purge_at(store, config, datetime(2027, 2, 28, 10, 0, 1, tzinfo=UTC))
    assert before.destroyed == []
    assert folder.is_dir()
    dry = await purge_at(
        store,
        config,
        datetime(2027, 2, 28, 10, 0, 2, tzinfo=UTC),
        dry_run=True,
    )
    assert dry.due == ["jan31"]
    assert folder.is_dir()
    assert await store.run(store.wrapped_key, "jan31")

    report = await purge_at(store, config, datetime(2027, 2, 28, 10, 0, 2, tzinfo=UTC))
    assert report.destroyed == ["jan31"]
    assert not folder.exists()
    assert (config.recordings_dir / "feb01").is_dir()  # expires on 1 March
    assert (await store.run(store.segments_of, "jan31")) == []
    assert (await store.run(store.positions_of, "jan31")) == []
    assert (await session_of(store, "jan31")).destroyed_at is not None
    with pytest.raises(KeyDestroyed, match="destroyed"):
        await store.run(keyring.session_key, "jan31")
    [entry] = [
        e
        for e in (await store.run(store.register_entries, session_id="jan31"))
        if e["action"] == "destruction"
    ]
    assert entry["user"] == "bodycam"
    assert entry["from"] == "2027-01-31T10:00:00.000Z"
    assert entry["to"] == "2027-01-31T10:00:02.000Z"
    assert "automatic" in entry["detail"]
    assert "cam-1" in entry["detail"]
    assert "retention 1 month" in entry["detail"]
    assert ended < datetime(2027, 2, 28, 10, 0, 2, tzinfo=UTC)
    assert (await store.run(register.verify, store)).ok
    # a second purge has nothing left to do and registers nothing more
    count = len(await store.run(store.register_entries))
    assert (await purge_at(store, config, datetime(2027, 3, 1, 9, tzinfo=UTC))).destroyed == []
    assert len(await store.run(store.register_entries)) == count
    store.close()


async def test_thirty_days_by_default(tmp_path: Path) -> None:
    config, store, keyring = await open_data(tmp_path)
    assert str(config.retention) == "30 days"
    await record_session(config, store, keyring, "jan31", JAN31)
    kept = await purge_at(store, config, datetime(2027, 3, 2, 10, 0, 1, tzinfo=UTC))
    assert kept.destroyed == []
    gone = await purge_at(store, config, datetime(2027, 3, 2, 10, 0, 2, tzinfo=UTC))
    assert gone.destroyed == ["jan31"]
    store.close()


async def test_a_held_session_survives_the_purge_until_lifted(tmp_path: Path) -> None:
    config, store, keyring = await open_data(tmp_path)
    await record_session(config, store, keyring, "held", JAN31)
    now = JAN31 + timedelta(days=1)
    entry = Entry(
        Action.HOLD_PLACED,
        SUPERVISOR,
        now,
        session_id="held",
        reference="PV 2027/118",
        reason="enquête",
    )
    hold_id = await store.run(
        store.place_hold, Hold(0, "held", "PV 2027/118", "enquête", "durand", now), entry
    )
    late = JAN31 + timedelta(days=400)
    report = await purge_at(store, config, late)
    assert report.held == ["held"]
    assert report.destroyed == []
    assert sealed.digest(
        config.recordings_dir / (await store.run(store.segments_of, "held"))[0].path,
        await store.run(keyring.session_key, "held"),
        "held/1",
    )
    lift = Entry(
        Action.HOLD_LIFTED,
        SUPERVISOR,
        late,
        session_id="held",
        reference="classement 2028/4",
        reason="classée",
    )
    assert await store.run(store.lift_hold, hold_id, "durand", "classement 2028/4", lift)
    assert not (await store.run(store.lift_hold, hold_id, "durand", "again", lift))  # not twice
    assert (await purge_at(store, config, late)).destroyed == ["held"]
    actions = [e["action"] for e in (await store.run(store.register_entries, session_id="held"))]
    assert actions == ["hold_placed", "hold_lifted", "destruction"]
    store.close()


async def test_a_byte_copy_taken_before_the_purge_cannot_be_read_after_it(tmp_path: Path) -> None:
    config, store, keyring = await open_data(tmp_path)
    session = await record_session(config, store, keyring, "s1", JAN31)
    [first, _] = await store.run(store.segments_of, "s1")
    wrapped = await store.run(store.wrapped_key, "s1")
    copy = tmp_path / "copy"
    shutil.copytree(config.recordings_dir / "s1", copy)
    key = await store.run(keyring.session_key, "s1")
    assert sealed.digest(copy / Path(first.path).name, key, segment_label(first))[1] == first.sha256
    del key  # what an attacker could not have kept: the gateway never writes it anywhere

    database, wal = config.database_path, config.data_dir / "bodycam.sqlite3-wal"
    assert wrapped is not None
    assert session.ended_at is not None
    assert wrapped in database.read_bytes() + wal.read_bytes()  # where it was
    await purge_at(store, config, session.ended_at + timedelta(days=31))
    # the copy is intact, the master key is still there, but the session's key is gone:
    assert (copy / Path(first.path).name).stat().st_size > 0
    with pytest.raises(KeyDestroyed):
        await store.run(keyring.session_key, "s1")
    # and no copy of the wrapped key is left in the database file or its WAL (still open)
    assert wal.exists()
    assert wrapped not in database.read_bytes() + wal.read_bytes()
    store.close()
    # with a key that is not the session's, the copy does not open
    with pytest.raises(sealed.SealedError, match="chunk 0"):
        next(
            sealed.read_plaintext(
                copy / Path(first.path).name, sealed.new_key(), segment_label(first)
            )
        )


DYING_PURGER = """
import sys, time
from datetime import datetime
from pathlib import Path
from bodycam.store import PostgresStore, SqliteStore
kind, where, now = sys.argv[1:]
store = SqliteStore(Path(where)) if kind == "sqlite" else PostgresStore(where, 1)
with store.exclusive("purge") as mine:
    assert mine
    assert store.call(store.shred_key, "s1", datetime.fromisoformat(now))
    print("shredded", flush=True)
    time.sleep(120)  # killed here: key gone, files and register entry not yet
"""


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """A backend's name and store URL ("" for the embedded SQLite), resolved before the
    test's event loop runs: the schema's creation is blocking work, off the test's loop."""
    if request.param == "sqlite":
        return "sqlite", ""
    return "postgres", request.getfixturevalue("postgres_url")


async def test_one_node_purges_at_a_time_and_another_finishes_a_dead_ones_purge(
    tmp_path: Path, backend: tuple[str, str]
) -> None:
    kind, url = backend
    config, store, keyring = await open_data(tmp_path, store_url=url)
    await record_session(config, store, keyring, "s1", JAN31)
    await record_session(config, store, keyring, "s2", JAN31 + timedelta(minutes=5))
    now = JAN31 + timedelta(days=40)
    where = url or str(config.database_path)
    node_a = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DYING_PURGER,
        kind,
        where,
        now.isoformat(),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert node_a.stdout is not None
        assert await node_a.stdout.readline() == b"shredded\n"
        report = await purge_at(store, config, now)  # node B, while A purges
        assert report.busy
        assert report.destroyed == []
        assert (config.recordings_dir / "s2").is_dir()  # B left it to A
    finally:
        node_a.kill()  # kill -9, in the middle
        await node_a.communicate()
    report = await purge_at(store, config, now + timedelta(minutes=1))  # B's next round
    assert not report.busy
    assert sorted(report.destroyed) == ["s1", "s2"]
    assert not (config.recordings_dir / "s1").exists()
    entries = await store.run(store.register_entries)
    assert sorted(e["session"] for e in entries if e["action"] == "destruction") == ["s1", "s2"]
    assert (await store.run(register.verify, store)).ok
    store.close()


async def test_a_crash_in_the_middle_of_a_purge_is_finished_by_the_next(tmp_path: Path) -> None:
    config, store, keyring = await open_data(tmp_path)
    await record_session(config, store, keyring, "s1", JAN31)
    await record_session(config, store, keyring, "s2", JAN31 + timedelta(minutes=5))
    now = JAN31 + timedelta(days=40)
    # s1: the purge stopped right after destroying the key; s2: after removing the files too
    assert await store.run(store.shred_key, "s1", now)
    assert await store.run(store.shred_key, "s2", now)
    shutil.rmtree(config.recordings_dir / "s2")
    store.close()

    store = SqliteStore(config.database_path)  # the restart
    keyring = await store.run(Keyring.load, config, store)
    for sid in ("s1", "s2"):
        with pytest.raises(KeyDestroyed):
            await store.run(
                keyring.session_key, sid
            )  # consistent: nothing readable, whatever is on disk
        assert (await session_of(store, sid)).destroyed_at == now
    assert (config.recordings_dir / "s1").is_dir()
    report = await purge_at(store, config, now + timedelta(hours=1))
    assert sorted(report.destroyed) == ["s1", "s2"]
    assert not (config.recordings_dir / "s1").exists()
    destructions = [
        e for e in (await store.run(store.register_entries)) if e["action"] == "destruction"
    ]
    assert sorted(e["session"] for e in destructions) == ["s1", "s2"]
    # a second purge running beside this one finds nothing left, and registers nothing
    late = Entry(Action.DESTRUCTION, SYSTEM, now, session_id="s1")
    assert not (await store.run(store.shred_key, "s1", now))
    assert not (await store.run(store.finish_destruction, "s1", late))
    assert (
        len([e for e in (await store.run(store.register_entries)) if e["action"] == "destruction"])
        == 2
    )
    assert (await store.run(register.verify, store)).ok
    store.close()


async def test_the_command_line_never_destroys_early(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, store, keyring = await open_data(tmp_path)
    await record_session(config, store, keyring, "s1", SystemClock().now() - timedelta(days=2))
    data = ["--data-dir", str(config.data_dir)]
    with store.exclusive("purge") as mine:  # the gateway is purging right now
        assert mine
        assert await asyncio.to_thread(main, ["purge", *data]) == 2
        assert "is purging now: try again later" in capsys.readouterr().err
    store.close()
    later = (SystemClock().now() + timedelta(days=40)).isoformat()
    assert await asyncio.to_thread(main, ["purge", "--now", later, *data]) == 2
    assert "in the future" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["purge", "--now", later, "--dry-run", *data]) == 0
    assert "would destroy 1 sessions" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["purge", *data]) == 0
    assert "destroyed 0 sessions" in capsys.readouterr().out
    assert (config.recordings_dir / "s1").is_dir()


def tamper(db_path: Path, sql: str, *args: object) -> None:
    """What someone with the database file could do: the triggers do not stop them."""
    db = sqlite3.connect(db_path)
    db.execute("DROP TRIGGER IF EXISTS register_append_only")
    db.execute("DROP TRIGGER IF EXISTS register_prune_only")
    db.execute(sql, args)
    db.commit()
    db.close()


def fill_register(store: Store, count: int, start: datetime) -> None:
    for i in range(count):
        store.call(
            store.record,
            Entry(Action.LOGIN, Actor(f"agent{i}", "operator", "CSU"), start + timedelta(days=i)),
        )


def test_the_register_refuses_changes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    fill_register(store, 3, JAN31)
    store.close()
    db = sqlite3.connect(tmp_path / "db.sqlite3")  # what the database itself allows anyone
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE register SET user_name = 'x' WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="checkpoint"):
        db.execute("DELETE FROM register WHERE seq = 2")
    db.close()


@pytest.mark.parametrize(
    ("sql", "seq", "problem"),
    [
        (
            "UPDATE register SET user_name = 'someone else' WHERE seq = 3",
            3,
            "content does not match",
        ),
        (
            "UPDATE register SET at = '2027-02-02T10:00:00.001Z' WHERE seq = 3",
            3,
            "content does not match",
        ),
        ("DELETE FROM register WHERE seq = 3", 3, "missing"),
        ("UPDATE register SET prev_hash = hash WHERE seq = 4", 4, "link to entry 3"),
    ],
)
def test_register_verify_names_the_first_broken_entry(
    tmp_path: Path, sql: str, seq: int, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    store = SqliteStore(data / "bodycam.sqlite3")
    fill_register(store, 5, JAN31)
    store.close()
    assert main(["register", "verify", "--data-dir", str(data)]) == 0
    assert "register OK: 5 entries" in capsys.readouterr().out
    tamper(data / "bodycam.sqlite3", sql)
    assert main(["register", "verify", "--data-dir", str(data)]) == 1
    out = capsys.readouterr().out
    assert f"BROKEN at entry {seq}" in out
    assert problem in out


def test_pruning_keeps_the_chain_verifiable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    fill_register(store, 6, JAN31)  # 31 Jan .. 5 Feb 2027
    now = datetime(2030, 2, 3, 12, tzinfo=UTC)
    # 31 Jan .. 3 Feb 10:00 are older than 3 years, the entries of 4 and 5 Feb are kept
    assert store.call(store.prune_register, add_months(now, -36), now) == 4
    entries = store.call(store.register_entries)
    assert [e["seq"] for e in entries] == ["5", "6", "7"]
    assert entries[-1]["action"] == "register_pruned"
    verdict = store.call(register.verify, store)
    assert verdict.ok, verdict.text()
    assert "checkpoint after entry 4" in verdict.text(), verdict.text()
    store.close()
    tamper(tmp_path / "db.sqlite3", "UPDATE register SET user_name = 'x' WHERE seq = 5")
    store = SqliteStore(tmp_path / "db.sqlite3")
    assert store.call(register.verify, store).broken_seq == 5
    store.close()


def test_register_export_csv_acts_as_a_person(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    store = SqliteStore(data / "bodycam.sqlite3")
    users.add(store, "audit", "auditor", PASSWORD, "CNIL", JAN31)
    users.add(store, "martin", "operator", PASSWORD, "CSU", JAN31)
    fill_register(store, 4, JAN31)
    store.close()
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    out = tmp_path / "register.csv"
    args = [
        "register",
        "export",
        "--data-dir",
        str(data),
        "--user",
        "audit",
        "--password-stdin",
        "--from",
        "2027-02-01T00:00:00Z",
        "--to",
        "2027-02-02T23:00:00Z",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("seq,at,action,outcome,user,role,service")
    assert [line.split(",")[4] for line in lines[1:]] == ["agent1", "agent2"]
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    args[5] = "martin"
    args[-1] = str(tmp_path / "other.csv")
    assert main(args) == 2
    assert "role operator may not read the register" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong password\n"))
    assert main(args) == 2
    store = SqliteStore(data / "bodycam.sqlite3")
    last = store.call(store.register_entries)[-2:]
    assert [e["action"] for e in last] == ["access_refused", "login_failed"]
    assert "command line" in last[1]["detail"]
    store.close()


async def make_bundle(tmp_path: Path) -> tuple[Path, Keyring, Store, Config]:
    config, store, keyring = await open_data(tmp_path)
    await record_session(config, store, keyring, "s1", JAN31)
    await store.run(
        store.record,
        Entry(
            Action.RECORDING_VIEW,
            Actor("martin", "operator", "CSU"),
            JAN31 + timedelta(hours=1),
            session_id="s1",
            reason="rapport",
        ),
    )
    requisition = Requisition("PV 2027/118", "réquisition du parquet", SUPERVISOR)
    name, _ = await asyncio.to_thread(
        bundle.export,
        store,
        keyring,
        tmp_path / "out",
        config.recordings_dir,
        ["s1"],
        requisition,
        JAN31 + timedelta(days=2),
    )
    return tmp_path / "out" / name, keyring, store, config


async def test_a_bundle_verifies_and_plays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, keyring, store, _ = await make_bundle(tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    [session] = manifest["sessions"]
    assert session["officer"] == "Agent Martin"
    assert session["device"] == "cam-1"
    assert len(session["segments"]) == 2
    assert len(session["track"]) == 3
    assert [e["action"] for e in session["register"]] == ["recording_view"]
    assert manifest["requisition"]["reference"] == "PV 2027/118"
    assert manifest["gateway"]["fingerprint"] == keyring.fingerprint
    with av.open(str(bundle / session["media"]["file"])) as container:
        frames = sum(1 for _ in container.demux(video=0) if _.size)
    assert frames == 60
    assert (
        await asyncio.to_thread(main, ["verify", str(bundle), "--key", str(bundle / "gateway.pub")])
        == 0
    )
    assert "OK:" in capsys.readouterr().out
    export = [
        e
        for e in (await store.run(store.register_entries, session_id="s1"))
        if e["action"] == "export"
    ]
    assert export
    assert export[0]["reference"] == "PV 2027/118"
    assert export[0]["user"] == "durand"
    store.close()


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("target", "named"),
    [
        ("media", "media/s1.mkv: SHA-256 differs"),
        ("segment", "segments/s1/00002.mkv: SHA-256 differs"),
        ("manifest", "manifest.json: the signature does not match"),
        ("register", "register entry"),
        ("extra", "not in the manifest"),
        ("key", "signed by another key"),
    ],
)
async def test_verify_names_what_was_altered(
    tmp_path: Path, target: str, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, _, store, _ = await make_bundle(tmp_path)
    store.close()
    trusted = bundle / "gateway.pub"
    shutil.copy(trusted, tmp_path / "trusted.pub")
    if target == "media":
        flip(bundle / "media" / "s1.mkv", 500)
    elif target == "segment":
        flip(bundle / "segments" / "s1" / "00002.mkv", 300)
    elif target == "manifest":
        body = (bundle / "manifest.json").read_bytes()
        (bundle / "manifest.json").write_bytes(body.replace(b"Agent Martin", b"Agent Mertin"))
    elif target == "register":
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["sessions"][0]["register"][0]["reason"] = "autre"
        (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    elif target == "extra":
        (bundle / "media" / "note.txt").write_text("added")
    elif target == "key":
        other = Ed25519PrivateKey.generate()  # someone else's key, re-signing the manifest
        manifest = json.loads((bundle / "manifest.json").read_bytes())
        raw = other.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        manifest["gateway"]["public_key"] = base64.b64encode(raw).decode()
        body = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"
        (bundle / "manifest.json").write_bytes(body)
        (bundle / "manifest.sig").write_text(base64.b64encode(other.sign(body)).decode())
    assert (
        await asyncio.to_thread(
            main, ["verify", str(bundle), "--key", str(tmp_path / "trusted.pub")]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "ALTERED" in out, out
    assert named in out, out


async def test_an_altered_segment_at_rest_stops_the_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, store, keyring = await open_data(tmp_path)
    await record_session(config, store, keyring, "s1", JAN31)
    second = (await store.run(store.segments_of, "s1"))[1]
    store.close()
    assert (
        await asyncio.to_thread(
            main, ["sessions", "verify", "s1", "--data-dir", str(config.data_dir)]
        )
        == 0
    )
    flip(config.recordings_dir / second.path, 200)
    assert (
        await asyncio.to_thread(
            main, ["sessions", "verify", "s1", "--data-dir", str(config.data_dir)]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "segment 2:" in out, out
    assert "chunk 0" in out, out
    assert "does not authenticate" in out, out
    store = SqliteStore(config.database_path)
    keyring = await store.run(Keyring.load, config, store)
    requisition = Requisition("PV 1", "test", SUPERVISOR)
    with pytest.raises(sealed.SealedError, match="chunk 0"):
        await asyncio.to_thread(
            bundle.export,
            store,
            keyring,
            tmp_path / "out",
            config.recordings_dir,
            ["s1"],
            requisition,
            JAN31,
        )
    assert list((tmp_path / "out").iterdir()) == []  # no half bundle left behind
    store.close()


def test_a_missing_master_key_stops_the_gateway_rather_than_losing_recordings(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path / "data")
    store = SqliteStore(config.database_path)
    store.call(Keyring.load, config, store)  # the first start makes the keys
    store.close()
    config.master_key_path.rename(tmp_path / "elsewhere.key")
    store = SqliteStore(config.database_path)
    with pytest.raises(ConfigError, match=r"master key file .* is missing"):
        store.call(Keyring.load, config, store)
    (tmp_path / "elsewhere.key").write_text(base64.b64encode(sealed.new_key()).decode())
    shutil.copy(tmp_path / "elsewhere.key", config.master_key_path)
    with pytest.raises(ConfigError, match="not the one this database"):
        store.call(Keyring.load, config, store)
    store.close()
    assert oct(config.signing_key_path.stat().st_mode & 0o777) == "0o600"


def test_system_actor_is_not_a_person() -> None:
    assert SYSTEM.role == "system"


async def test_holds_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, store, keyring = await open_data(tmp_path)
    await record_session(config, store, keyring, "s1", JAN31)
    await asyncio.to_thread(users.add, store, "durand", "supervisor", PASSWORD, "CSU", JAN31)
    await asyncio.to_thread(users.add, store, "martin", "operator", PASSWORD, "CSU", JAN31)
    store.close()
    data = ["--data-dir", str(config.data_dir), "--password-stdin"]

    def hold(*args: str, user: str = "durand") -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        return main(["hold", *args, *data, "--user", user])

    assert (
        await asyncio.to_thread(
            hold, "place", "s1", "--reference", "PV 9", "--reason", "enquête", user="martin"
        )
        == 2
    )
    assert "role operator may not place legal holds" in capsys.readouterr().err
    assert (
        await asyncio.to_thread(hold, "place", "s1", "--reference", "PV", "--reason", "enquête")
        == 2
    )
    assert "reference: required" in capsys.readouterr().err
    assert (
        await asyncio.to_thread(hold, "place", "s1", "--reference", "PV 9", "--reason", "enquête")
        == 0
    )
    assert "hold #1 placed on s1 (PV 9)" in capsys.readouterr().out
    assert (
        await asyncio.to_thread(main, ["hold", "list", "s1", "--data-dir", str(config.data_dir)])
        == 0
    )
    assert "in force" in capsys.readouterr().out
    assert (
        await asyncio.to_thread(
            hold, "lift", "s1", "1", "--reference", "CL 3", "--reason", "classée"
        )
        == 0
    )
    assert (
        await asyncio.to_thread(
            hold, "lift", "s1", "1", "--reference", "CL 3", "--reason", "classée"
        )
        == 2
    )
    assert "already lifted" in capsys.readouterr().err
    store = SqliteStore(config.database_path)
    actions = [(e["action"], e["user"]) for e in (await store.run(store.register_entries))]
    store.close()
    assert actions == [
        ("access_refused", "martin"),
        ("hold_placed", "durand"),
        ("hold_lifted", "durand"),
    ]


class LateClock(SystemClock):
    """The real clock, moved forward: the gateway believes a month has passed."""

    def __init__(self, ahead: timedelta) -> None:
        self.ahead = ahead

    def now(self) -> datetime:
        return super().now() + self.ahead


async def test_the_gateway_purges_by_itself(tmp_path: Path) -> None:
    config, store, keyring = await open_data(tmp_path, evidence_retention="1 month")
    start = SystemClock().now() - timedelta(days=1)
    await record_session(config, store, keyring, "old", start)
    store.close()
    app = create_app(config, LateClock(timedelta(days=40)))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()  # the first purge runs at startup, then every hour
    try:
        gateway = Gateway(config, server, app)
        await wait_for_store(gateway.store, lambda s: s.destroyed_at("old") is not None, within=10)
        await wait_for_store(
            gateway.store,
            lambda s: any(e["action"] == "destruction" for e in s.register_entries()),
        )
    finally:
        await server.close()
    assert not (config.recordings_dir / "old").exists()


async def test_a_single_node_grows_into_a_cluster_without_losing_its_evidence(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # a node on SQLite: two recorded sessions, one of them held, a register
    config, store, keyring = await open_data(tmp_path)
    await record_session(config, store, keyring, "s1", JAN31)
    await record_session(config, store, keyring, "s2", JAN31 + timedelta(minutes=5))
    hold = Hold(0, "s1", "PV 2027/118", "enquête", "durand", JAN31)
    placed = Entry(Action.HOLD_PLACED, SUPERVISOR, JAN31, session_id="s1", reason="enquête")
    await store.run(store.place_hold, hold, placed)
    await asyncio.to_thread(users.add, store, "dupont", "operator", PASSWORD, "PM", JAN31)
    before = await store.run(store.register_head)
    sealed_before = {
        s: [g.sha256 for g in await store.run(store.segments_of, s)] for s in ("s1", "s2")
    }
    await store.run(store.heartbeat, "gw~1", "gw", "http://gw:8080", True)  # it runs
    args = ["migrate", "--from", f"sqlite:{config.database_path}", "--to", postgres_url]
    assert await asyncio.to_thread(main, args) == 2
    assert "a gateway (gw~1) is running" in capsys.readouterr().err
    await store.run(store.node_stopped, "gw~1")  # and stops
    store.close()

    assert await asyncio.to_thread(main, args) == 0
    out = capsys.readouterr().out
    assert "register" in out
    assert "the recordings stay in place" in out

    # the same data folder on PostgreSQL: the same facts, the chain goes on from its head
    cluster = make_config(tmp_path / "data", store_url=postgres_url)
    pg = await asyncio.to_thread(open_store, cluster)
    try:
        assert pg.shared
        assert await pg.run(pg.register_head) == before
        assert (await pg.run(register.verify, pg)).ok
        for session_id, hashes in sealed_before.items():
            assert [g.sha256 for g in await pg.run(pg.segments_of, session_id)] == hashes
        [held] = await pg.run(pg.holds_of, "s1")
        assert (held.reference, held.lifted_at) == ("PV 2027/118", None)
        assert await pg.run(pg.get_user, "dupont") is not None
        keys = await pg.run(Keyring.load, cluster, pg)
        for session_id in ("s1", "s2"):
            check = await asyncio.to_thread(
                verify_session, pg, keys, cluster.recordings_dir, session_id
            )
            assert check.ok, check.text()
        # new rows after the copied ones: the register and the identity columns go on
        now = JAN31 + timedelta(days=1)
        await pg.run(pg.record, Entry(Action.LOGIN, SUPERVISOR, now))
        assert (await pg.run(pg.register_head))[0] == before[0] + 1
        assert (await pg.run(register.verify, pg)).ok
        again = Entry(Action.HOLD_PLACED, SUPERVISOR, now, session_id="s2", reason="fin")
        second = await pg.run(
            pg.place_hold, Hold(0, "s2", "PV 2027/119", "enquête", "durand", now), again
        )
        assert second > held.id
    finally:
        await asyncio.to_thread(pg.close)
    # nothing is merged: a database that holds anything is refused, by name
    assert await asyncio.to_thread(main, args) == 2
    assert "already holds register" in capsys.readouterr().err
