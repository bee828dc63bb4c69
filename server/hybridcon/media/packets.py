"""The media packet: one encoded frame of an ingest, as the hub hands it to every reader.

:class:`MediaPacket` is what the hub makes of each frame. :class:`MediaPacketLike` and
:class:`PacketSource` are what the readers (the HLS packager, the recorder, the probe)
take, so that a test or another node can feed them without a hub. :func:`is_keyframe` and
:func:`video_size` answer per codec from the bitstream, never by decoding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, Protocol

from hybridcon.errors import Invalid
from hybridcon.media.h264 import h264_is_keyframe, h264_size
from hybridcon.media.vp8 import vp8_is_keyframe, vp8_size

Kind = Literal["video", "audio"]
KINDS: tuple[Kind, Kind] = ("video", "audio")

VIDEO_TIME_BASE = Fraction(1, 90000)
OPUS_TIME_BASE = Fraction(1, 48000)


@dataclass(frozen=True, slots=True)
class MediaPacket:
    """One encoded frame of the ingest, exactly as the publisher sent it.

    Attributes:
        kind: ``"video"`` or ``"audio"``.
        codec: ``"h264"``, ``"vp8"`` or ``"opus"``.
        data: H.264 as Annex-B (start codes; SPS and PPS in-band before each IDR:
            the hub puts back the last ones seen when a publisher sends them only
            once), raw VP8, raw Opus.
        pts: RTP timestamp units, unwrapped; 0 at the ingest's first packet.
        time_base: 1/90000 for video, 1/48000 for Opus.
        keyframe: video: an IDR (or SPS) for H.264, a key frame for VP8; audio: always.
        arrival: ``time.monotonic()`` when the hub got it.
    """

    kind: Kind
    codec: str
    data: bytes
    pts: int
    time_base: Fraction
    keyframe: bool
    arrival: float

    @property
    def seconds(self) -> float:
        """``pts`` in seconds."""
        return float(self.pts * self.time_base)


def as_kind(value: str) -> Kind:
    """``value`` as a :data:`Kind`.

    Raises:
        Invalid: neither ``"video"`` nor ``"audio"``.
    """
    if value == "video":
        return "video"
    if value == "audio":
        return "audio"
    raise Invalid(f"not a media kind: {value!r}")


def is_keyframe(kind: Kind, codec: str, data: bytes) -> bool:
    """Whether a frame can start playback: any audio frame; a key frame of video.

    Args:
        kind: ``"video"`` or ``"audio"``.
        codec: ``"h264"`` or ``"vp8"`` for video (others are never keyframes).
        data: the whole frame (H.264 as Annex-B).

    Returns:
        True for a frame a decoder can start at.
    """
    if kind == "audio":
        return True
    if codec == "h264":
        return h264_is_keyframe(data)
    if codec == "vp8":
        return vp8_is_keyframe(data)
    return False


def video_size(codec: str, keyframe: bytes) -> tuple[int, int] | None:
    """Frame size read from a keyframe's bitstream.

    Args:
        codec: ``"h264"`` or ``"vp8"``.
        keyframe: The keyframe's data (H.264 as Annex-B with its SPS).

    Returns:
        ``(width, height)``, or ``None`` if the codec or data does not tell.
    """
    if codec == "h264":
        return h264_size(keyframe)
    if codec == "vp8":
        return vp8_size(keyframe)
    return None


class MediaPacketLike(Protocol):
    """What the readers (HLS, the recorder, the probe) read of a :class:`MediaPacket`."""

    @property
    def kind(self) -> str:
        """``"video"`` or ``"audio"``."""
        ...

    @property
    def codec(self) -> str:
        """``"h264"``, ``"vp8"`` or ``"opus"``."""
        ...

    @property
    def data(self) -> bytes:
        """One encoded frame: H.264 Annex-B, raw VP8, raw Opus."""
        ...

    @property
    def pts(self) -> int:
        """RTP timestamp (monotonic, in ``time_base`` units)."""
        ...

    @property
    def time_base(self) -> Fraction:
        """Seconds per ``pts`` unit."""
        ...

    @property
    def keyframe(self) -> bool:
        """Whether a decoder can start here."""
        ...

    @property
    def arrival(self) -> float:
        """``time.monotonic()`` when the hub received it."""
        ...


class PacketSource(Protocol):
    """One stream of a stage's packets, e.g. a hub :class:`~hybridcon.media.consumer.Consumer`."""

    async def get(self) -> MediaPacketLike | None:
        """The next packet, or ``None`` once the ingest has ended."""
        ...
