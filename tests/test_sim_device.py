"""The simulated camera's identity, battery, endpoint and ICE defaults, and its command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from simulators.axis_bodycam import AxisBodycam, Battery, axis_serial, parse_args
from simulators.gps import RUNNING_SPEED
from simulators.whip import codec_preferences, default_ice_addresses, whip_endpoint

REPO = Path(__file__).resolve().parents[1]


def test_serial_is_axis_like_and_stable() -> None:
    serial = axis_serial("cam-17")
    assert serial == axis_serial("cam-17") != axis_serial("cam-18")
    assert serial.startswith("ACCC8E")
    assert len(serial) == 12
    int(serial, 16)


def test_battery_drains_faster_live_and_stops_at_empty() -> None:
    battery = Battery(percent=50.0, drain_live=1.0, drain_idle=0.1, since=0.0)
    assert battery.level(600.0) == pytest.approx(49.0)  # 10 min idle
    battery.switch(True, 600.0)
    assert battery.level(1200.0) == pytest.approx(39.0)  # then 10 min live
    battery.switch(False, 1200.0)
    assert battery.level(1800.0) == pytest.approx(38.0)
    assert battery.level(10_000_000.0) == 0.0


async def test_camera_battery_follows_its_state() -> None:
    now = [0.0]
    cam = AxisBodycam(
        "http://127.0.0.1:9", "cam-17", "t", battery=Battery(percent=80.0), clock=lambda: now[0]
    )
    now[0] = 60.0
    assert cam.battery == pytest.approx(79.9)
    assert cam.state == "idle"
    assert cam.frames_sent == 0
    assert cam.session_url is None
    await cam.close()


@pytest.mark.parametrize(
    ("base", "endpoint"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/whip"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/whip"),
        ("https://gw.example/whip", "https://gw.example/whip"),
        ("https://gw.example/metz/", "https://gw.example/metz/whip"),
    ],
)
def test_whip_endpoint(base: str, endpoint: str) -> None:
    assert whip_endpoint(base) == endpoint


@pytest.mark.parametrize(
    ("url", "addresses"),
    [
        ("http://127.0.0.1:8080", ["127.0.0.1"]),
        ("http://localhost:8080", ["127.0.0.1"]),
        ("http://[::1]:8080", ["::1"]),
        ("https://gw.example", []),
        ("http://10.20.0.5:8080", []),
    ],
)
def test_default_ice_addresses(url: str, addresses: list[str]) -> None:
    assert default_ice_addresses(url) == addresses


@pytest.mark.parametrize(("codec", "mime"), [("h264", "video/H264"), ("vp8", "video/VP8")])
def test_codec_preferences_offer_one_codec(codec: str, mime: str) -> None:
    video = {c.mimeType for c in codec_preferences("video", codec)}
    assert video == {mime, "video/rtx"}
    assert {c.mimeType for c in codec_preferences("audio", codec)} == {"audio/opus"}
    if codec == "h264":
        first = codec_preferences("video", codec)[0]
        assert first.parameters["profile-level-id"].startswith("42e0")


def test_command_line_options() -> None:
    args = parse_args(
        ["--gateway", "http://gw", "--device", "cam-1", "--token", "t", "--size", "640x360",
         "--speed", "run", "--ice-address", "lo", "10.0.0.0/8", "--encode", "loop"]
    )  # fmt: skip
    assert args.size == (640, 360)
    assert args.speed == RUNNING_SPEED
    assert args.ice_addresses == ["lo", "10.0.0.0/8"]
    assert args.encode == "loop"
    assert args.duration is None
    assert args.codec == "h264"
    bare = parse_args(["--gateway", "g", "--device", "d", "--token", "t", "--ice-address"])
    assert bare.ice_addresses == []
    assert parse_args(["--gateway", "g", "--device", "d", "--token", "t"]).ice_addresses is None


def test_command_line_fails_clearly_when_the_gateway_is_unreachable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "simulators.axis_bodycam", "--gateway", "http://127.0.0.1:9",
         "--device", "cam-17", "--token", "t", "--size", "320x240", "--duration", "1"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 1
    assert "cam-17: cannot go live: WHIP POST http://127.0.0.1:9/whip failed" in result.stderr
    assert result.stdout == ""
