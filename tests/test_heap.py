"""The C heap's free pages go back to the kernel (bodycam/heap.py), and /metrics shows the heap."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest

from bodycam import heap
from bodycam.config import Config
from bodycam.gateway.app import create_app

from .helpers import start_gateway

pytestmark = pytest.mark.skipif(not heap.available(), reason="glibc 2.33+ only")

BLOCK = 64 * 1024  # under glibc's mmap threshold: served from the heap, as a frame is
BLOCKS = 2000  # 128 MB
RETURNED_MB = 64  # at least half of it goes back (96 MB seen here: pages at holes' edges stay)


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def fragment(frames: list[bytes], kept: list[bytes], count: int) -> None:
    """Frames (to be freed) between small blocks that stay: holes the allocator keeps once
    the frames are freed, as a gateway's heap has after a while."""
    for _ in range(count):
        frames.append(bytes(BLOCK))  # zero-filled: its pages are touched
        kept.append(bytes(600))  # over pymalloc's 512 bytes: from the same heap


def test_trimming_gives_the_freed_pages_back() -> None:
    before = heap.usage()
    assert before is not None
    frames: list[bytes] = []
    kept: list[bytes] = []
    fragment(frames, kept, BLOCKS)
    del frames
    held = rss_mb()
    usage = heap.usage()
    assert usage is not None
    assert usage.free - before.free > 100e6  # freed, and still the allocator's
    assert heap.trim()
    assert held - rss_mb() > RETURNED_MB  # the holes' pages went back
    assert len(kept) == BLOCKS


async def test_the_gateway_trims_on_its_own_and_shows_its_heap(tmp_path: Path) -> None:
    config = Config.load(
        None, environ={"BODYCAM_SERVER_HEAP_TRIM_SECONDS": "1"}, data_dir=str(tmp_path)
    )
    gateway = await start_gateway(create_app(config), config)
    try:
        frames: list[bytes] = []
        kept: list[bytes] = []
        for _ in range(BLOCKS // 100):  # on the loop's thread (its arena), 6 MB at a time
            fragment(frames, kept, 100)
            await asyncio.sleep(0)
        del frames
        held = rss_mb()
        for _ in range(30):  # within two rounds of the gateway's trimming
            await asyncio.sleep(0.1)
            if held - rss_mb() > RETURNED_MB:
                break
        assert held - rss_mb() > RETURNED_MB
        async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/metrics") as r:
            text = await r.text()
        figures = {
            name: float(value)
            for name, value in (line.split() for line in text.splitlines() if line[:1] != "#")
            if name.startswith("bodycam_heap_")
        }
        assert figures["bodycam_heap_in_use_bytes"] > len(kept) * 600
        assert figures["bodycam_heap_free_bytes"] >= 0
    finally:
        await gateway.server.close()
