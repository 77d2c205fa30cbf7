"""`bodycam demo`, the README's first command: it runs, shows the geolocation, and records."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from bodycam.cli import main

from .helpers import free_port


def demo(data_dir: Path, duration: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bodycam",
        "demo",
        "--data-dir",
        str(data_dir),
        "--port",
        str(free_port()),
        "--duration",
        str(duration),
    ]


def test_the_demo_runs_the_city_and_three_officers(tmp_path: Path) -> None:
    done = subprocess.run(
        demo(tmp_path / "demo-data", 20), capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "demo city: 40 cameras of Metz's centre" in out
    assert "cameras for " in out
    assert "(sees)" in out
    assert "city cameras: 40 cameras, 1 down (availability 0.975)" in out
    assert "3 demo sessions in" in out
    assert "/ui/  (user operateur, password " in out  # the console, with a fresh account
    assert "Traceback" not in done.stderr
    # the real credentials file is untouched: the demo writes its own
    assert not (tmp_path / "demo-data" / "camera-credentials.toml").exists()
    # the commands it prints at the end work as printed
    printed = [
        line.split("bin/bodycam ", 1)[1] for line in out.splitlines() if "bin/bodycam " in line
    ]
    password = re.search(r"user superviseur, password (\S+)\)", out)
    assert password is not None, out[-2000:]
    assert len(printed) == 5, out[-2000:]
    for command in printed:
        args = command.split()
        if args[0] == "export":  # it asks for the password: give it on standard input
            args.append("--password-stdin")
        done = subprocess.run(
            [sys.executable, "-m", "bodycam", *args],
            input=password[1] + "\n",
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            check=False,
        )
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
    assert "OK:" in done.stdout  # the bundle verifies


def test_the_demo_does_not_replace_a_real_registry(tmp_path: Path) -> None:
    cameras = tmp_path / "cameras.geojson"
    feature = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [6.17, 49.12]},
        "properties": {"id": "cam-17", "kind": "fixed", "heading_deg": 0, "fov_deg": 60,
                       "range_m": 50},
    }  # fmt: skip
    cameras.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    assert main(["cameras", "import", str(cameras), "--data-dir", str(tmp_path)]) == 0
    done = subprocess.run(demo(tmp_path, 20), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "holds a camera registry that is not the demo's (cam-17" in done.stdout
