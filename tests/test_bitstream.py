"""Bitstream headers read without a decoder, checked against real encoders' output."""

from __future__ import annotations

import pytest

from bodycam.media.bitstream import (
    h264_is_keyframe,
    h264_keyframe_info,
    split_annexb,
    vp8_is_keyframe,
    vp8_keyframe_info,
)

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
