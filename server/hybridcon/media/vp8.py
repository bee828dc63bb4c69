"""VP8 frames as the hub receives them (no RTP payload descriptor): whether a frame is a
key frame, and a key frame's size, read from its header without decoding (RFC 6386 §9.1).
"""

from __future__ import annotations


def vp8_is_keyframe(data: bytes) -> bool:
    """Whether a VP8 frame is a key frame: the P bit of its frame tag is 0 (RFC 6386 §9.1)."""
    return bool(data) and not data[0] & 0x01


def vp8_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe's header (RFC 6386 §9.1).

    Args:
        frame: One VP8 frame (no RTP payload descriptor).

    Returns:
        ``(width, height)``, or ``None`` if it is not a keyframe.
    """
    if len(frame) < 10 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return width, height
