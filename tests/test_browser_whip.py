"""A browser page is a WHIP client too: Chromium publishes camera and microphone to the
gateway from another origin, and the session is recorded like a body camera's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av

from .helpers import run_scenario


def test_chromium_publishes_with_whip(tmp_path: Path) -> None:
    result = run_scenario("tests.browser.scenario", tmp_path)

    assert result["page"]["deleted"] == 200
    [session] = result["sessions"]
    assert session["state"] == "ended"
    assert session["end_reason"] == "delete"
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
