"""H.264 Annex-B as the hub receives it: NAL units, keyframes, parameter sets, frame size.

Everything here reads the bitstream and nothing decodes it. The hub marks keyframes and
puts the SPS and PPS back before an IDR that lacks them; the recorder reads the frame size
from the SPS, which Matroska's header needs. Sections cited are ITU-T H.264's.
"""

from __future__ import annotations

from collections.abc import Iterator

# H.264 NAL unit types (ITU-T H.264 table 7-1).
NAL_SLICE = 1
NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8


def h264_nal_units(data: bytes) -> Iterator[tuple[int, int]]:
    """The NAL units of an Annex-B buffer as ``(start, end)`` offsets, start codes excluded.

    Emulation prevention (H.264 §7.4.1) guarantees ``00 00 01`` never occurs inside
    a NAL unit, so searching for it is exact. A trailing zero before the next start
    code belongs to that 4-byte start code, not to the unit.
    """
    start = data.find(b"\x00\x00\x01")
    while start != -1:
        start += 3
        nxt = data.find(b"\x00\x00\x01", start)
        if nxt == -1:
            yield start, len(data)
            return
        end = nxt - 1 if data[nxt - 1] == 0 else nxt
        yield start, end
        start = nxt


def h264_is_keyframe(data: bytes) -> bool:
    """Whether an Annex-B access unit starts a GOP: an IDR slice, or an SPS before it.

    Stops at the first slice: every slice of a picture has the same type, so there
    is no need to scan a large frame to its end.
    """
    start = data.find(b"\x00\x00\x01")
    while start != -1 and start + 3 < len(data):
        nal_type = data[start + 3] & 0x1F
        if nal_type in (NAL_IDR, NAL_SPS):
            return True
        if nal_type == NAL_SLICE:
            return False
        start = data.find(b"\x00\x00\x01", start + 3)
    return False


def h264_profile_level_id(data: bytes) -> str | None:
    """``profile-level-id`` (RFC 6184 §8.1) from the first SPS in ``data``, or None."""
    for start, end in h264_nal_units(data):
        if data[start] & 0x1F == NAL_SPS and end - start >= 4:
            return data[start + 1 : start + 4].hex()
    return None


class H264ParameterSets:
    """Remembers the last SPS and PPS; puts them back before an IDR that lacks them.

    Most publishers repeat them before every IDR; one that sends them only once would
    leave every consumer that starts later unable to decode.
    """

    def __init__(self) -> None:
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        self.profile_level_id: str | None = None

    def complete(self, data: bytes) -> bytes:
        """``data`` with the remembered SPS and PPS before its IDR when it has none.

        Args:
            data: one access unit, Annex-B.

        Returns:
            ``data`` itself, or a copy with the parameter sets in front.
        """
        sps: bytes | None = None
        pps: bytes | None = None
        idr = False
        for start, end in h264_nal_units(data):
            nal_type = data[start] & 0x1F
            if nal_type == NAL_SPS and sps is None:
                sps = data[start:end]
            elif nal_type == NAL_PPS and pps is None:
                pps = data[start:end]
            elif nal_type == NAL_IDR:
                idr = True
                break
            elif nal_type == NAL_SLICE:
                break
        if sps is not None:
            self.sps = sps
            self.profile_level_id = sps[1:4].hex() if len(sps) >= 4 else None
        if pps is not None:
            self.pps = pps
        if not idr or sps is not None or self.sps is None or self.pps is None:
            return data
        return b"\x00\x00\x00\x01" + self.sps + b"\x00\x00\x00\x01" + self.pps + data


# --- frame size from the SPS (Matroska's header needs it; no decoding) ----------------


class _Bits:
    """Reads an RBSP bit by bit, with Exp-Golomb codes (H.264 §9.1)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self._data[self._pos >> 3]  # IndexError past the end: malformed
            value = (value << 1) | ((byte >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def h264_size(annexb: bytes) -> tuple[int, int] | None:
    """Width and height from the first SPS in an Annex-B access unit (H.264 §7.3.2.1.1).

    Args:
        annexb: An access unit with start codes, e.g. an IDR with its SPS and PPS.

    Returns:
        ``(width, height)`` after cropping, or ``None`` without a parseable SPS.
    """
    for start, end in h264_nal_units(annexb):
        # An empty unit (two start codes in a row) is skipped, not read as a type.
        if end <= start or annexb[start] & 0x1F != NAL_SPS:
            continue
        rbsp = annexb[start + 1 : end].replace(b"\x00\x00\x03", b"\x00\x00")
        try:
            return _sps_size(_Bits(rbsp))
        except (IndexError, ValueError):
            return None
    return None


def _sps_size(bits: _Bits) -> tuple[int, int]:
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    separate_planes = 0
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            separate_planes = bits.u(1)
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if index < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if bits.u(1):  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        if chroma_format == 0 or separate_planes:
            unit_x, unit_y = 1, 2 - frame_mbs_only
        else:
            sub_width = 1 if chroma_format == 3 else 2
            sub_height = 2 if chroma_format == 1 else 1
            unit_x, unit_y = sub_width, sub_height * (2 - frame_mbs_only)
        width -= (left + right) * unit_x
        height -= (top + bottom) * unit_y
    return width, height


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale or last
