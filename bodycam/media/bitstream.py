"""Just enough of the H.264, VP8 and Opus bitstreams to record them without decoding.

The recorder needs to know, for an encoded frame: is it a keyframe, what size is the
picture (a new size starts a new segment), and what codec headers the container wants
(SPS/PPS for H.264, an OpusHead for Opus). Reading a few header bits answers all three;
no libav decoder is involved. Only keyframes are parsed beyond their first bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
START_CODE = b"\x00\x00\x00\x01"

# RFC 7845 section 5.1: version 1, 2 channels, no pre-skip (a WebRTC stream starts mid-flow,
# there is no encoder delay to hide), 48 kHz, 0 dB, channel mapping family 0.
OPUS_HEAD = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 0, 48000, 0, 0)


@dataclass(frozen=True, slots=True)
class KeyframeInfo:
    """What a keyframe tells the recorder: picture size and the container's codec headers."""

    width: int
    height: int
    extradata: bytes = b""


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes removed)."""
    units: list[bytes] = []
    start = data.find(b"\x00\x00\x01")
    while start != -1:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        end = len(data) if nxt == -1 else nxt
        unit = data[begin:end]
        if nxt != -1 and unit.endswith(b"\x00"):
            unit = unit[:-1]  # the leading zero of a 4-byte start code
        if unit:
            units.append(unit)
        start = nxt
    return units


def h264_is_keyframe(data: bytes) -> bool:
    """True if the access unit holds an IDR slice."""
    # Start codes are followed by the NAL header; scanning for them is cheaper than
    # splitting, and only the 5 low bits of the header byte matter.
    pos = data.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(data):
        if data[pos + 3] & 0x1F == NAL_IDR:
            return True
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return False


def h264_keyframe_info(data: bytes) -> KeyframeInfo | None:
    """Picture size and Annex B SPS+PPS extradata of an IDR access unit, if it carries them;
    ValueError if its SPS is unreadable or impossible."""
    sps = pps = None
    for unit in split_annexb(data):
        kind = unit[0] & 0x1F
        if kind == NAL_SPS and sps is None:
            sps = unit
        elif kind == NAL_PPS and pps is None:
            pps = unit
    if sps is None or pps is None:
        return None
    width, height = h264_sps_size(sps)
    return KeyframeInfo(width, height, START_CODE + sps + START_CODE + pps)


class _Bits:
    """MSB-first bit reader over an RBSP (emulation prevention bytes removed)."""

    def __init__(self, data: bytes) -> None:
        self.data = data.replace(b"\x00\x00\x03", b"\x00\x00")
        self.pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("invalid Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


# ITU-T H.264 A.3.1 at level 6.2, the highest: MaxFS 139264 macroblocks, and neither side over
# sqrt(8 * MaxFS). A larger SPS is a hostile or broken one, not a picture to record.
MAX_FRAME_MBS = 139_264
MAX_SIDE_MBS = 1055
MAX_POC_CYCLE = 255  # num_ref_frames_in_pic_order_cnt_cycle (7.4.2.1.1)

# profile_idc values whose SPS carries chroma format, bit depths and scaling matrices
HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def _skip_high_profile_fields(bits: _Bits) -> int:
    """Read past the fields of the high profiles; returns chroma_format_idc."""
    chroma_format_idc = bits.ue()
    if chroma_format_idc == 3:
        bits.u(1)  # separate_colour_plane_flag
    bits.ue()  # bit_depth_luma
    bits.ue()  # bit_depth_chroma
    bits.u(1)  # qpprime_y_zero_transform_bypass_flag
    if bits.u(1):  # seq_scaling_matrix_present_flag
        for i in range(8 if chroma_format_idc != 3 else 12):
            if bits.u(1):
                _skip_scaling_list(bits, 16 if i < 6 else 64)
    return chroma_format_idc


def _skip_picture_order(bits: _Bits) -> None:
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        cycle = bits.ue()
        if cycle > MAX_POC_CYCLE:  # (else a long SPS would hold the event loop for seconds)
            raise ValueError(f"H.264 SPS claims {cycle} frames in its picture order cycle")
        for _ in range(cycle):
            bits.se()


def h264_sps_size(sps: bytes) -> tuple[int, int]:
    """Width and height (after cropping) from an SPS NAL unit (ITU-T H.264 7.3.2.1.1)."""
    try:
        bits = _Bits(sps[1:])
        profile_idc = bits.u(8)
        bits.u(16)  # constraint flags, level_idc
        bits.ue()  # seq_parameter_set_id
        chroma_format_idc = 1
        if profile_idc in HIGH_PROFILES:
            chroma_format_idc = _skip_high_profile_fields(bits)
        bits.ue()  # log2_max_frame_num_minus4
        _skip_picture_order(bits)
        bits.ue()  # max_num_ref_frames
        bits.u(1)
        width_mbs = bits.ue() + 1
        height_map_units = bits.ue() + 1
        frame_mbs_only = bits.u(1)
        height_mbs = height_map_units * (2 - frame_mbs_only)
        if max(width_mbs, height_mbs) > MAX_SIDE_MBS or width_mbs * height_mbs > MAX_FRAME_MBS:
            raise ValueError(
                f"H.264 SPS gives an impossible size of {width_mbs}x{height_mbs} macroblocks"
            )
        if not frame_mbs_only:
            bits.u(1)
        bits.u(1)  # direct_8x8_inference
        width = width_mbs * 16
        height = height_map_units * 16 * (2 - frame_mbs_only)
        if bits.u(1):  # frame_cropping_flag
            left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
            crop_x = 1 if chroma_format_idc in (0, 3) else 2
            crop_y = (1 if chroma_format_idc in (0, 2) else 2) * (2 - frame_mbs_only)
            width -= (left + right) * crop_x
            height -= (top + bottom) * crop_y
    except IndexError:
        raise ValueError("truncated H.264 SPS") from None
    if width <= 0 or height <= 0:
        raise ValueError(f"H.264 SPS gives an impossible size {width}x{height}")
    return width, height


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + bits.se() + 256) % 256
        last = nxt if nxt != 0 else last


def vp8_is_keyframe(data: bytes) -> bool:
    """True for a VP8 key frame (RFC 6386 section 9.1: bit 0 of the frame tag is 0)."""
    return len(data) >= 10 and data[0] & 1 == 0 and data[3:6] == b"\x9d\x01\x2a"


def vp8_keyframe_info(data: bytes) -> KeyframeInfo | None:
    """Picture size of a VP8 key frame (14-bit width and height after the start code);
    ValueError for a size of zero."""
    if not vp8_is_keyframe(data):
        return None
    width, height = struct.unpack_from("<HH", data, 6)
    width, height = width & 0x3FFF, height & 0x3FFF
    if not width or not height:
        raise ValueError(f"VP8 key frame gives an impossible size {width}x{height}")
    return KeyframeInfo(width, height)
