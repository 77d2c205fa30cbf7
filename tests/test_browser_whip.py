"""A browser page is a WHIP client too: Chromium publishes camera and microphone to the
gateway from another origin, and the session is recorded like a body camera's."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import pytest

REPO = Path(__file__).resolve().parent.parent


def browser_available() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    if not Path("/usr/bin/chromium").exists():
        return "Debian's chromium is not installed (apt-get install chromium)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare and ip (util-linux, iproute2) are needed for a loopback-only namespace"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return "cannot create a network namespace (unshare -n): run as root"
    return None


def run_scenario(module: str, out: Path) -> dict[str, Any]:
    """Run a browser scenario in a loopback-only namespace; its printed JSON result."""
    missing = browser_available()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)  # CI installs everything: a missing piece is a broken CI
        pytest.skip(missing)
    command = f"ip link set lo up; exec {sys.executable} -m {module} {out}"
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_chromium_publishes_with_whip(tmp_path: Path) -> None:
    result = run_scenario("tests.browser.scenario", tmp_path)

    assert result["page"]["deleted"] == 200
    [session] = result["sessions"]
    assert session["state"] == "ended" and session["end_reason"] == "delete"
    assert session["video_codec"] == "H264"  # preferred, although Chromium lists VP8 first
    assert session["audio_codec"] == "opus"
    assert session["positions"] >= 4
    assert session["segments"]
    frames = 0
    for segment in session["segments"]:
        assert segment["state"] == "closed"
        plain = Path(segment["path"]).read_bytes()  # decrypted by the scenario
        assert hashlib.sha256(plain).hexdigest() == segment["sha256"]
        with av.open(segment["path"]) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            assert container.streams.audio[0].codec_context.name == "opus"
            frames += sum(1 for _ in container.decode(video=0))
    assert frames >= 60  # six seconds at up to 30 fps, minus ramp-up
    assert (tmp_path / "publisher.png").exists()
