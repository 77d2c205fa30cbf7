"""The C heap's free pages go back to the kernel (bodycam/heap.py), and /metrics shows the heap.

The RSS figures are read in a fresh interpreter: in the suite's own process the heap holds
what earlier tests left, which makes how much a trim gives back depend on the test order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bodycam import heap
from bodycam.config import Config
from bodycam.gateway.app import create_app

from .helpers import start_gateway

pytestmark = pytest.mark.skipif(not heap.available(), reason="glibc 2.33+ only")

# 128 MB of 64 KB frames (under glibc's mmap threshold: served from the heap, as a frame
# is) freed between small blocks that stay (over pymalloc's 512 bytes: from the same heap):
# holes the allocator keeps, as a gateway's heap has after a while. At least half of it
# must go back (96 MB seen here: pages at the holes' edges stay).
PROGRAM = """
import asyncio, os, sys
from pathlib import Path
from bodycam import heap

def rss_mb():
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

async def main(way):
    trimmer = asyncio.create_task(heap.trim_forever(1)) if way == "gateway" else None
    frames, kept = [], []
    for _ in range(20):
        for _ in range(100):
            frames.append(bytes(64 * 1024))
            kept.append(bytes(600))
        await asyncio.sleep(0)
    del frames
    held = rss_mb()
    free = heap.usage().free
    if way == "now":
        assert heap.trim()
    else:
        for _ in range(30):
            await asyncio.sleep(0.1)
            if held - rss_mb() > 64:
                break
        trimmer.cancel()
    print(f"{free / 1e6:.0f} {held - rss_mb():.0f} {len(kept)}")

asyncio.run(main(sys.argv[1]))
"""


def run(way: str) -> tuple[float, float]:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, way], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    free_mb, returned_mb, kept = done.stdout.split()
    assert kept == "2000"
    return float(free_mb), float(returned_mb)


def test_trimming_gives_the_freed_pages_back() -> None:
    free_mb, returned_mb = run("now")
    assert free_mb > 100  # freed, and still the allocator's
    assert returned_mb > 64  # the holes' pages went back


def test_the_trimming_loop_gives_them_back_on_its_own() -> None:
    _, returned_mb = run("gateway")
    assert returned_mb > 64


async def test_the_gateway_shows_its_heap(tmp_path: Path) -> None:
    config = Config.load(None, environ={}, data_dir=str(tmp_path))
    gateway = await start_gateway(create_app(config), config)
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/metrics") as r:
            text = await r.text()
        figures = {
            name: float(value)
            for name, value in (line.split() for line in text.splitlines() if line[:1] != "#")
            if name.startswith("bodycam_heap_")
        }
        assert figures["bodycam_heap_in_use_bytes"] > 1e6
        assert figures["bodycam_heap_free_bytes"] >= 0
    finally:
        await gateway.server.close()
