"""One connection's media timeline: RTP timestamps to gateway wall-clock time.

Audio and video arrive on separate RTP streams whose timestamps start at random values
and tick at different rates; the jitter buffers delay them differently (about one frame
for video, four for audio). The only standard link between them is the RTCP sender report
(RFC 3550 section 6.4.1): a pair (sender NTP time, RTP timestamp) per stream, from one
sender clock. So a frame's capture time on the sender's clock is
``sr_ntp + (rtp - sr_rtp) / rate``, the same clock for both streams, and aligning them is
exact whatever the buffering.

The sender's clock is not the gateway's (a camera's clock may be off by minutes), so the
gateway keeps one offset per connection: the smallest (arrival - sender time) seen over
the frames held until the reports came, i.e. the transit time of the fastest frame. Segment
times are thus the gateway's own clock, and audio and video keep the sender's alignment.

Frames are held until each stream has had its first report (an aiortc sender sends one
within 1.5 s, a browser sooner). A stream that still has none after `wait` seconds falls
back to arrival times for the rest of the connection (alignment then depends on the
jitter buffers, and a warning says so).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .tap import EncodedFrame

logger = logging.getLogger(__name__)

# The mapping follows the smallest (NTP - RTP time) of the last REPORT_WINDOW reports, and
# moves only when that disagrees with it by more than REANCHOR_SECONDS: a late report (a
# busy sender; aiortc stamps reports with its last packet's send time) changes nothing, a
# real drift of the sender's clock is followed within a window.
REANCHOR_SECONDS = 0.020
REPORT_WINDOW = 8
MIN_STEP_SECONDS = 0.0005


@dataclass
class _StreamClock:
    rate: int
    sr_ntp: float | None = None
    sr_rtp: int | None = None
    last_rtp: int | None = None
    last_wall: float = float("-inf")
    fallback_anchor: tuple[float, int] | None = None  # (arrival, rtp)
    # Recent (report NTP - report RTP time): a report sent late (a busy sender) makes it
    # larger, never smaller, so the smallest of the recent ones is the truest.
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=REPORT_WINDOW))

    def unwrap(self, rtp32: int) -> int:
        """Extend a 32-bit report timestamp to the 64-bit time of this stream's frames."""
        if self.last_rtp is None:
            return rtp32
        base = self.last_rtp - (self.last_rtp & 0xFFFFFFFF)
        candidates = (base - (1 << 32) + rtp32, base + rtp32, base + (1 << 32) + rtp32)
        return min(candidates, key=lambda c: abs(c - self.last_rtp))  # type: ignore[operator]

    def sender_time(self, rtp: int) -> float | None:
        if self.sr_ntp is None or self.sr_rtp is None:
            return None
        return self.sr_ntp + (rtp - self.sr_rtp) / self.rate


class Timeline:
    """Stamps frames of one connection with gateway wall-clock time (see module doc)."""

    def __init__(
        self,
        kinds: set[str],
        wait: float,
        label: str = "",
        on_transit: Callable[[float], None] | None = None,
    ) -> None:
        self._kinds = set(kinds)
        self._wait = wait
        self._label = label
        self._streams: dict[str, _StreamClock] = {}
        self._held: list[EncodedFrame] = []
        self._first_arrival: float | None = None
        self._offset: float | None = None
        self._fallback: set[str] = set()
        # arrival - sender time of each video frame: glass-to-gateway delay when the sender's
        # clock is the gateway's (same host, or NTP-synchronised), as in bench/ingest.py
        self._on_transit = on_transit

    @property
    def aligned_by_reports(self) -> bool:
        return self._offset is not None and not self._fallback

    def on_sender_report(self, kind: str, ntp: float, rtp32: int) -> None:
        stream = self._streams.get(kind)
        if stream is None:
            return  # no frame yet: its clock rate is unknown, the next report will do
        rtp = stream.unwrap(rtp32)
        stream.recent.append(ntp - rtp / stream.rate)
        best = min(stream.recent)
        if stream.sr_ntp is None or stream.sr_rtp is None:
            stream.sr_ntp, stream.sr_rtp = best + rtp / stream.rate, rtp
            return
        current = stream.sr_ntp - stream.sr_rtp / stream.rate
        if abs(best - current) > REANCHOR_SECONDS:
            logger.info(
                "%s: %s sender clock re-anchored by %+.3f s", self._label, kind, best - current
            )
            stream.sr_ntp, stream.sr_rtp = best + rtp / stream.rate, rtp

    def stamp(self, frame: EncodedFrame) -> list[EncodedFrame]:
        """Take a frame; return the frames now stamped (`wall` set), in arrival order."""
        stream = self._streams.get(frame.kind)
        if stream is None:
            stream = self._streams[frame.kind] = _StreamClock(frame.clock_rate)
        stream.last_rtp = frame.rtp_time
        if self._first_arrival is None:
            self._first_arrival = frame.arrival

        if self._offset is None:
            self._held.append(frame)
            if self._reports_complete():
                return self._release_with_reports()
            if frame.arrival - self._first_arrival >= self._wait:
                return self._release_with_fallback()
            return []
        self._stamp_one(frame)
        return [frame]

    def flush(self) -> list[EncodedFrame]:
        """Stamp whatever is still held (the connection is ending)."""
        if self._offset is None and self._held:
            return self._release_with_fallback(waited=False)
        return []

    def _reports_complete(self) -> bool:
        return all(
            kind in self._streams and self._streams[kind].sr_ntp is not None for kind in self._kinds
        )

    def _release_with_reports(self) -> list[EncodedFrame]:
        times = [self._streams[f.kind].sender_time(f.rtp_time) for f in self._held]
        self._offset = min(
            f.arrival - t for f, t in zip(self._held, times, strict=True) if t is not None
        )
        return self._release()

    def _release_with_fallback(self, waited: bool = True) -> list[EncodedFrame]:
        missing = sorted(k for k in self._streams if self._streams[k].sr_ntp is None)
        if missing and waited:
            logger.warning(
                "%s: no RTCP sender report for %s after %.1f s: aligned by arrival time",
                self._label,
                " and ".join(missing),
                self._wait,
            )
        self._fallback.update(missing)
        have = [f for f in self._held if f.kind not in self._fallback]
        if have:
            self._offset = min(
                f.arrival - self._streams[f.kind].sender_time(f.rtp_time)  # type: ignore[operator]
                for f in have
            )
        else:
            self._offset = 0.0
        return self._release()

    def _release(self) -> list[EncodedFrame]:
        held, self._held = self._held, []
        for frame in held:
            self._stamp_one(frame)
        return held

    def _stamp_one(self, frame: EncodedFrame) -> None:
        stream = self._streams[frame.kind]
        if frame.kind in self._fallback or stream.sr_ntp is None:
            if stream.fallback_anchor is None:
                stream.fallback_anchor = (frame.arrival, frame.rtp_time)
                self._fallback.add(frame.kind)
            arrival, rtp = stream.fallback_anchor
            frame.wall = max(
                arrival + (frame.rtp_time - rtp) / stream.rate, stream.last_wall + MIN_STEP_SECONDS
            )
            stream.last_wall = frame.wall
            return
        sender = stream.sender_time(frame.rtp_time)
        assert sender is not None
        assert self._offset is not None
        # A re-anchor must never reorder a stream's frames: decoders need them in order.
        frame.wall = max(sender + self._offset, stream.last_wall + MIN_STEP_SECONDS)
        stream.last_wall = frame.wall
        if frame.kind == "video" and self._on_transit is not None:
            self._on_transit(frame.arrival - sender)
