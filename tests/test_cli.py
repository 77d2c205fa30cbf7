"""The bodycam command line: devices and sessions, with clear errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bodycam.cli import main
from bodycam.devices import token_hash
from bodycam.store import SqliteStore


def run(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> tuple[int, str, str]:
    code = main([*args[:2], "--data-dir", str(data), *args[2:]])
    out, err = capsys.readouterr()
    return code, out, err


def test_devices_add_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, tmp_path, "devices", "add", "cam-17", "--officer", "Brigadier Martin"
    )
    assert code == 0
    token = out.strip().splitlines()[-1]
    assert token.startswith("bcd_")
    assert len(token) > 40
    store = SqliteStore(tmp_path / "bodycam.sqlite3")
    device = store.call(store.device_by_token_hash, token_hash(token))
    assert device is not None
    assert device.officer == "Brigadier Martin"
    with sqlite3.connect(store.path) as db:
        raw = db.execute("SELECT * FROM devices").fetchone()
    assert token not in [str(v) for v in tuple(raw)]  # only the hash is kept
    store.close()

    code, out, _ = run(capsys, tmp_path, "devices", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [d["id"] for d in listed] == ["cam-17"]
    assert listed[0]["revoked_at"] is None
    assert token not in out

    code, out, _ = run(capsys, tmp_path, "devices", "revoke", "cam-17")
    assert code == 0
    assert "revoked" in out
    code, out, _ = run(capsys, tmp_path, "devices", "list")
    assert "revoked" in out
    store = SqliteStore(tmp_path / "bodycam.sqlite3")
    entries = store.call(store.register_entries)
    store.close()
    assert [e["action"] for e in entries] == ["device_added", "device_revoked"]
    assert entries[0]["detail"] == "cam-17 (Brigadier Martin)"
    assert entries[0]["role"] == "system"
    assert entries[0]["service"] == "command line"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("devices", "add", "bad id!"), "device id 'bad id!' is invalid"),
        (("devices", "revoke", "ghost"), "device ghost is not enrolled"),
        (("sessions", "show", "nope"), "session nope does not exist"),
        (("sessions", "verify", "nope"), "session nope does not exist"),
    ],
)
def test_errors_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, _, err = run(capsys, tmp_path, *args)
    assert code == 2
    assert message in err


def test_duplicate_and_double_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, tmp_path, "devices", "add", "cam-1")[0] == 0
    code, _, err = run(capsys, tmp_path, "devices", "add", "cam-1")
    assert code == 2
    assert "already enrolled" in err
    assert run(capsys, tmp_path, "devices", "revoke", "cam-1")[0] == 0
    code, _, err = run(capsys, tmp_path, "devices", "revoke", "cam-1")
    assert code == 2
    assert "already revoked" in err


def test_bad_config_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bodycam.toml"
    config.write_text("[server]\nport = 0\n")
    code = main(["sessions", "list", "--config", str(config), "--data-dir", str(tmp_path)])
    assert code == 2
    assert "server.port" in capsys.readouterr().err


def test_verify_names_a_missing_bundle(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "/nonexistent/bundle"]) == 2
    assert "bundle /nonexistent/bundle is not a folder" in capsys.readouterr().err
