"""An operator finds a recording in the console and views it, with a reason, in the page.

Runs inside a network namespace of its own (loopback only), started by
tests/test_browser_console.py:

    unshare -n sh -c 'ip link set lo up; exec python -m tests.browser.recordings_scenario DIR'

A session recorded on a fixed date (the gateway runs on a clock of that date), a street
the officer walked along; Chromium logs in, searches by place, states a reason and plays
the recording in the console's player across its chunks, then seeks. Prints one JSON
object of what the page showed and what the register holds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from bodycam.config import Config
from bodycam.evidence.keyring import Keyring
from bodycam.gateway.app import create_app
from bodycam.gateway.appkeys import store_key
from bodycam.store import SqliteStore

from ..evidence_data import record_session
from ..helpers import PASSWORD, ShiftedClock, add_login
from .chromium import console

PORT = 8080
BASE = f"http://127.0.0.1:{PORT}"
RECORDED = datetime(2026, 11, 2, 9, tzinfo=UTC)
# s1's fixes run north from (49.12, 6.18); this street passes 10 m east of them
STREET = '{"type": "LineString", "coordinates": [[6.18014, 49.119], [6.18014, 49.121]]}'


async def prepare(data_dir: Path) -> Config:
    config = Config.load(None, environ={}, data_dir=str(data_dir))
    store = SqliteStore(config.database_path)
    keyring = await store.run(Keyring.load, config, store)
    await record_session(config, store, keyring, "s1", RECORDED, officer="Agent Martin")
    await record_session(
        config, store, keyring, "s2", RECORDED + timedelta(minutes=5), "cam-2", "Agent Leroy"
    )
    await store.run(store.replace_places, [("street", "Rue Serpenoise", STREET)])
    await add_login(store, "dupont", "operator")
    await asyncio.to_thread(store.close)
    return config


async def main(out: Path) -> dict[str, Any]:
    config = await prepare(out / "data")
    app = create_app(config, ShiftedClock(RECORDED + timedelta(hours=1)))
    gateway = web.AppRunner(app, access_log=None)
    await gateway.setup()
    await web.TCPSite(gateway, "127.0.0.1", PORT).start()
    result: dict[str, Any] = {}
    async with console(BASE, "dupont", PASSWORD) as (page, errors):
        result["page_errors"] = errors
        await page.click('[data-testid="open-recordings"]')
        await page.wait_for_selector('[data-testid="recording"]')
        result["listed"] = await page.eval_on_selector_all(
            '[data-testid="recording"]', "rows => rows.map(r => r.dataset.sessionId)"
        )
        await page.fill('[data-testid="search-place"]', "serpenoise")
        await page.fill('[data-testid="search-officer"]', "martin")
        await page.click('[data-testid="search-submit"]')
        await page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=\"recording\"]').length === 1"
        )
        result["found"] = await page.eval_on_selector_all(
            '[data-testid="recording"]', "rows => rows.map(r => r.dataset.sessionId)"
        )
        await page.click('[data-testid="recording"] [data-testid="btn-view"]')
        # no reason, no viewing: the form will not send
        await page.click('[data-testid="viewing-submit"]')
        result["player_without_reason"] = await page.is_visible('[data-testid="player"]')
        await page.fill('[data-testid="viewing-reason"]', "rapport d'intervention")
        await page.click('[data-testid="viewing-submit"]')
        video = '[data-testid="player-video"]'
        # plays across the two chunks of the session (1 s each) to its end
        await page.wait_for_function(
            f"() => document.querySelector('{video}').currentTime > 1.5", timeout=15_000
        )
        result["video"] = await page.eval_on_selector(
            video,
            """v => ({width: v.videoWidth, height: v.videoHeight, duration: v.duration,
                      frames: v.getVideoPlaybackQuality().totalVideoFrames,
                      src: v.src, download: v.getAttribute('controlslist')})""",
        )
        result["watermark"] = await page.inner_text('[data-testid="watermark"] span')
        result["info"] = await page.inner_text('[data-testid="player-info"]')
        await page.screenshot(path=str(out / "recording-view.png"))
        # seek back into the first chunk: it is fetched again and plays
        await page.eval_on_selector(video, "v => { v.currentTime = 0.3; v.play(); }")
        await page.wait_for_function(
            f"() => {{ const v = document.querySelector('{video}');"
            " return !v.seeking && v.currentTime > 0.5 }",
            timeout=10_000,
        )
        result["after_seek"] = await page.eval_on_selector(video, "v => v.currentTime")
        result["links"] = await page.eval_on_selector_all(
            "a[download], a[href*='/viewings/']", "links => links.length"
        )
        await page.click('[data-testid="player-close"]')
        result["player_after_close"] = await page.is_visible('[data-testid="player"]')
    store = app[store_key]
    result["register"] = [
        {k: e[k] for k in ("action", "user", "session", "reason", "from", "to")}
        for e in await store.run(store.register_entries)
        if e["action"] == "recording_view"
    ]
    await gateway.cleanup()
    return result


if __name__ == "__main__":
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    print(json.dumps(asyncio.run(main(directory))))
