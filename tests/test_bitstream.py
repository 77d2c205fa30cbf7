"""Bitstream headers read without a decoder, checked against real encoders' output."""

from __future__ import annotations

import pytest

from bodycam.media.bitstream import (
    START_CODE,
    h264_is_keyframe,
    h264_keyframe_info,
    h264_sps_size,
    split_annexb,
    vp8_is_keyframe,
    vp8_keyframe_info,
)
from bodycam.media.relay import Relay
from bodycam.media.tap import EncodedFrame

from .helpers import encode


@pytest.mark.parametrize(
    ("width", "height", "profile"),
    [
        (320, 240, "baseline"),
        (640, 360, "baseline"),  # 360 is not a multiple of 16: cropping
        (1280, 720, "main"),
        (1920, 1080, "high"),  # high profile: chroma format and scaling fields
        (202, 98, "high"),
    ],
)
def test_h264_sps_gives_the_encoded_size(width: int, height: int, profile: str) -> None:
    packets = encode(
        "libx264", width, height, profile=profile, preset="ultrafast", tune="zerolatency"
    )
    assert h264_is_keyframe(packets[0])
    assert not h264_is_keyframe(packets[1])
    info = h264_keyframe_info(packets[0])
    assert info is not None
    assert (info.width, info.height) == (width, height)
    units = split_annexb(info.extradata)
    assert [u[0] & 0x1F for u in units] == [7, 8]


def test_h264_frame_without_parameter_sets_has_no_info() -> None:
    packets = encode("libx264", 320, 240, preset="ultrafast", tune="zerolatency")
    assert h264_keyframe_info(packets[1]) is None


@pytest.mark.parametrize(("width", "height"), [(320, 240), (1280, 720), (642, 362)])
def test_vp8_keyframe_size(width: int, height: int) -> None:
    packets = encode("libvpx", width, height)
    assert vp8_is_keyframe(packets[0])
    assert not vp8_is_keyframe(packets[1])
    info = vp8_keyframe_info(packets[0])
    assert info is not None
    assert (info.width, info.height) == (width, height)
    assert vp8_keyframe_info(packets[1]) is None


def test_split_annexb_handles_three_and_four_byte_start_codes() -> None:
    data = b"\x00\x00\x00\x01\x67\xaa\x00\x00\x01\x68\xbb\x00\x00\x00\x01\x65\xcc"
    assert split_annexb(data) == [b"\x67\xaa", b"\x68\xbb", b"\x65\xcc"]
    assert h264_is_keyframe(data)


def sps(fields: str) -> bytes:
    """A baseline SPS (level 3.0) whose fields after the level are given as bits."""
    fields += "1" * (-len(fields) % 8)
    return bytes([0x67, 66, 0, 30]) + int(fields, 2).to_bytes(len(fields) // 8, "big")


@pytest.mark.parametrize(
    ("unit", "message"),
    [
        # a picture 2**31 macroblocks wide: the recorder would make a stream of it
        (sps("111110" + "0" * 31 + "1" + "0" * 31 + "1110"), "impossible size"),
        (bytes.fromhex("000000002dcc008000"), "impossible size"),  # 3 x 2048 macroblocks
        # a picture order cycle of 2**32 - 1 frames: parsing 100 kB of it held the loop 0.4 s
        (sps("11010011" + "0" * 31 + "1" + "1" * 31) + b"\xff" * 100_000, "cycle"),
    ],
)
def test_an_impossible_sps_is_refused_at_once(unit: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        h264_sps_size(unit)


def test_a_vp8_keyframe_of_no_size_is_refused() -> None:
    with pytest.raises(ValueError, match="impossible size 0x240"):
        vp8_keyframe_info(b"\x00\x00\x00\x9d\x01\x2a\x00\x00\xf0\x00")


def test_the_relay_takes_a_keyframe_whose_sps_is_truncated() -> None:
    # It raised out of the tap, inside aiortc's RTP handler, which closed the camera's
    # DTLS transport: one bad keyframe ended the live session.
    relay = Relay("s1", lambda: None)
    data = START_CODE + b"\x67\x42" + START_CODE + b"\x68\xce\x0f\xc8" + START_CODE + b"\x65\x88"
    frame = EncodedFrame("video", "H264", data, 0, 90000, True, 0.0)
    relay.push(frame)  # no viewer: it only keeps parameter sets, and these are none
