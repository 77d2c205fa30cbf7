"""Export: a session's segments remuxed into one playable Matroska file.

Segments keep their place on the session's timeline (a link loss stays a gap, as it
happened). Nothing is decoded: packets are copied with their times shifted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from ..errors import BadRequest, BodycamError, NotFound, Unprocessable
from ..models import Segment
from ..store import Store

logger = logging.getLogger(__name__)

MS = Fraction(1, 1000)


def export_session(
    store: Store,
    recordings_dir: Path,
    session_id: str,
    out: Path,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write one file for the whole session; returns the number of packets written."""
    session = store.get_session(session_id)
    if session is None:
        raise NotFound(f"session {session_id} does not exist")
    segments = [s for s in store.segments_of(session_id) if s.state in ("closed", "recovered")]
    if not segments:
        raise Unprocessable(f"session {session_id} has no recorded segment to export")
    missing = [s.path for s in segments if not (recordings_dir / s.path).is_file()]
    if missing:
        raise Unprocessable(f"session {session_id}: segment files missing: {', '.join(missing)}")
    if not out.parent.is_dir():
        raise BadRequest(f"cannot write {out}: {out.parent} is not a directory")
    try:
        return _remux(session.started_at, segments, recordings_dir, out, progress)
    except (av.FFmpegError, OSError) as err:
        raise BodycamError(f"export to {out} failed: {err}") from None


def _remux(
    started_at: datetime,
    segments: list[Segment],
    recordings_dir: Path,
    out: Path,
    progress: Callable[[int, int], None] | None,
) -> int:
    written = 0
    with av.open(str(out), "w", format="matroska") as output:
        streams: dict[str, av.stream.Stream] = {}
        last: dict[str, int] = {}
        for index, segment in enumerate(segments):
            shift = round((segment.started_at - started_at).total_seconds() * 1000)
            with av.open(str(recordings_dir / segment.path)) as source:
                if not streams:
                    for stream in source.streams:
                        if stream.type in ("video", "audio"):
                            streams[stream.type] = output.add_stream_from_template(stream)
                            streams[stream.type].time_base = MS
                for packet in _packets(source, segment.path):
                    target = streams.get(packet.stream.type)
                    if target is None or packet.pts is None:
                        continue
                    pts = shift + round(packet.pts * packet.time_base / MS)
                    pts = max(pts, last.get(packet.stream.type, -1))
                    last[packet.stream.type] = pts
                    packet.stream = target
                    packet.pts = packet.dts = pts
                    packet.time_base = MS
                    output.mux(packet)
                    written += 1
            if progress is not None:
                progress(index + 1, len(segments))
    return written


def _packets(source: Any, name: str) -> Iterator[av.Packet]:
    """A segment's packets; a segment cut by a crash ends early, and that is not an error."""
    demux = source.demux()
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            return
        except av.FFmpegError as err:
            logger.warning("export: %s ends early: %s", name, err)
            return
        yield packet
