"""Configuration: defaults, TOML, environment, and errors that name the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bodycam.config import Config
from bodycam.errors import ConfigError
from bodycam.gateway.workers import worker_count


def test_defaults_need_no_file() -> None:
    config = Config.load(None, environ={})
    assert config.server.port == 8080
    assert config.sessions.grace_seconds == 60
    assert config.ice.addresses == ("127.0.0.1",)
    assert config.media.workers == "auto"  # serve runs the sessions' media on every core


def test_media_workers_from_toml_as_a_number(tmp_path: Path) -> None:
    path = tmp_path / "bodycam.toml"
    path.write_text("[media]\nworkers = 3\n")
    assert Config.load(path, environ={}).media.workers == "3"
    assert worker_count("3") == 3
    assert worker_count("0") == 0
    assert worker_count("auto") == len(os.sched_getaffinity(0))


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "bodycam.toml"
    path.write_text(
        'data_dir = "/srv/bodycam"\n[server]\nport = 9000\nhost = "0.0.0.0"\n'
        '[ice]\naddresses = ["eth0", "10.0.0.0/8"]\n'
    )
    config = Config.load(path, environ={"BODYCAM_SERVER_PORT": "9100"}, server_host="::1")
    assert config.data_dir == Path("/srv/bodycam")
    assert config.server.port == 9100
    assert config.server.host == "::1"
    assert config.ice.addresses == ("eth0", "10.0.0.0/8")


def test_environment_list_and_float() -> None:
    config = Config.load(
        None,
        environ={"BODYCAM_ICE_ADDRESSES": "127.0.0.1, ::1", "BODYCAM_SESSIONS_GRACE_SECONDS": "5"},
    )
    assert config.ice.addresses == ("127.0.0.1", "::1")
    assert config.sessions.grace_seconds == 5.0


@pytest.mark.parametrize(
    ("toml", "environ", "message"),
    [
        ("[server]\nport = 70000\n", {}, "server.port: must be between 1 and 65535"),
        ('[server]\nport = "http"\n', {}, "server.port: expected an integer"),
        ("[server]\nprot = 80\n", {}, "server.prot: unknown key"),
        ("[sessions]\ngrace_seconds = -1\n", {}, "sessions.grace_seconds"),
        ('[ice]\naddresses = "eth 0"\n', {}, "ice.addresses"),
        ("[log]\nlevel = 'loud'\n", {}, "log.level"),
        ('[media]\nworkers = "many"\n', {}, 'media.workers: must be "auto" or a number'),
        ("", {"BODYCAM_MEDIA_WORKERS": "-1"}, "media.workers"),
        ('[media]\nreceive = "fast"\n', {}, "media.receive"),
        ("", {"BODYCAM_RECORDING_SEGMENT_SECONDS": "soon"}, "recording.segment_seconds"),
        ("", {"BODYCAM_COLOUR": "blue"}, "colour: unknown key"),
        ("server = 3\n", {}, "server: must be a table"),
        ("[server\n", {}, "not valid TOML"),
        ("[geo]\nmax_accuracy_m = 0\n", {}, "geo.max_accuracy_m: must be between 1 and 1000"),
        ("", {"BODYCAM_GEO_SELECTION_LIMIT": "40"}, "geo.selection_limit: must be between 1"),
        (
            "[cameras]\nhealth_interval_seconds = 0.1\n",
            {},
            "cameras.health_interval_seconds: must be between 1 and 3600",
        ),
        ("[cameras]\nhealth_concurrency = 2.5\n", {}, "cameras.health_concurrency: expected an"),
        ("[geo]\ntrack_points = 5\n", {}, "geo.track_points: must be between 10 and 86400"),
        (
            "[server]\nheap_trim_seconds = 0.5\n",
            {},
            "server.heap_trim_seconds: must be 0 for never, or between 1 and 3600",
        ),
    ],
)
def test_errors_name_the_key(
    tmp_path: Path, toml: str, environ: dict[str, str], message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        Config.load(path, environ=environ)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load(tmp_path / "nope.toml", environ={})
