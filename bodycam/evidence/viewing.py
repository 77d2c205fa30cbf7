"""Viewing a recording in the console, which is not copying it (R241-12, R241-14).

A viewing is granted for a stated reason and a time range of one session; the grant is the
register entry (`recording_view`, with the range actually served). What the browser then
receives is the range cut into chunks of about `CHUNK_SECONDS`, each a small fragmented
container that a Media Source player appends and that is never offered as a download: no
response ever holds the whole recording, none carries `Content-Disposition: attachment`,
none may be cached. A copy only ever leaves as an export bundle, on requisition.

Nothing is decoded. A chunk is the packets of one window of a segment, copied from the
video keyframe at or before the window's start (a segment starts on a keyframe, so the
first window of each one is exact) to the window's end, their times shifted so that the
chunk starts at 0; the player places it at `Chunk.start`. H.264 goes out as fragmented
MP4 and VP8 as WebM: what Chromium's Media Source takes for each (it takes H.264 in
neither Matroska nor WebM). Opus goes with either.

The watermark: burning the viewer's name into the picture would mean decoding and
re-encoding every frame for every viewer. The console lays the viewer's name and the
time over the player instead (what the screen shows and a photograph of it keeps), and
each chunk's container names the viewer, the time and the viewing in its metadata.

A grant is a token signed with a key derived from the master key, so that every node of
a cluster honours it without a shared table: it names the session, the range, the person
and its end, and it is good only for the person it was given to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import math
import secrets
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import av

from ..clock import iso, parse_iso
from ..errors import BadRequest, BodycamError, Forbidden, NotFound, Unprocessable
from ..models import Segment, Session
from .recordings import playable

CHUNK_SECONDS = 10.0
GRANT_MINUTES = 60  # a viewing left open longer asks again (with its reason)
MS = Fraction(1, 1000)
MP4_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
MAX_TOKEN_CHARS = 1000
GRANT_PURPOSE = b"bodycam viewing grants"  # Keyring.derived: the key that signs grants


@dataclass(frozen=True)
class Chunk:
    """One window of a segment: `start` and `duration` in seconds from the viewing's
    start; `offset` and `until` in seconds from the segment's start."""

    index: int
    segment: Segment
    start: float
    duration: float
    offset: float
    until: float


@dataclass(frozen=True)
class Grant:
    """What a viewing token says (signed): who may watch which part of which session."""

    viewing: str  # a short random id, in the register entry and each chunk's metadata
    session_id: str
    user: str
    since: str  # ISO 8601: the range served, as registered
    until: str
    expires: str

    def token(self, key: bytes) -> str:
        payload = _b64(json.dumps(asdict(self), separators=(",", ":")).encode())
        return f"{payload}.{_b64(_mac(key, payload))}"

    @classmethod
    def of_token(cls, token: str, key: bytes, user: str, now: datetime) -> Grant:
        """The grant a token holds, if it is ours, still valid and given to `user`."""
        payload, _, mac = token.partition(".")
        if len(token) > MAX_TOKEN_CHARS or not hmac.compare_digest(_b64(_mac(key, payload)), mac):
            raise NotFound("no such viewing (its link is not one this gateway gave)")
        grant = cls(**json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
        if grant.user != user:
            raise Forbidden("this viewing was granted to someone else: ask for your own")
        if parse_iso(grant.expires) <= now:
            raise Forbidden("this viewing has ended: ask again, with its reason")
        return grant


def new_viewing_id() -> str:
    return secrets.token_urlsafe(9)


def grant_range(
    session: Session, segments: list[Segment], since: datetime | None, until: datetime | None
) -> tuple[list[Chunk], datetime, datetime]:
    """The chunks of a session between `since` and `until` (None: its start or end), and
    the range they cover: the start moves back to the window it falls in."""
    start = since or session.started_at
    end = until or session.ended_at or datetime.max.replace(tzinfo=start.tzinfo)
    if since is not None and until is not None and until <= since:
        raise BadRequest(f"to ({iso(until)}) must come after from ({iso(since)})")
    windows: list[tuple[Segment, float, float, float]] = []  # segment, offset, until, length
    for segment in playable(segments):
        length = ((segment.ended_at or segment.started_at) - segment.started_at).total_seconds()
        count = max(1, math.ceil(length / CHUNK_SECONDS - 0.05))
        for k in range(count):
            offset = k * CHUNK_SECONDS
            upto = length if k == count - 1 else offset + CHUNK_SECONDS
            cut_at = min(upto, (end - segment.started_at).total_seconds())
            if cut_at <= offset or (segment.started_at - start).total_seconds() + upto <= 0:
                continue
            windows.append((segment, offset, cut_at, cut_at - offset))
    if not windows:
        kept = playable(segments)
        runs = (
            f"it was recorded from {iso(kept[0].started_at)} to"
            f" {iso(kept[-1].ended_at or kept[-1].started_at)}"
            if kept
            else "it holds no media"
        )
        raise Unprocessable(
            f"session {session.id} has no recorded media in the range asked for ({runs})"
        )
    first = windows[0][0].started_at + timedelta(seconds=windows[0][1])
    chunks = []
    for i, (segment, offset, cut_at, length) in enumerate(windows):
        at = segment.started_at + timedelta(seconds=offset)
        # a segment's last frame is at its very end: a window that reaches it keeps it
        whole = (
            cut_at
            >= ((segment.ended_at or segment.started_at) - segment.started_at).total_seconds()
        )
        limit = cut_at + 0.5 if whole else cut_at
        chunks.append(Chunk(i, segment, (at - first).total_seconds(), length, offset, limit))
    last = windows[-1]
    served_until = last[0].started_at + timedelta(seconds=last[2])
    return chunks, first, served_until


def mime_type(segment: Segment, audio: bool) -> str:
    """The Media Source type of a session's chunks (one per session: MSE wants one)."""
    opus = ", opus" if audio else ""
    if segment.video_codec.lower() == "h264":
        return f'video/mp4; codecs="avc1.{AVC_PROFILE}{opus}"'
    return f'video/webm; codecs="vp8{opus}"'


# The catalogue does not keep the SPS; Constrained Baseline 3.1 is what WebRTC cameras send,
# and Chromium decodes any profile it supports whatever the string says.
AVC_PROFILE = "42e01f"


def cut(
    chunk: Chunk,
    open_segment: Callable[[Segment], Any],
    metadata: dict[str, str],
) -> tuple[bytes, bool]:
    """One chunk's container bytes (and whether it holds audio); off the event loop."""
    h264 = chunk.segment.video_codec.lower() == "h264"
    out = io.BytesIO()
    try:
        with av.open(open_segment(chunk.segment), format="matroska") as source:
            inputs = {s.type: s for s in source.streams if s.type in ("video", "audio")}
            if "video" not in inputs:
                raise Unprocessable(f"segment {chunk.segment.path} holds no video")
            packets = _window(source, chunk)
            base = _ms(packets[0]) if packets else 0
            with av.open(
                out,
                "w",
                format="mp4" if h264 else "webm",
                options=MP4_OPTIONS if h264 else {},
            ) as output:
                output.metadata.update(metadata)
                streams = {}
                for kind, stream in inputs.items():
                    streams[kind] = output.add_stream_from_template(stream)
                    streams[kind].time_base = MS
                last = dict.fromkeys(streams, -1)
                for packet in packets:
                    kind = packet.stream.type
                    # MP4 wants strictly increasing times per stream
                    pts = max(_ms(packet) - base, last[kind] + 1)
                    last[kind] = pts
                    packet.stream = streams[kind]
                    packet.pts = packet.dts = pts
                    packet.time_base = MS
                    output.mux(packet)
    except (av.FFmpegError, OSError) as err:
        raise BodycamError(f"segment {chunk.segment.path}: cannot be read: {err}") from None
    return out.getvalue(), "audio" in inputs


def _window(source: Any, chunk: Chunk) -> list[Any]:
    """The packets from the last video keyframe at or before the window's start to the
    window's end (times in ms from the segment's start)."""
    start_ms, end_ms = round(chunk.offset * 1000), round(chunk.until * 1000)
    gop: list[Any] = []  # from the last keyframe seen, while the window has not begun
    kept: list[Any] | None = None
    for packet in _demuxed(source):
        if packet.pts is None or not packet.size:
            continue
        at, video = _ms(packet), packet.stream.type == "video"
        if kept is None and at > start_ms and gop:
            kept = gop  # the window has begun: it starts at that keyframe
        if kept is not None:
            if at >= end_ms:
                if video:
                    break
                continue
            kept.append(packet)
        elif video and packet.is_keyframe:
            gop = [packet]
        elif gop:
            gop.append(packet)
    return gop if kept is None else kept


def _ms(packet: Any) -> int:
    return round(packet.pts * packet.time_base / MS)  # type: ignore[no-any-return]


def _demuxed(source: Any) -> Iterator[Any]:
    demux = source.demux()
    while True:
        try:
            yield next(demux)
        except StopIteration:
            return
        except av.FFmpegError:
            return  # a segment cut by a crash ends early


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, payload.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
