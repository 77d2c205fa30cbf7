"""Debian's Chromium for the browser scenarios: its flags, and the console logged in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Page, async_playwright

CHROMIUM = "/usr/bin/chromium"  # Playwright's own download cannot work here
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # Chromium leaves loopback out of its ICE candidates unless told: the namespace has
    # nothing else.
    "--allow-loopback-in-peer-connection",
]


@asynccontextmanager
async def console(base: str, name: str, password: str) -> AsyncIterator[tuple[Page, list[str]]]:
    """A Chromium page logged in to the console at `base`, its map drawn; yields the page
    and the list of errors the page raises (it should stay empty)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=FLAGS, ignore_default_args=["--headless=old"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1600, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            await page.goto(f"{base}/ui/")
            await page.fill('[data-testid="login-name"]', name)
            await page.fill('[data-testid="login-password"]', password)
            await page.click('[data-testid="login-submit"]')
            await page.wait_for_selector('[data-testid="map"] svg, svg[data-testid="map"]')
            yield page, errors
        finally:
            await browser.close()
