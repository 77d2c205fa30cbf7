"""Reading recordings: a session's readable segments, each one decrypted as it is read,
checked against the hash it was sealed with, or remuxed with the others into one playable
Matroska file.

Segments keep their place on the session's timeline (a link loss, or a node that died
and the one that took the session over, stays a gap, as it happened). Nothing is decoded:
packets are copied with their times shifted. The output is a path or a non-seekable writer
(a recording streamed to a viewer).

Two orders: the chain's (`Segment.chain_index`, the order they were sealed in, which
verification and exports follow) and the files' (`seq`, the order they were written in,
which playback follows). They differ only when a session moved between nodes while the
segment of the node that lost it was still open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from ..errors import BodycamError, NotFound, Unprocessable
from ..models import GENESIS_HASH, Position, Segment, Session
from ..store import Store
from . import sealed
from .keyring import KeyDestroyed, Keyring, segment_label

logger = logging.getLogger(__name__)

MS = Fraction(1, 1000)
READABLE = ("closed", "recovered")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Recorded:
    """A session as the recordings list shows it: its totals, holds and expiry."""

    session: Session
    segments: int
    bytes: int
    held: bool
    recorded_until: datetime | None  # what its retention counts from (None: not ended)


def recordings(store: Store) -> list[Recorded]:
    """Every session, newest first, with what its recording holds; on the store's thread."""
    with store.snapshot():
        held = store.held_sessions()
        until = {d.session_id: d.recorded_until for d in store.pending_destructions()}
        return [
            Recorded(s, *store.recording_totals(s.id), s.id in held, until.get(s.id))
            for s in reversed(store.list_sessions())
        ]


@dataclass(frozen=True)
class Search:
    """What the recordings view asks for; every field narrows (None: any)."""

    officer: str | None = None  # part of the officer's name, any case
    device: str | None = None  # part of the camera's id
    since: datetime | None = None  # sessions still running then or later
    until: datetime | None = None  # sessions started before then


def search(
    store: Store, wanted: Search, near: Callable[[list[Position]], bool] | None = None
) -> list[Recorded]:
    """The recordings matching `wanted`, newest first; on the store's thread. `near` says
    whether a session's fixes went by the place asked for (geo/places.py)."""
    found = []
    for r in recordings(store):
        s = r.session
        if wanted.officer and wanted.officer.casefold() not in s.officer.casefold():
            continue
        if wanted.device and wanted.device.casefold() not in s.device_id.casefold():
            continue
        if wanted.since and s.ended_at is not None and s.ended_at < wanted.since:
            continue
        if wanted.until and s.started_at >= wanted.until:
            continue
        if near is not None and not near(store.positions_of(s.id)):
            continue
        found.append(r)
    return found


def recorded(store: Store, session_id: str) -> tuple[Session, list[Segment]]:
    """A session and its sealed segments in the chain's order; on the store's thread.
    (Raises Unprocessable when none of them holds media.)"""
    session = store.get_session(session_id)
    if session is None:
        raise NotFound(f"session {session_id} does not exist")
    if session.destroyed_at is not None:
        raise KeyDestroyed(
            f"session {session_id} was destroyed at the end of its retention: nothing to read"
        )
    sealed_ones = [s for s in store.segments_of(session_id) if s.chain_index > 0]
    if not playable(sealed_ones):
        raise Unprocessable(f"session {session_id} has no recorded segment")
    return session, sorted(sealed_ones, key=lambda s: s.chain_index)


def playable(segments: list[Segment]) -> list[Segment]:
    """The segments that hold media, in the order they were written."""
    return sorted((s for s in segments if s.state in READABLE), key=lambda s: s.seq)


@dataclass
class SessionCheck:
    """What `verify_session` found: each problem names its segment; none means intact."""

    session_id: str
    segments: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        if self.ok:
            return (
                f"OK: session {self.session_id}: {self.segments} segments decrypt, match their"
                " hashes and chain"
            )
        return "\n".join(
            [f"ALTERED: session {self.session_id}:", *(f"  {p}" for p in self.problems)]
        )


def verify_session(
    store: Store, keyring: Keyring, recordings_dir: Path, session_id: str
) -> SessionCheck:
    """Decrypt every segment of a session and check its hash and chain; off the event loop
    (it reads whole files), reaching the store with `store.call`."""
    session, segments = store.call(recorded, store, session_id)
    key = store.call(keyring.session_key, session_id)
    check, prev = SessionCheck(session.id, len(segments)), GENESIS_HASH
    for segment in segments:
        try:
            _, digest = sealed.digest(recordings_dir / segment.path, key, segment_label(segment))
        except (OSError, sealed.SealedError) as err:
            check.problems.append(f"segment {segment.seq}: {err}")
            continue
        if digest != segment.sha256:
            check.problems.append(
                f"segment {segment.seq} ({segment.path}): SHA-256 differs from the one sealed"
            )
        if segment.prev_sha256 != prev:
            check.problems.append(f"segment {segment.seq}: link to the previous segment broken")
        prev = segment.sha256
    return check


def opener(recordings_dir: Path, key: bytes) -> Callable[[Segment], Any]:
    """Opens a segment's decrypted bytes for `av.open`; names a missing file."""

    def open_segment(segment: Segment) -> Any:
        path = recordings_dir / segment.path
        if not path.is_file():
            raise Unprocessable(f"session {segment.session_id}: segment file {path} is missing")
        return sealed.SealedReader(path, key, segment_label(segment))

    return open_segment


def remux(
    started_at: datetime,
    segments: list[Segment],
    open_segment: Callable[[Segment], Any],
    out: Any,
    progress: Progress | None = None,
) -> int:
    """Copy every packet of the `playable` segments into one Matroska output; returns
    packets written."""
    segments = playable(segments)
    written = 0
    target = str(out) if isinstance(out, Path) else out
    try:
        with av.open(target, "w", format="matroska") as output:
            streams: dict[str, Any] = {}
            last: dict[str, int] = {}
            for index, segment in enumerate(segments):
                shift = round((segment.started_at - started_at).total_seconds() * 1000)
                with av.open(open_segment(segment), format="matroska") as source:
                    if not streams:
                        for stream in source.streams:
                            if stream.type in ("video", "audio"):
                                streams[stream.type] = output.add_stream_from_template(stream)
                                streams[stream.type].time_base = MS
                    for packet in _packets(source, segment.path):
                        stream = streams.get(packet.stream.type)
                        if stream is None or packet.pts is None:
                            continue
                        pts = shift + round(packet.pts * packet.time_base / MS)
                        pts = max(pts, last.get(packet.stream.type, -1))
                        last[packet.stream.type] = pts
                        packet.stream = stream
                        packet.pts = packet.dts = pts
                        packet.time_base = MS
                        output.mux(packet)
                        written += 1
                if progress is not None:
                    progress(index + 1, len(segments))
    except (av.FFmpegError, OSError) as err:
        raise BodycamError(f"remuxing to {out} failed: {err}") from None
    return written


def _packets(source: av.container.InputContainer, name: str) -> Iterator[av.Packet[Any]]:
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
