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
:class:`~hybridcon.media.timeline.PacketMerger`, and are stamped relative to the
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

from hybridcon.media.opus import OPUS_HZ, opus_packet_samples
from hybridcon.media.packets import PacketSource, video_size
from hybridcon.media.timeline import TS_HZ, PacketMerger, TimedPacket

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
