"""Chromium publishes to the gateway with WHIP from a page on another origin.

Runs inside a network namespace of its own (loopback only: Chromium gathers every
interface's address whatever it is told), started by tests/test_browser_whip.py:

    unshare -n sh -c 'ip link set lo up; exec python -m tests.browser.scenario DIR'

Prints one JSON object: the page's result and the gateway's catalogue.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from aiohttp import web
from playwright.async_api import async_playwright

from bodycam import devices
from bodycam.clock import SystemClock
from bodycam.config import Config
from bodycam.gateway.app import create_app
from bodycam.gateway.appkeys import store_key
from tests.media_check import reveal

from .chromium import CHROMIUM, FLAGS

SECONDS = 6


async def main(data_dir: Path) -> dict[str, object]:
    config = Config.load(
        None, environ={}, data_dir=str(data_dir / "data"), recording_segment_seconds=3
    )
    gateway = web.AppRunner(create_app(config))
    await gateway.setup()
    await web.TCPSite(gateway, "127.0.0.1", 8080).start()
    store = gateway.app[store_key]
    token = await store.run(devices.enroll, store, "browser-cam", "Page WHIP", SystemClock().now())

    page_app = web.Application()  # another origin: the page relies on CORS
    page_app.router.add_static("/", Path(__file__).parent)
    pages = web.AppRunner(page_app)
    await pages.setup()
    await web.TCPSite(pages, "127.0.0.1", 8081).start()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=FLAGS,
            ignore_default_args=["--headless=old"],
        )
        try:
            page = await browser.new_page()
            await page.goto("http://127.0.0.1:8081/whip_publisher.html")
            result = await page.evaluate(
                "([endpoint, token, seconds]) => publish(endpoint, token, seconds)",
                ["http://127.0.0.1:8080/whip", token, SECONDS],
            )
            await page.screenshot(path=str(data_dir / "publisher.png"))
        finally:
            await browser.close()
    await asyncio.sleep(0.5)
    sessions = await store.run(store.list_sessions)
    catalogue = [
        {
            "id": s.id,
            "state": s.state,
            "end_reason": s.end_reason,
            "video_codec": s.video_codec,
            "audio_codec": s.audio_codec,
            "positions": len(await store.run(store.positions_of, s.id)),
            "segments": [
                {
                    "path": str(await reveal(config, store, g, data_dir)),
                    "state": g.state,
                    "width": g.width,
                    "height": g.height,
                    "sha256": g.sha256,
                }
                for g in (await store.run(store.segments_of, s.id))
            ],
        }
        for s in sessions
    ]
    await pages.cleanup()
    await gateway.cleanup()
    return {"page": result, "sessions": catalogue}


if __name__ == "__main__":
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    print(json.dumps(asyncio.run(main(directory))))
