"""Video frames from RTP packets, released on the marker bit, in constant time per packet.

A video frame is the run of packets from the one after the previous frame's last packet to
the packet that carries the RTP marker bit (RFC 6184 §5.1 for H.264, RFC 7741 §4.1 for
VP8). `FrameAssembler` keeps the packets of frames not yet complete by sequence number and
a front: the first sequence number it has not received since the last frame it released.
A packet at the front moves it on; a frame is released as soon as the front passes its
marker, so a frame leaves with its last packet and not, as in aiortc's jitter buffer, when
the next frame's first packet comes (one frame of latency, and a scan of the whole buffer
for every packet: quadratic in a frame's packets, 0.1-0.3 s of the event loop for a 4 MB
frame). A sender that sets no marker bits still gets its frames out: a timestamp that
changes at the front ends the frame before it.

A gap at the front (a lost packet) holds what follows it until the packet comes (a NACK
retransmission) or `max_wait` seconds pass (1 s: a NACK's round trip on a poor 4G link,
with room; 0.25 s lost frames that came back, 200 ms each way with 200 ms of jitter), or
`max_packets` wait behind it; then the frame with the hole is dropped, counted, and
reported so the caller can ask for a keyframe (the frames after it reference what was
lost). A frame of more than `max_packets` packets (2048:
about 2.4 MB, several times a 4K keyframe) is dropped the same way: what is held is bounded.

Nothing here touches aiortc: tap.py feeds it from the RTP path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SEQ_MOD = 1 << 16


@dataclass(slots=True)
class Packet:
    """What the assembler keeps of an RTP packet: its frame's timestamp, bytes, marker, and
    the payload as sent (read only to find where a frame starts after a loss)."""

    timestamp: int
    data: bytes
    marker: bool
    payload: bytes


FrameOut = Callable[[bytes, int], None]  # (frame bytes, RTP timestamp)


class FrameAssembler:
    """Packets in (any order), complete frames out through `on_frame`, in order.

    `starts_frame(payload)` says whether a packet's RTP payload begins a frame (H.264: a
    single NAL unit, a STAP-A or the first fragment of an FU-A; VP8: the S bit with
    partition 0); it is asked where no marker says where a frame starts: at the stream's
    first packet, and after a hole. `dropped` counts frames given up on.
    """

    __slots__ = (
        "_front",
        "_max_packets",
        "_max_wait",
        "_on_frame",
        "_pending",
        "_stalled_since",
        "_start",
        "_starts_frame",
        "dropped",
    )

    def __init__(
        self,
        on_frame: FrameOut,
        starts_frame: Callable[[bytes], bool],
        max_wait: float = 1.0,
        max_packets: int = 2048,
    ) -> None:
        self._on_frame = on_frame
        self._starts_frame = starts_frame
        self._max_wait = max_wait
        self._max_packets = max_packets
        self._pending: dict[int, Packet] = {}
        self._start: int | None = None  # first packet of the next frame to release
        self._front = 0  # first sequence number from _start not received yet
        self._stalled_since: float | None = None
        self.dropped = 0

    def add(
        self, seq: int, timestamp: int, data: bytes, marker: bool, payload: bytes, now: float
    ) -> bool:
        """Take one packet (`data` depayloaded, `payload` as sent); True if a frame was
        given up on because of it (a keyframe is wanted)."""
        jumped = False
        if self._start is not None and (seq - self._start) % SEQ_MOD >= self._max_packets:
            if (self._start - seq) % SEQ_MOD <= self._max_packets:
                return False  # older than what was released: late or a duplicate
            else:  # far from anything held: the stream jumped
                jumped = bool(self._pending)
                self.dropped += jumped
                self._pending.clear()
                self._stalled_since = None
                self._start = None
        pending = self._pending
        if self._start is None:
            if not self._starts_frame(payload):
                # the middle of a frame we did not see begin, or one that came early
                if len(pending) < self._max_packets:
                    pending[seq] = Packet(timestamp, data, marker, payload)
                return jumped
            self._start = self._front = seq
            for held in [s for s in pending if (s - seq) % SEQ_MOD >= self._max_packets]:
                del pending[held]  # before the frame start: what we did not see begin
        pending[seq] = Packet(timestamp, data, marker, payload)
        if seq == self._front:
            self._advance()
            # the front moved: a hole that stops it now is a new one
            self._stalled_since = now if pending else None
        elif self._stalled_since is None:
            self._stalled_since = now
        elif now - self._stalled_since >= self._max_wait or len(pending) >= self._max_packets:
            self._skip_gap()
            return True
        return jumped

    def _advance(self) -> None:
        """Move the front over the packets received, releasing each frame it completes."""
        pending = self._pending
        front = self._front
        start = self._start
        assert start is not None
        while (packet := pending.get(front)) is not None:
            first = pending[start]
            if packet.timestamp != first.timestamp:  # the frame before ended without a marker
                self._release(start, front)
                start = front
            if packet.marker:
                front = (front + 1) % SEQ_MOD
                self._release(start, front)
                start = front
            else:
                front = (front + 1) % SEQ_MOD
        self._start, self._front = start, front

    def _release(self, start: int, end: int) -> None:
        """Hand over the frame made of packets start..end-1 (all present)."""
        pending = self._pending
        pieces = []
        seq = start
        timestamp = pending[start].timestamp
        while seq != end:
            pieces.append(pending.pop(seq).data)
            seq = (seq + 1) % SEQ_MOD
        self._on_frame(b"".join(pieces), timestamp)

    def _skip_gap(self) -> None:
        """Give up on the frame with the hole at the front and go on from the next one."""
        pending = self._pending
        start = self._start
        assert start is not None
        after = sorted(pending, key=lambda s: (s - start) % SEQ_MOD)
        hole = (self._front - start) % SEQ_MOD
        broken = pending[start].timestamp if start in pending else None
        for seq in after:
            offset = (seq - start) % SEQ_MOD
            if offset < hole:
                del pending[seq]  # the broken frame's beginning, before the hole
                continue
            packet = pending[seq]
            if packet.timestamp != broken and self._starts_frame(packet.payload):
                self._start = self._front = seq  # another frame, from its beginning
                break
            broken = packet.timestamp  # what follows the hole, of a frame begun in it
            del pending[seq]
            if packet.marker:
                self._start = self._front = (seq + 1) % SEQ_MOD
                break
        else:  # the broken frame may go on: wait for a packet that starts one
            self._start = None
        self.dropped += 1
        self._stalled_since = None
        if self._start is not None and self._front in pending:
            self._advance()


def h264_starts_frame(payload: bytes) -> bool:
    """An H.264 RTP payload that can begin an access unit (RFC 6184 §5.6-5.8)."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == 28:  # FU-A: its first fragment
        return len(payload) > 1 and bool(payload[1] & 0x80)
    return 1 <= nal_type <= 24  # a single NAL unit or a STAP-A


def vp8_starts_frame(payload: bytes) -> bool:
    """A VP8 RTP payload that begins a frame: S bit set, partition 0 (RFC 7741 §4.2)."""
    return bool(payload) and payload[0] & 0x17 == 0x10
