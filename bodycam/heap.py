"""The C heap under the interpreter (glibc's malloc): what it holds, and giving back what it
keeps free.

A gateway allocates every RTP packet and every encoded frame (1 KB to a few hundred KB) and
frees it a few milliseconds later, between objects that live for hours (a session's track,
the event history). glibc serves the large ones from heaps it grows and does not shrink
while a live object sits above the free space: in a soak (bench/soak.py, 20 cameras) the
heap's free-but-kept bytes grew about 4 MB a minute while the bytes in use stayed flat, and
the process's RSS followed the first (+118 MB/h; +2 MB/h with trimming every 60 s).
`malloc_trim(0)` hands the free pages in the middle of every arena back to the kernel
(madvise), without moving anything;
`trim_forever` does it on a worker thread every `server.heap_trim_seconds` (ctypes releases
the GIL for the call, so the event loop keeps running).

`usage()` reads `mallinfo2()` for `/metrics` (`bodycam_heap_in_use_bytes`,
`bodycam_heap_free_bytes`): the first growing is a leak, the second growing is
fragmentation. Off glibc (musl, macOS) both are unavailable and this module does nothing.

Imports nothing of bodycam: a foundation.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class _Mallinfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33+): every field a size_t."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes of the main arena and of the other arenas' heaps (sbrk/mmap)
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in chunks mmapped on their own (large allocations)
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use from the arenas
            "fordblks",  # bytes free in the arenas, kept by the allocator
            "keepcost",
        )
    ]


@dataclass(frozen=True)
class HeapUsage:
    """Bytes the program holds, and bytes the allocator holds free on its behalf."""

    in_use: int
    free: int


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallinfo2.restype = _Mallinfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc, or older than 2.33
        return None
    return libc


def available() -> bool:
    """Whether this process runs on a glibc that reports and trims its heap."""
    return _glibc() is not None


def usage() -> HeapUsage | None:
    """The heap's figures now, or None off glibc. Walks the arenas' free lists: cheap (a
    scrape's worth), not for every packet."""
    libc = _glibc()
    if libc is None:
        return None
    info = libc.mallinfo2()
    return HeapUsage(in_use=info.uordblks + info.hblkhd, free=info.fordblks)


def figure(name: str) -> float:
    """One field of `usage()` ("in_use" or "free") as a gauge reads it: NaN off glibc."""
    found = usage()
    return float(getattr(found, name)) if found is not None else float("nan")


def trim() -> bool:
    """Give the heap's free pages back to the kernel; whether any were. Blocks for as long
    as it walks the arenas (milliseconds): call it off the event loop."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))


async def trim_forever(interval: float) -> None:
    """`trim()` on a worker thread every `interval` seconds, until cancelled."""
    if not available():
        logger.info("heap trimming off: this C library has no malloc_trim/mallinfo2")
        return
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(trim)
