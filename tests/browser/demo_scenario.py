"""A new user's first look: the README's demo, seen in a real Chromium.

`bodycam demo` runs as the README's Quick start runs it (its own process, the Metz city, its
40 simulated cameras, three officers with 640x360 body cameras), inside a network namespace
of its own (loopback only), started by tests/test_browser_demo.py:

    unshare -n sh -c 'ip link set lo up; exec python -m tests.browser.demo_scenario DIR'

The browser logs in with the password the demo prints, then opens each officer's alert as
it comes and measures how soon the body camera tile plays. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.async_api import Page

from .chromium import console

BASE = "http://127.0.0.1:8080"
DURATION = 45  # seconds of demo: the three officers go live at 2, 7 and 11 s
PLAYING = """sid => {
  const v = document.querySelector(`[data-testid="tile-bodycam"][data-session-id="${sid}"]`);
  return v !== null && v.videoWidth > 0 && v.currentTime > 0.2 && !v.paused;
}"""


async def read_lines(stream: asyncio.StreamReader, lines: list[str]) -> None:
    while line := await stream.readline():
        lines.append(line.decode(errors="replace").rstrip())


async def password(lines: list[str], within: float = 60.0) -> str:
    """The operator's password, from the line the demo prints for the console."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        for line in lines:
            found = re.search(r"user operateur, password (\S+);", line)
            if found:
                return found[1]
        await asyncio.sleep(0.1)
    raise AssertionError("the demo printed no operator password:\n" + "\n".join(lines))


async def watch_alert(page: Page, sid: str, picture: Path) -> dict[str, Any]:
    """Open an alert the way an operator does, and time its body camera tile."""
    loop = asyncio.get_running_loop()
    clicked = loop.time()
    await page.click(
        f'[data-testid="alert"][data-session-id="{sid}"] [data-testid="alert-officer"]'
    )
    seen: dict[str, Any] = {"session_id": sid}
    try:
        await page.wait_for_function(PLAYING, arg=sid, timeout=10_000)
        seen["seconds"] = round(loop.time() - clicked, 2)
    except Exception as err:  # noqa: BLE001 a black tile is the finding, with its state
        seen["seconds"] = None
        seen["error"] = str(err)[:200]
    seen["video"] = await page.evaluate(
        """sid => {
          const v = document.querySelector(
            `[data-testid="tile-bodycam"][data-session-id="${sid}"]`);
          return v && {width: v.videoWidth, height: v.videoHeight, ready: v.readyState,
                       tracks: v.srcObject ? v.srcObject.getTracks().length : 0};
        }""",
        sid,
    )
    await page.screenshot(path=str(picture))
    return seen


async def main(out: Path) -> dict[str, Any]:
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bodycam",
        "demo",
        "--data-dir",
        str(out / "demo-data"),
        "--duration",
        str(DURATION),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert demo.stdout is not None
    lines: list[str] = []
    reader = asyncio.create_task(read_lines(demo.stdout, lines))
    result: dict[str, Any] = {"alerts": []}
    try:
        secret = await password(lines)
        async with console(BASE, "operateur", secret) as (page, errors):
            result["page_errors"] = errors
            watched: set[str] = set()
            while len(watched) < 3:  # each officer's alert, as it comes
                await page.wait_for_function(
                    """n => document.querySelectorAll('[data-testid="alert"]').length > n""",
                    arg=len(watched),
                    timeout=30_000,
                )
                sids = await page.eval_on_selector_all(
                    '[data-testid="alert"]', "els => els.map(e => e.dataset.sessionId)"
                )
                for sid in sids:
                    if sid not in watched:
                        watched.add(sid)
                        picture = out / f"demo-{len(watched)}.png"
                        result["alerts"].append(await watch_alert(page, sid, picture))
            result["camera_pictures"] = await page.eval_on_selector_all(
                '[data-testid="tile-camera"]', "els => els.filter(e => e.naturalWidth > 0).length"
            )
            result["officers_on_map"] = await page.eval_on_selector_all(
                '[data-testid="map-officer"]', "els => els.length"
            )
            result["alert_texts"] = await page.eval_on_selector_all(
                '[data-testid="alert"]', "els => els.map(e => e.innerText)"
            )
        result["exit_code"] = await asyncio.wait_for(demo.wait(), DURATION + 30)
    finally:
        if demo.returncode is None:
            demo.terminate()
            await demo.wait()
        await reader
        result["output"] = lines[-40:]
    return result


if __name__ == "__main__":
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    print(json.dumps(asyncio.run(main(directory))))
