"""Recording a stage: one Matroska file per live period, every stream copied as it arrived.

Why Matroska (``.mkv``) rather than MPEG-TS or MP4:

* It carries every codec the hub can receive without transcoding: H.264 and VP8 video,
  Opus audio. MPEG-TS cannot hold VP8, and Opus in MPEG-TS, though FFmpeg writes it,
  plays almost nowhere else; transcoding Opus to AAC would cost CPU and quality for a
  file that is usually edited later. MP4 holds all three but is unreadable until its
  index (``moov``) is written at the end, so a crash loses the whole recording.
* It survives a crash: with ``flush_packets`` every finished cluster is on disk, and a
  file cut off mid-way opens and plays up to its last cluster (about a second, see
  ``CLUSTER_MS``); only the index for seeking is missing, which ``ffmpeg -c copy``
  rebuilds. A file that is closed properly has its duration and index.
* Editors, ``ffmpeg``, VLC, mpv and video platforms (PeerTube, YouTube) take it as is.

Packets keep the hub's timeline (both kinds share its zero), merged in time order by
:class:`~hybridcon.media.hls.PacketMerger`, and are stamped relative to the
first packet written. The file is created once the first packets are there: Matroska
needs the video's size and its SPS/PPS (from the first keyframe) in the header. A stream
that has not shown up ``START_WAIT_SECONDS`` after the other one is left out of this
file (a Matroska file cannot gain a track later).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import structlog
from av.container import OutputContainer
from av.stream import Stream

from hybridcon.media.hls import (
    OPUS_HZ,
    TS_HZ,
    PacketMerger,
    PacketSource,
    TimedPacket,
    opus_packet_samples,
)

log = structlog.get_logger(__name__)

START_WAIT_SECONDS = 2.0
"""How long (media time) to wait for the second stream before starting without it."""

CLUSTER_MS = 1000
"""Longest Matroska cluster: what a crash can lose at most (the open cluster)."""

VIDEO_CODECS = frozenset({"h264", "vp8"})
AUDIO_CODECS = frozenset({"opus"})


class Recorder:
    """Writes one stage's packets to one Matroska file, without transcoding anything.

    :meth:`run` reads until the sources end, then finalises the file; :meth:`close`
    stops early and finalises. The sources are not closed here: the caller owns its hub
    consumers.
    """

    def __init__(
        self,
        path: Path,
        *,
        video: PacketSource | None,
        audio: PacketSource | None,
    ) -> None:
        """Prepare a recording; the file is created when the first packets arrive.

        Args:
            path: The file to write (Matroska whatever its suffix; ``.mkv`` is apt).
            video: H.264 or VP8 packets.
            audio: Opus packets.

        Raises:
            ValueError: With no source.
        """
        if video is None and audio is None:
            raise ValueError("a recorder needs a video or an audio source")
        self.path = path
        self._sources: dict[str, PacketSource] = {}
        if video is not None:
            self._sources["video"] = video
        if audio is not None:
            self._sources["audio"] = audio
        self._merger: PacketMerger | None = None
        self._waiting: list[TimedPacket] = []
        self._video_key: TimedPacket | None = None
        self._container: OutputContainer | None = None
        self._streams: dict[str, tuple[str, Stream]] = {}
        self._origin = 0
        self._last: dict[str, int] = {}
        self._written: dict[str, int] = {"video": 0, "audio": 0}
        self._untracked: set[tuple[str, str]] = set()
        self._closed = False
        self._finished = False

    @property
    def started(self) -> bool:
        """Whether the file exists (the first packets have arrived)."""
        return self._container is not None

    @property
    def packets_written(self) -> dict[str, int]:
        """Packets written so far, by kind."""
        return dict(self._written)

    async def run(self) -> None:
        """Record until the sources end (or :meth:`close`), then finalise the file.

        Raises:
            Exception: What a source's ``get()`` raised; :class:`ValueError` if the first
                keyframe tells no frame size; :class:`OSError` or :class:`av.FFmpegError`
                when the file cannot be written. The file is finalised first.
        """
        if self._closed:
            return
        self._merger = PacketMerger(self._sources)
        try:
            while (item := await self._merger.next()) is not None:
                self._ingest(item)
            if not self._closed and self._container is None and self._waiting:
                self._start()  # a stream that ended before the wait ran out
        finally:
            self._merger.stop()
            self._finish()

    def close(self) -> None:
        """Stop and finalise the file (index and duration). Idempotent."""
        self._closed = True
        if self._merger is not None:
            self._merger.stop()
        self._finish()

    def _ingest(self, item: TimedPacket) -> None:
        packet = item.packet
        allowed = VIDEO_CODECS if packet.kind == "video" else AUDIO_CODECS
        if packet.codec not in allowed:
            self._warn_once(packet.kind, packet.codec, "a codec this recorder cannot copy")
            return
        if self._container is not None:
            self._write(item)
            return
        if packet.kind == "video" and self._video_key is None:
            if not packet.keyframe:
                return  # the file must start where a decoder can
            self._video_key = item
        self._waiting.append(item)
        kinds = {w.packet.kind for w in self._waiting}
        span = max(w.ticks for w in self._waiting) - min(w.ticks for w in self._waiting)
        if kinds >= set(self._sources) or span >= round(START_WAIT_SECONDS * TS_HZ):
            self._start()

    def _start(self) -> None:
        waiting = self._waiting
        self._waiting = []
        # The tracks follow what has arrived, decided before the packets from before the
        # first keyframe are dropped: audio that all came before it is still a track.
        kinds = {w.packet.kind for w in waiting}
        if self._video_key is not None:
            # Nothing before the first keyframe: the file starts on a decodable frame.
            waiting = [w for w in waiting if w.ticks >= self._video_key.ticks]
        if not waiting:
            return
        self._origin = min(w.ticks for w in waiting)
        container = av.open(
            str(self.path),
            "w",
            format="matroska",
            options={"flush_packets": "1", "cluster_time_limit": str(CLUSTER_MS)},
        )
        if "video" in kinds and self._video_key is not None:
            key = self._video_key.packet
            size = video_size(key.codec, key.data)
            if size is None:
                container.close()
                raise ValueError(f"cannot read the frame size of the first {key.codec} keyframe")
            width, height = size
            stream = container.add_mux_stream(key.codec, width=width, height=height)
            self._streams["video"] = (key.codec, stream)
        if "audio" in kinds:
            # Opening a libopus encoder is the one way PyAV offers to give the track
            # its OpusHead (CodecPrivate), which Matroska's Opus mapping requires and
            # players other than FFmpeg's rely on; nothing is ever encoded with it. Its
            # pre-skip (312 samples) trims 6.5 ms from the start.
            audio_stream: Stream = container.add_stream("libopus", rate=OPUS_HZ, layout="stereo")
            self._streams["audio"] = ("opus", audio_stream)
        self._container = container
        log.info("recorder.started", path=str(self.path), streams=sorted(self._streams))
        for item in sorted(waiting, key=lambda w: w.ticks):
            self._write(item)

    def _write(self, item: TimedPacket) -> None:
        assert self._container is not None
        packet = item.packet
        entry = self._streams.get(packet.kind)
        if entry is None or entry[0] != packet.codec:
            self._warn_once(packet.kind, packet.codec, "started too late or changed codec")
            return
        pts = item.ticks - self._origin
        last = self._last.get(packet.kind)
        if pts < 0 or (last is not None and pts <= last):
            return  # older than the file, or replayed: Matroska needs rising times
        self._last[packet.kind] = pts
        out: av.Packet[Any] = av.Packet(packet.data)
        out.stream = entry[1]
        out.time_base = Fraction(1, TS_HZ)
        out.pts = out.dts = pts
        if packet.kind == "audio":
            out.duration = opus_packet_samples(packet.data) * TS_HZ // OPUS_HZ
        out.is_keyframe = packet.keyframe
        self._container.mux(out)
        self._written[packet.kind] += 1

    def _warn_once(self, kind: str, codec: str, reason: str) -> None:
        # Once per stream and codec: the same cause repeats for every packet.
        if (kind, codec) not in self._untracked:
            self._untracked.add((kind, codec))
            log.warning(
                "recorder.not_recorded", path=str(self.path), kind=kind, codec=codec, reason=reason
            )

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._container is not None:
            self._container.close()
            log.info("recorder.finished", path=str(self.path), packets=self._written)


# --- frame sizes from the bitstream (Matroska's header needs them; no decoding) ----------


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


def _nal_units(annexb: bytes) -> list[bytes]:
    units = []
    for chunk in annexb.split(b"\x00\x00\x01"):
        unit = chunk.rstrip(b"\x00")  # the leading zero of the next 4-byte start code
        if unit:
            units.append(unit)
    return units


_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def h264_size(annexb: bytes) -> tuple[int, int] | None:
    """Width and height from the first SPS in an Annex-B access unit (H.264 §7.3.2.1.1).

    Args:
        annexb: An access unit with start codes, e.g. an IDR with its SPS and PPS.

    Returns:
        ``(width, height)`` after cropping, or ``None`` without a parseable SPS.
    """
    for unit in _nal_units(annexb):
        if unit[0] & 0x1F != 7:
            continue
        rbsp = unit[1:].replace(b"\x00\x00\x03", b"\x00\x00")
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
