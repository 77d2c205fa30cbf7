"""The README's demo, seen by a new user in Chromium: its city, its three officers, their
640x360 body cameras. The first look must work: each officer's alert, once opened, shows
their camera playing within a couple of seconds.

The scenario (tests/browser/demo_scenario.py) runs `bodycam demo` and the browser in a
loopback-only network namespace; its screenshots stay in the test's temporary folder.
"""

from __future__ import annotations

from pathlib import Path

from .helpers import run_scenario


def test_a_new_user_sees_each_officer_of_the_demo(tmp_path: Path) -> None:
    result = run_scenario("tests.browser.demo_scenario", tmp_path, timeout=240)

    assert result["page_errors"] == []
    assert result["exit_code"] == 0, result["output"]
    alerts = result["alerts"]
    assert len(alerts) == 3, alerts
    for alert in alerts:  # the body camera tile plays, at the camera's own size
        assert alert["seconds"] is not None, alert
        assert alert["seconds"] < 3.0, alert
        assert (alert["video"]["width"], alert["video"]["height"]) == (640, 360), alert
    officers = ("Brigadier Lefèvre", "Gardien Rossi", "Brigadier-chef Nguyen")
    assert all(any(o in text for text in result["alert_texts"]) for o in officers)
    assert result["camera_pictures"] >= 1  # the fixed cameras chosen for them, live
    assert result["officers_on_map"] >= 1
    # what the demo prints at its end is what the README says to run next
    assert any("sessions verify" in line for line in result["output"])
