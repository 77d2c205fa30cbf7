"""Export: a session's segments remuxed into one playable Matroska file.

Segments keep their place on the session's timeline (a link loss stays a gap, as it
happened). Nothing is decoded: packets are copied with their times shifted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av

from ..errors import NotFound, Unprocessable
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
    written = 0
    with av.open(str(out), "w", format="matroska") as output:
        streams: dict[str, av.stream.Stream] = {}
        last: dict[str, int] = {}
        for index, segment in enumerate(segments):
            shift = round((segment.started_at - session.started_at).total_seconds() * 1000)
            with av.open(str(recordings_dir / segment.path)) as source:
                if not streams:
                    for stream in source.streams:
                        if stream.type in ("video", "audio"):
                            streams[stream.type] = output.add_stream_from_template(stream)
                            streams[stream.type].time_base = MS
                try:
                    for packet in source.demux():
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
                except av.FFmpegError as err:
                    logger.warning("export: %s ends early: %s", segment.path, err)
            if progress is not None:
                progress(index + 1, len(segments))
    return written
