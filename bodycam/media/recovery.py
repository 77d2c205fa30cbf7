"""After a crash: seal the segments that were being written, as they are on disk.

A segment left open by a `kill -9` or a power cut holds every encrypted chunk written up to
its last cluster (about a second). Recovery drops a chunk torn by the crash, closes the file
with its final chunk (`sealed.finish_truncated`), reads its packets (demuxing only, nothing
is decoded) to find how much media it holds, and seals it in the catalogue as "recovered",
chained like any other. A file that holds no media (cut before its first cluster) is sealed
as "empty" and kept all the same: the gateway never deletes what it recorded.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import av

from ..evidence import sealed
from ..evidence.keyring import Keyring, segment_label
from ..logs import bind
from ..models import Segment
from ..store import Store

logger = logging.getLogger(__name__)


def media_seconds(path: Path, key: bytes, label: str) -> float | None:
    """Seconds of media in a (possibly truncated) sealed Matroska file; None if it holds none.

    Raises av.FFmpegError, OSError or SealedError when the file cannot be opened at all.
    """
    last: float | None = None
    with av.open(sealed.SealedReader(path, key, label), "r", format="matroska") as container:
        try:
            for packet in container.demux():
                if packet.pts is not None and packet.time_base is not None:
                    t = float(packet.pts * packet.time_base)
                    last = t if last is None else max(last, t)
        except av.FFmpegError as err:
            # A truncated last cluster ends demuxing with an error: what came before is good.
            logger.info("recovery: %s: reading stopped at %s", path.name, err)
    return last


def recover_segments(
    store: Store,
    keyring: Keyring,
    recordings_dir: Path,
    nodes: list[str],
    only: set[int] | None = None,
) -> int:
    """Seal every segment the catalogue still has open for these (dead) gateway processes
    (`only` these ids: a dead media worker's); returns how many were found.

    One node recovers at a time (`store.exclusive("recovery")`: two sealing one file at
    once would tear it); another node recovering now means this call does nothing and the
    next round looks again. Runs on a worker thread: the store is reached with `store.call`.
    """
    with store.exclusive("recovery") as mine:
        if not mine:
            return 0
        found = store.call(store.open_segments, nodes)
        if only is not None:
            found = [segment for segment in found if segment.id in only]
        for segment in found:
            _recover(store, keyring, recordings_dir, segment)
        return len(found)


def _recover(store: Store, keyring: Keyring, recordings_dir: Path, segment: Segment) -> None:
    log = bind(logger, session_id=segment.session_id)
    path = recordings_dir / segment.path
    if not path.exists() or path.stat().st_size == 0:
        log.warning(
            "recovery: session %s segment %d has no file, forgotten",
            segment.session_id,
            segment.seq,
        )
        if path.exists():
            path.unlink()
        store.call(store.drop_segment, segment.id)
        return
    label = segment_label(segment)
    seconds: float | None = None
    try:
        key = store.call(keyring.session_key, segment.session_id)
        size, digest, _ = sealed.finish_truncated(path, key, label)
    except sealed.SealedError as err:
        # Never destroyed: kept open in the catalogue, for a person to look at.
        log.error("recovery: %s cannot be sealed, left as found: %s", path, err)
        return
    try:
        seconds = media_seconds(path, key, label)
    except (av.FFmpegError, OSError, sealed.SealedError) as err:
        log.warning("recovery: %s holds no readable media: %s", path, err)
    state = "recovered" if seconds is not None else "empty"
    ended = segment.started_at + timedelta(seconds=seconds or 0.0)
    store.call(store.close_segment, segment.id, ended, size, digest, state)
    log.warning(
        "recovery: session %s segment %d sealed as %s (%.1f s of media)",
        segment.session_id,
        segment.seq,
        state,
        seconds or 0.0,
    )
