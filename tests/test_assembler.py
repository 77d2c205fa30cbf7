"""The lean path's frame assembler: frames out on the marker bit, whole or not at all."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from bodycam.media.assembler import FrameAssembler, h264_starts_frame, vp8_starts_frame

# a packet as the tests write it: (seq, timestamp, data, marker); data's first byte says
# whether it starts a frame (S) or continues one (C), as a codec's payload would
Packet = tuple[int, int, bytes, bool]


def frames_of(sizes: list[int], first_seq: int = 0, marker: bool = True) -> list[list[Packet]]:
    """Frames of the given packet counts, numbered on from `first_seq` (wrapping at 2**16)."""
    frames, seq = [], first_seq
    for index, size in enumerate(sizes):
        packets = []
        for part in range(size):
            data = (b"S" if part == 0 else b"C") + f"{index}.{part};".encode()
            packets.append((seq % 65536, 3000 * index, data, marker and part == size - 1))
            seq += 1
        frames.append(packets)
    return frames


class Collector:
    def __init__(self, max_wait: float = 0.25, max_packets: int = 2048) -> None:
        self.out: list[tuple[bytes, int]] = []
        self.keyframe_wanted = 0
        self.assembler = FrameAssembler(
            lambda data, ts: self.out.append((data, ts)),
            lambda payload: payload[:1] == b"S",
            max_wait=max_wait,
            max_packets=max_packets,
        )

    def feed(self, packets: list[Packet], now: float = 0.0) -> None:
        for seq, ts, data, marker in packets:
            if self.assembler.add(seq, ts, data, marker, data, now):
                self.keyframe_wanted += 1


def whole(frame: list[Packet]) -> tuple[bytes, int]:
    return b"".join(p[2] for p in frame), frame[0][1]


def test_a_frame_leaves_with_its_marked_packet_not_with_the_next_frame() -> None:
    [first, second] = frames_of([3, 2])
    c = Collector()
    c.feed(first)
    assert c.out == [whole(first)]  # nothing of the second frame was needed
    c.feed(second)
    assert c.out == [whole(first), whole(second)]


def test_packets_out_of_order_within_and_across_frames() -> None:
    frames = frames_of([4, 1, 3])
    packets = [p for f in frames for p in f]
    shuffled = [packets[i] for i in (1, 0, 3, 5, 2, 4, 7, 6)]
    c = Collector()
    c.feed(shuffled)
    assert c.out == [whole(f) for f in frames]


def test_without_marker_bits_a_new_timestamp_ends_the_frame() -> None:
    frames = frames_of([2, 3, 1], marker=False)
    c = Collector()
    c.feed([p for f in frames for p in f])
    assert c.out == [whole(frames[0]), whole(frames[1])]  # the last one has no end yet


def test_a_lost_packet_drops_its_frame_only_and_wants_a_keyframe() -> None:
    frames = frames_of([3, 3, 2])
    c = Collector(max_wait=0.25)
    c.feed(frames[0])
    c.feed([frames[1][0], frames[1][2]], now=1.0)  # the middle packet is lost
    c.feed(frames[2][:1], now=1.1)
    assert c.out == [whole(frames[0])]  # the later frame waits behind the hole
    c.feed(frames[2][1:], now=1.3)  # max_wait after the hole was seen
    assert c.out == [whole(frames[0]), whole(frames[2])]
    assert c.assembler.dropped == 1
    assert c.keyframe_wanted == 1


def test_a_retransmission_in_time_fills_the_hole() -> None:
    frames = frames_of([3, 3, 2])
    c = Collector(max_wait=0.25)
    c.feed(frames[0] + [frames[1][0], frames[1][2]] + frames[2], now=1.0)
    c.feed([frames[1][1]], now=1.2)  # the NACKed packet comes back
    assert c.out == [whole(f) for f in frames]
    assert c.assembler.dropped == 0
    assert c.keyframe_wanted == 0


def test_a_lost_marked_packet_drops_that_frame_and_keeps_the_next() -> None:
    frames = frames_of([2, 2, 2])
    c = Collector(max_wait=0.1)
    c.feed(frames[0] + frames[1][:1], now=0.0)
    c.feed(frames[2], now=0.05)
    c.feed([], now=0.2)
    assert c.out == [whole(frames[0])]
    late = frames_of([1], first_seq=6)[0]  # another frame, after the wait
    c.feed([(late[0][0], 9000, late[0][2], True)], now=0.2)
    assert c.out == [whole(frames[0]), whole(frames[2]), (late[0][2], 9000)]


def test_a_stream_joined_in_the_middle_of_a_frame_starts_at_the_next() -> None:
    frames = frames_of([3, 2])
    c = Collector()
    c.feed(frames[0][1:] + frames[1])
    assert c.out == [whole(frames[1])]


def test_sequence_numbers_wrap() -> None:
    frames = frames_of([3, 4, 2], first_seq=65533)
    c = Collector()
    c.feed([p for f in frames for p in f])
    assert c.out == [whole(f) for f in frames]


def test_late_duplicates_are_ignored_and_a_jump_restarts() -> None:
    frames = frames_of([2, 2])
    c = Collector()
    c.feed(frames[0] + frames[0][:1] + frames[1])
    assert c.out == [whole(frames[0]), whole(frames[1])]
    jumped = frames_of([2], first_seq=30000)[0]
    c.feed([(4, 6000, b"S2.0;", False)])  # a frame left unfinished
    c.feed(jumped)
    assert c.out[-1] == whole(jumped)
    assert c.assembler.dropped == 1


def test_a_frame_larger_than_the_bound_is_dropped_and_the_next_comes_out() -> None:
    frames = frames_of([2, 30, 3])
    c = Collector(max_packets=8)
    c.feed([p for f in frames for p in f])
    assert c.out == [whole(frames[0]), whole(frames[2])]
    assert c.assembler.dropped == 1
    assert c.keyframe_wanted == 1
    assert len(c.assembler._pending) == 0


@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    first_seq=st.integers(0, 65535),
    seed=st.integers(0, 2**32),
    reorder=st.integers(0, 30),
    loss=st.sampled_from([0.0, 0.02, 0.2]),
)
def test_frames_come_out_whole_in_order_or_not_at_all(
    sizes: list[int], first_seq: int, seed: int, reorder: int, loss: float
) -> None:
    """Any loss and reordering within a window: every frame out is one that went in,
    unchanged, in the order sent; with no loss, every frame comes out."""
    rng = random.Random(seed)
    frames = frames_of(sizes, first_seq)
    sent = [p for f in frames for p in f]
    kept = [p for p in sent if rng.random() >= loss]
    # each packet moves back by up to `reorder` places, but for the stream's first (a
    # frame of a stream that was reordered before its first packet came is not seen)
    keyed = sorted(
        enumerate(kept), key=lambda item: item[0] + (rng.uniform(0, reorder) if item[0] else -1)
    )
    c = Collector(max_wait=0.5)  # longer than any reordering here (0.31 s at most)
    for step, (_, packet) in enumerate(keyed):
        c.feed([packet], now=step * 0.01)
    expected = [whole(f) for f in frames]
    positions = [expected.index(frame) for frame in c.out]  # each one sent, whole
    assert positions == sorted(set(positions))  # in order, none twice
    if not loss or len(kept) == len(sent):
        # all but the frames still waiting behind a hole at the very end
        assert c.out == expected[: len(c.out)]
        assert len(c.out) == len(expected)


def test_frame_start_tests_read_the_payload_headers() -> None:
    assert h264_starts_frame(bytes([0x65, 0x88]))  # a single IDR NAL unit
    assert h264_starts_frame(bytes([0x78, 0x00]))  # STAP-A
    assert h264_starts_frame(bytes([0x7C, 0x85]))  # FU-A, start bit
    assert not h264_starts_frame(bytes([0x7C, 0x05]))  # FU-A, a later fragment
    assert not h264_starts_frame(b"")
    assert vp8_starts_frame(bytes([0x10, 0x00]))  # S bit, partition 0
    assert not vp8_starts_frame(bytes([0x00, 0x00]))  # a continuation
    assert not vp8_starts_frame(bytes([0x11, 0x00]))  # the start of partition 1
