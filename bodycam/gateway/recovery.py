"""After a crash: seal the segments that were being written, as they are on disk.

A segment left open by a `kill -9` or a power cut holds everything up to its last flushed
cluster (about a second). Recovery reads its packets (demuxing only, nothing is decoded) to
find how much media it holds, hashes the file as found, and seals it in the catalogue as
"recovered", chained like any other. A file cut before its first complete cluster (it may
not even open: libav keeps the header in its buffer until the first cluster goes out) is
sealed as "empty" and kept all the same: the gateway never deletes what it recorded.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import av

from ..store import Store
from .recorder import sha256_file

logger = logging.getLogger(__name__)


def media_seconds(path: Path) -> float | None:
    """Seconds of media in a (possibly truncated) Matroska file; None if it holds none.

    Raises av.FFmpegError or OSError when the file cannot be opened at all.
    """
    last: float | None = None
    with av.open(str(path)) as container:
        try:
            for packet in container.demux():
                if packet.pts is not None and packet.time_base is not None:
                    t = float(packet.pts * packet.time_base)
                    last = t if last is None else max(last, t)
        except av.FFmpegError as err:
            # A truncated last cluster ends demuxing with an error: what came before is good.
            logger.info("recovery: %s: reading stopped at %s", path.name, err)
    return last


def recover_segments(store: Store, recordings_dir: Path) -> int:
    """Seal every segment the catalogue still has open; returns how many were found."""
    found = store.open_segments()
    for segment in found:
        path = recordings_dir / segment.path
        if not path.exists() or path.stat().st_size == 0:
            logger.warning(
                "recovery: session %s segment %d has no file, forgotten",
                segment.session_id,
                segment.seq,
            )
            if path.exists():
                path.unlink()
            store.drop_segment(segment.id)
            continue
        try:
            seconds = media_seconds(path)
            state = "recovered" if seconds is not None else "empty"
        except (av.FFmpegError, OSError) as err:
            logger.warning("recovery: %s does not open: %s", path, err)
            seconds, state = None, "empty"
        ended = segment.started_at + timedelta(seconds=seconds or 0.0)
        store.close_segment(segment.id, ended, path.stat().st_size, sha256_file(path), state)
        logger.warning(
            "recovery: session %s segment %d sealed as %s (%.1f s of media)",
            segment.session_id,
            segment.seq,
            state,
            seconds or 0.0,
        )
    return len(found)
