"""The operator's console in a real Chromium: alert, live video, fixed cameras, map, actions.

The scenario (tests/browser/console_scenario.py) runs in a loopback-only network namespace;
its screenshots stay in the test's temporary folder.
"""

from __future__ import annotations

from pathlib import Path

from .helpers import run_scenario


def test_an_operator_sees_the_officer_and_works_the_alert(tmp_path: Path) -> None:
    result = run_scenario("tests.browser.console_scenario", tmp_path)

    assert result["page_errors"] == []
    assert result["alert_seconds"] < 2.0  # listed within 2 s of the button press
    assert "Brigadier Lefèvre" in result["alert_text"]
    assert "Rue du Test" in result["alert_text"]  # the officer's street
    video = result["video"]
    assert video["width"] == 320
    assert video["height"] == 240
    assert video["advanced"] > 0.5
    assert not video["paused"]
    assert video["audio_tracks"] == 1  # the officer is heard too
    shown = [camera for camera, width in result["camera_tiles"] if width > 0]
    assert shown
    assert set(shown) <= {"fixed-west", "fixed-east", "ptz-1", "behind"}
    assert result["officer_on_map"] < 2
    assert "fixed-west" in result["map_selected"]  # the camera that sees them, highlighted
    # the officer runs east: the east camera comes onto the wall, the pinned west one stays
    assert result["east_followed"] < 15
    assert result["west_pinned"] is True
    assert result["actions"] == [
        ["prise_en_compte", "dupont", "operator"],
        ["renforts_envoyes", "dupont", "operator"],
        ["cloturee", "dupont", "operator"],
    ]
    assert "Clôturée par dupont" in result["alert_after"]
    # the national police's notice and countdown, on the CSU's console
    first, later = result["cic"]
    assert "Police nationale (cic)" in first
    assert "« CIC Metz : suivi d'un véhicule »" in first
    assert "fin dans 1:5" in first or "fin dans 2:00" in first
    assert later != first  # the countdown moves
    for name in ("idle", "live", "followed", "dispatched", "closed"):
        assert (tmp_path / f"console-{name}.png").stat().st_size > 10_000


def test_an_operator_views_a_recording_in_the_console_and_never_gets_a_copy(
    tmp_path: Path,
) -> None:
    result = run_scenario("tests.browser.recordings_scenario", tmp_path)

    assert result["page_errors"] == []
    assert result["listed"] == ["s2", "s1"]
    assert result["found"] == ["s1"]  # by place and officer
    assert result["player_without_reason"] is False
    video = result["video"]
    assert (video["width"], video["height"]) == (160, 120)
    assert 1.9 < video["duration"] < 2.1
    assert video["frames"] > 30  # both chunks played
    assert video["src"].startswith("blob:")  # a MediaSource in the page, not a file URL
    assert "nodownload" in video["download"]
    assert result["links"] == 0
    assert result["watermark"].startswith("dupont · ")
    assert "consultation" in result["watermark"]
    assert "inscrite au registre" in result["info"]
    assert result["after_seek"] > 0.5
    assert result["player_after_close"] is False
    assert result["register"] == [
        {
            "action": "recording_view",
            "user": "dupont",
            "session": "s1",
            "reason": "rapport d'intervention",
            "from": "2026-11-02T09:00:00.020Z",
            "to": "2026-11-02T09:00:01.986Z",
        }
    ]
    assert (tmp_path / "recording-view.png").stat().st_size > 10_000
