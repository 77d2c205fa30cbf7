"""Passthrough segmented recording: encoded frames remuxed into Matroska, never decoded.

A session's recording is a sequence of segments. Each starts on a video keyframe (the
recorder sends a PLI when it needs one) and a new one starts every `segment_seconds`, and
whenever the picture size changes. Matroska takes H.264, VP8 and Opus alike; its clusters
are flushed every half second (`cluster_time_limit`, `flush_packets`), so after a `kill -9`
all but the last second or so of the open segment is on disk and playable. A closed segment
is fsynced, hashed (SHA-256) and chained to the previous one in the catalogue.

Segments are encrypted as they are written (`bodycam.sealed`): libav writes each cluster
through a non-seekable file object that seals it as one AES-256-GCM chunk under the
session's key. Non-seekable, the Matroska muxer never goes back to patch sizes or write
cues, which is what lets every chunk be final the moment it is written. The hash is over
the plaintext, the Matroska bytes themselves, so it still identifies the recording after
export; the chunks' own tags protect the ciphertext at rest.

Work is split between the event loop (stamping, ordering, deciding where segments start:
a few dict and heap operations per frame) and one writer thread per session (muxing, file
I/O, fsync, hashing, catalogue writes), fed by a bounded queue: a slow disk drops frames
(counted) rather than stall the loop or grow memory without end.
"""

from __future__ import annotations

import asyncio
import heapq
import io
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import av

from ..clock import utc_from_timestamp
from ..config import RecordingConfig
from ..evidence import sealed
from ..evidence.keyring import chunk_label
from ..logs import bind
from ..metrics import Metrics
from ..store import Store, StoreUnavailable
from .bitstream import OPUS_HEAD, KeyframeInfo, h264_keyframe_info, vp8_keyframe_info
from .disk import FreeSpace
from .tap import EncodedFrame
from .timeline import Timeline

logger = logging.getLogger(__name__)

T = TypeVar("T")
MS = Fraction(1, 1000)
# Frames are released to the segment logic in wall-clock order once this much newer media
# has arrived: audio leaves aiortc's jitter buffer about 80 ms after video of the same time.
REORDER_SECONDS = 0.25
WRITER_QUEUE_FRAMES = 2000  # about 25 s of 30 fps video with its audio
# The writer thread sleeps this long after each batch it wrote: woken once a frame, it cost
# the event loop a GIL hand-over per frame (a fifth of the gateway's CPU at 16 streams);
# woken once a batch, it writes several frames for one. Bounds nothing a crash loses more
# than the muxer's own clusters (500 ms) do.
WRITER_BATCH_SECONDS = 0.05
CONTAINER_OPTIONS = {
    "cluster_time_limit": "500",  # ms: bounds what a crash can lose
    "flush_packets": "1",  # hand each packet to the OS at once
    "max_interleave_delta": "500000",  # us: never hold one stream for a silent other
}
BEHIND_LOG_SECONDS = 10.0
# The catalogue's server away (PostgreSQL restarting): the writer thread waits for it this
# long, retrying, while frames wait in its queue (WRITER_QUEUE_FRAMES, about 25 s), rather
# than lose the segment.
STORE_RETRY_SECONDS = 20.0


def keyframe_info(codec: str, data: bytes) -> KeyframeInfo | None:
    """Size and codec headers of a video keyframe, from its bitstream headers."""
    try:
        if codec.lower() == "h264":
            return h264_keyframe_info(data)
        return vp8_keyframe_info(data)
    except ValueError as err:
        logger.warning("unreadable %s keyframe header: %s", codec, err)
        return None


def _template(encoder: str) -> Any:
    """A stream to copy codec parameters from, in a container that is never written."""
    with av.open(io.BytesIO(), "w", format="matroska") as scratch:
        return scratch.add_stream(encoder)


class SegmentWriter:
    """One encrypted Matroska file being written; used only on the recorder's writer thread."""

    def __init__(
        self,
        path: Path,
        video_codec: str,
        info: KeyframeInfo,
        audio: bool,
        key: bytes,
        label: str,
    ) -> None:
        self.path = path
        self.sink = sealed.SealedWriter(path, key, label)
        self.container = av.open(
            self.sink, "w", format="matroska", container_options=CONTAINER_OPTIONS
        )
        self.streams: dict[str, Any] = {}
        video: Any
        if video_codec.lower() == "h264":
            # A mux-only stream cannot carry extradata; a stream made from a template (a
            # never-opened encoder context) can, and the muxer turns the Annex B SPS/PPS
            # into the avcC that Matroska wants. The encoder itself is never opened.
            video = self.container.add_stream_from_template(_template("libx264"))
            video.codec_context.extradata = info.extradata
            video.codec_context.width, video.codec_context.height = info.width, info.height
        else:
            video = self.container.add_mux_stream("vp8", width=info.width, height=info.height)
        video.time_base = MS
        self.streams["video"] = video
        if audio:
            sound: Any = self.container.add_stream_from_template(_template("libopus"))
            sound.codec_context.extradata = OPUS_HEAD
            sound.time_base = MS
            self.streams["audio"] = sound
        self.last_pts = dict.fromkeys(self.streams, -1)

    def write(self, kind: str, data: bytes, pts: int, keyframe: bool) -> None:
        stream = self.streams.get(kind)
        if stream is None:
            return
        pts = max(pts, self.last_pts[kind])  # Matroska wants non-decreasing times
        self.last_pts[kind] = pts
        packet = av.Packet(data)
        packet.stream = stream
        packet.pts = packet.dts = pts
        packet.time_base = MS
        packet.is_keyframe = keyframe
        self.container.mux_one(packet)

    def close(self) -> tuple[int, str]:
        """Finish the file, fsync it, and return (plaintext bytes, their sha256)."""
        self.container.close()
        return self.sink.close()


class SessionRecorder:
    """Records one session, across its connections, into sealed segments."""

    def __init__(
        self,
        session_id: str,
        recordings_dir: Path,
        catalogue: Catalogue,
        config: RecordingConfig,
        metrics: Metrics,
        monotonic: Callable[[], float],
        key: bytes,
        node: str = "",
        disk: FreeSpace | None = None,
    ) -> None:
        self.session_id = session_id
        self._disk = disk  # under its free-space floor, no segment opens (media/disk.py)
        self.node = node  # the gateway process writing: recovery seals its files if it dies
        self._log = bind(logger, session_id=session_id)
        self._key = key
        self.directory = recordings_dir / session_id
        self._recordings_dir = recordings_dir
        self._writes = catalogue
        self._config = config
        self._metrics = metrics
        self._monotonic = monotonic
        self._timeline: Timeline | None = None
        self._kinds: set[str] = set()
        self._video_codec = ""
        self._request_keyframe: Callable[[], None] = _nothing
        self._heap: list[tuple[float, int, EncodedFrame]] = []
        self._order = itertools.count()
        self._newest = 0.0
        self._segment_start: float | None = None
        self._segment_size: tuple[int, int] | None = None
        self._last_info: KeyframeInfo | None = None
        self._last_wall = 0.0
        self._last_pli = float("-inf")
        self._last_behind_log = float("-inf")
        # SimpleQueue: a C queue without the Condition of queue.Queue, for one put per frame.
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._writer, name=f"rec-{session_id[:8]}", daemon=True
        )
        self._thread.start()
        self.sealed: list[tuple[int, str]] = []  # (segment id, sha256), for callers and tests

    # event loop side

    def start_connection(
        self,
        kinds: set[str],
        video_codec: str,
        request_keyframe: Callable[[], None],
        parameter_sets: bytes = b"",
    ) -> Timeline:
        """A (re)connection begins; its frames start a new segment at their first keyframe.

        `parameter_sets`: H.264 SPS and PPS (Annex B) given out of band, in the offer's
        sprop-parameter-sets, for cameras that do not repeat them before each keyframe.
        """
        self.end_connection()
        self._kinds = set(kinds)
        self._video_codec = video_codec
        self._request_keyframe = request_keyframe
        self._last_info = keyframe_info(video_codec, parameter_sets) if parameter_sets else None
        self._timeline = Timeline(
            kinds,
            self._config.sender_report_wait_seconds,
            label=f"session {self.session_id}",
            on_transit=self._metrics.frame_delay.observe,
        )
        return self._timeline

    def push(self, frame: EncodedFrame) -> None:
        """Take a frame of the current connection (called for every frame: keep it small)."""
        if self._timeline is None:
            return
        for stamped in self._timeline.stamp(frame):
            heapq.heappush(self._heap, (stamped.wall, next(self._order), stamped))
            if stamped.wall > self._newest:
                self._newest = stamped.wall
        horizon = self._newest - REORDER_SECONDS
        while self._heap and self._heap[0][0] <= horizon:
            self._route(heapq.heappop(self._heap)[2])

    def end_connection(self) -> None:
        """The connection is gone: write what is held and close the open segment."""
        if self._timeline is not None:
            for stamped in self._timeline.flush():
                heapq.heappush(self._heap, (stamped.wall, next(self._order), stamped))
            self._timeline = None
        while self._heap:
            self._route(heapq.heappop(self._heap)[2])
        self._close_segment(self._last_wall)
        self._request_keyframe = _nothing

    async def close(self) -> None:
        """End the recording: every segment sealed in the catalogue when this returns."""
        self.end_connection()
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    def _route(self, frame: EncodedFrame) -> None:
        if self._disk is not None and self._disk.full:
            # what is written stays as it is: the open segment is sealed, and the next one
            # opens at the first keyframe once the space is back
            self._close_segment(self._last_wall)
            self._metrics.frames_dropped.labels("disk_full").inc()
            return
        if frame.kind == "video":
            info = None
            if frame.keyframe:
                # An IDR without SPS/PPS in band keeps the last ones (or the offer's).
                info = keyframe_info(frame.codec, frame.data) or self._last_info
                self._last_info = info
            if self._segment_start is None:
                if info is None:
                    self._metrics.frames_dropped.labels("before_keyframe").inc()
                    self._ask_keyframe()
                    return
                self._open_segment(frame.wall, info)
            else:
                age = frame.wall - self._segment_start
                if info is not None and (
                    age >= self._config.segment_seconds
                    or (info.width, info.height) != self._segment_size
                ):
                    self._close_segment(frame.wall)
                    self._open_segment(frame.wall, info)
                elif age >= self._config.segment_seconds:
                    self._ask_keyframe()
        elif self._segment_start is None:
            self._metrics.frames_dropped.labels("before_keyframe").inc()
            return
        assert self._segment_start is not None
        pts = max(0, round((frame.wall - self._segment_start) * 1000))
        self._last_wall = frame.wall
        self._put(("frame", frame.kind, frame.data, pts, frame.keyframe))

    def _ask_keyframe(self) -> None:
        now = self._monotonic()
        if now - self._last_pli >= self._config.keyframe_request_seconds:
            self._last_pli = now
            self._metrics.keyframe_requests.inc()
            self._request_keyframe()

    def _open_segment(self, wall: float, info: KeyframeInfo) -> None:
        self._segment_start = wall
        self._segment_size = (info.width, info.height)
        self._put(("open", wall, self._video_codec, info, "audio" in self._kinds), force=True)

    def _close_segment(self, wall: float) -> None:
        if self._segment_start is not None:
            self._put(("close", max(wall, self._segment_start)), force=True)
            self._segment_start = None
            self._segment_size = None

    def _put(self, item: tuple[Any, ...], force: bool = False) -> None:
        # open/close are rare and must not be lost; frames give way when the disk lags
        if not force and self._queue.qsize() >= WRITER_QUEUE_FRAMES:
            self._metrics.frames_dropped.labels("writer_behind").inc()
            now = self._monotonic()
            if now - self._last_behind_log >= BEHIND_LOG_SECONDS:
                self._last_behind_log = now
                self._log.warning(
                    "session %s: recording is behind, frames dropped", self.session_id
                )
            return
        self._queue.put(item)

    # writer thread side

    def _items(self) -> Iterator[tuple[Any, ...]]:
        """The queue's items until the None that ends it, a batch at a time: after the
        items that were waiting, the thread sleeps WRITER_BATCH_SECONDS and lets frames
        gather, rather than wake for each one."""
        while True:
            item = self._queue.get()
            while item is not None:
                yield item
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            else:
                return
            time.sleep(WRITER_BATCH_SECONDS)

    def _writer(self) -> None:
        """The writer thread: ("open", …), ("frame", …) and ("close", …) items in order."""
        writer: SegmentWriter | None = None
        segment_id = 0
        written = {"video": 0, "audio": 0}  # published per segment: no lock per frame
        refused = False  # the file system refused a write to this segment
        for item in self._items():
            try:
                match item:
                    case ("frame", *frame):
                        refused = self._write_frame(writer, refused, tuple(frame), written)
                    case ("open", wall, codec, info, audio):
                        refused = False
                        if writer is not None:  # a close that failed: seal what we can
                            self._seal(writer, segment_id, None)
                        writer = None
                        writer, segment_id = self._open_file(wall, codec, info, audio)
                    case ("close", wall) if writer is not None:
                        closing, writer = writer, None
                        self._seal(closing, segment_id, wall)
                        self._publish(written)
            except OSError as err:  # a full or failing disk: said once per segment
                self._metrics.recording_errors.inc()
                self._log.error(
                    "session %s: recording failed on %s (%s): %s",
                    self.session_id,
                    item[0],
                    writer.path if writer else "no open segment",
                    err,
                )
                writer = None
            except Exception:  # noqa: BLE001 logged: the thread must outlive any failure
                # Whatever failed (disk, codec, catalogue), the thread goes on: the next
                # segment starts afresh, and recovery seals a segment left open.
                self._metrics.recording_errors.inc()
                self._log.exception(
                    "session %s: recording failed on %s (%s)",
                    self.session_id,
                    item[0],
                    writer.path if writer else "no open segment",
                )
                if item[0] != "frame":
                    writer = None
        if writer is not None:
            try:
                self._seal(writer, segment_id, None)
            except Exception:  # noqa: BLE001 logged: the session's end must go on
                self._metrics.recording_errors.inc()
                self._log.exception("session %s: last segment not sealed", self.session_id)
        self._publish(written)

    def _write_frame(
        self,
        writer: SegmentWriter | None,
        refused: bool,
        frame: tuple[Any, ...],
        written: dict[str, int],
    ) -> bool:
        """Write (kind, data, pts, keyframe) unless the file system already refused a write
        to this segment; returns whether it has. Logged once per segment (a full disk
        refuses every frame), the frames it drops are counted."""
        if writer is None:  # its file could not be opened: the disk refused it
            self._metrics.frames_dropped.labels("write_failed").inc()
            return refused
        if not refused:
            try:
                writer.write(*frame)
            except (OSError, av.FFmpegError) as err:
                self._metrics.recording_errors.inc()
                self._log.error(
                    "session %s: %s refused a write (%s): frames dropped until the next segment",
                    self.session_id,
                    writer.path,
                    err,
                )
            else:
                written[frame[0]] += 1
                return False
        self._metrics.frames_dropped.labels("write_failed").inc()
        return True

    def _catalogue(self, fn: Callable[..., T], *args: Any) -> T:
        """A catalogue write, retried while the store's server cannot be reached (on the
        writer thread: the event loop is not held)."""
        deadline, wait = time.monotonic() + STORE_RETRY_SECONDS, 0.2
        while True:
            try:
                return fn(*args)
            except StoreUnavailable as err:
                if time.monotonic() + wait > deadline:
                    raise
                self._log.warning(
                    "session %s: catalogue unreachable, retrying in %.1f s: %s",
                    self.session_id,
                    wait,
                    err,
                )
                time.sleep(wait)
                wait = min(wait * 2, 2.0)

    def _publish(self, written: dict[str, int]) -> None:
        for kind, count in written.items():
            if count:
                self._metrics.frames_recorded.labels(kind).inc(count)
                written[kind] = 0

    def _open_file(
        self, wall: float, codec: str, info: KeyframeInfo, audio: bool
    ) -> tuple[SegmentWriter, int]:
        self.directory.mkdir(parents=True, exist_ok=True)
        start = utc_from_timestamp(wall)
        stamp = start.strftime("%Y%m%dT%H%M%S%fZ")
        # The catalogue row comes first: a crash after it leaves a row recovery can seal.
        segment_id, seq = self._catalogue(
            self._writes.open_segment,
            self.session_id,
            start,
            codec,
            info.width,
            info.height,
            stamp,
            self.node,
        )
        path = self._recordings_dir / segment_path(self.session_id, stamp, seq)
        self._log.info(
            "session %s: segment %d started (%s %dx%d)",
            self.session_id,
            seq,
            codec,
            info.width,
            info.height,
        )
        label = chunk_label(self.session_id, seq)
        return SegmentWriter(path, codec, info, audio, self._key, label), segment_id

    def _seal(self, writer: SegmentWriter, segment_id: int, wall: float | None) -> None:
        size, digest = writer.close()
        end = utc_from_timestamp(wall if wall is not None else self._last_wall)
        self._catalogue(self._writes.close_segment, segment_id, end, size, digest)
        self._metrics.segments.inc()
        self._metrics.bytes_recorded.inc(size)
        self.sealed.append((segment_id, digest))
        self._log.info(
            "session %s: segment %s sealed (%d bytes, sha256 %s)",
            self.session_id,
            writer.path.name,
            size,
            digest,
        )


def _nothing() -> None:
    return None


def segment_path(session_id: str, stamp: str, seq: int) -> str:
    """A segment's file, relative to the recordings directory."""
    return f"{session_id}/{seq:05d}-{stamp}.mkv"


class Catalogue(Protocol):
    """The two catalogue writes a recorder makes, called from its writer thread (blocking):
    the store itself (`StoreCatalogue`), or a media worker's pipe to the main process."""

    def open_segment(
        self,
        session_id: str,
        started_at: datetime,
        video_codec: str,
        width: int,
        height: int,
        stamp: str,
        node: str,
    ) -> tuple[int, int]:
        """The segment's row, before its file: (segment id, sequence number). Its file is
        `segment_path(session_id, stamp, seq)`."""

    def close_segment(self, segment_id: int, ended_at: datetime, size: int, sha256: str) -> None:
        """The segment sealed: its size and hash."""


class StoreCatalogue:
    """The catalogue as the store's own queries, reached with `store.call`."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def open_segment(
        self,
        session_id: str,
        started_at: datetime,
        video_codec: str,
        width: int,
        height: int,
        stamp: str,
        node: str,
    ) -> tuple[int, int]:
        store, path_for = self._store, partial(segment_path, session_id, stamp)
        return store.call(
            store.open_segment, session_id, started_at, video_codec, width, height, path_for, node
        )

    def close_segment(self, segment_id: int, ended_at: datetime, size: int, sha256: str) -> None:
        self._store.call(self._store.close_segment, segment_id, ended_at, size, sha256)
