"""HLS for a stage: MPEG-TS segments and playlists from the hub's packets, video never transcoded.

:class:`HlsPackager` reads a stage's packets (from :class:`~hybridcon.media.consumer.Consumer`
objects, or anything with the same ``get()``), remuxes H.264 into MPEG-TS segments with
PyAV as it arrived (Annex-B with in-band SPS/PPS is what MPEG-TS carries natively, so
the bytes are copied, never decoded), and transcodes Opus to AAC
(:class:`~hybridcon.media.opus.OpusToAac`: browsers' HLS needs AAC; this is the only
decoding done, and most of the packager's cost). It cuts a
segment at the first video keyframe at least ``segment_seconds`` after the segment
started, so segments match the publisher's GOP when that is 2 s or more; an audio-only
stage (the radio) is cut every ``segment_seconds``.

Two playlists (their text from :mod:`hybridcon.media.playlists`) are kept next to the
segments, each replaced atomically (written to a temporary file, then renamed) so a
reader never sees half of one:

* ``index.m3u8``, the live playlist: the last ``window`` segments, ending with
  ``#EXT-X-ENDLIST`` only when the stream ends;
* ``archive.m3u8``, the whole day: every segment, ``#EXT-X-PLAYLIST-TYPE:EVENT`` while
  live and ``#EXT-X-ENDLIST`` once the packager is closed.

Segment URIs are relative (``seg-000123.ts``): the lead serves them under signed path
prefixes. Every segment carries ``#EXT-X-PROGRAM-DATE-TIME``, mapped from the packets'
timestamps to the wall clock. A publisher who reconnects gets a new packager run on
the same directory with ``resume=True``: the media sequence goes on and the first new
segment is marked ``#EXT-X-DISCONTINUITY`` (its timestamps start again).

Timing. The hub gives both kinds one zero (its ingest's first packet, each kind placed
by its arrival), so the packets' ``pts`` are one timeline; MPEG-TS timestamps are that
timeline relative to the run's first segment. Both streams are merged in timestamp
order before muxing (see :class:`~hybridcon.media.timeline.PacketMerger`) so that
segment cuts fall between the right audio packets. The wall clock is related to the
timeline once, at the run's first packet, through its ``arrival``.

The work per packet is small (one remux, one Opus decode, one AAC encode per 21 ms), so
it runs on the event loop rather than in a thread.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import structlog
from av.container import OutputContainer
from av.stream import Stream

from hybridcon.media.opus import OPUS_HZ, OpusToAac
from hybridcon.media.packets import PacketSource
from hybridcon.media.playlists import (
    Segment,
    live_window,
    parse_playlist,
    render_playlist,
    segment_uri,
    target_duration,
)
from hybridcon.media.timeline import TS_HZ, MuxPacket, PacketMerger, TimedPacket

log = structlog.get_logger(__name__)

LIVE_PLAYLIST = "index.m3u8"
ARCHIVE_PLAYLIST = "archive.m3u8"

CUT_TOLERANCE = Fraction(1, 10)
"""Seconds a keyframe may come early and still end a segment: a 2-s GOP from a real
camera is stamped with capture times, so its keyframes land a few milliseconds either
side of 2 s, and without slack every other segment would be 4 s long."""

TS_PAD = 10 * TS_HZ
"""Added to every MPEG-TS timestamp: the AAC encoder's priming frame, audio that starts
just before the first keyframe and packets handed out late by the merge land before the
timeline's origin, and libavformat would shift negative timestamps per segment, breaking
continuity between segments."""


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see the old or the new file, whole.

    Not fsynced: this protects readers, not against power loss (a lost playlist is
    rebuilt from the next segment on).

    Args:
        path: The file to replace.
        text: Its new content.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


# --- the packager ------------------------------------------------------------------------


class _SegmentFile:
    """One MPEG-TS segment being written: its own muxer, so it starts with PAT/PMT."""

    def __init__(self, path: Path, *, video: bool, audio: bool) -> None:
        self.container: OutputContainer = av.open(str(path), "w", format="mpegts")
        self.streams: dict[str, Stream] = {}
        if video:
            self.streams["video"] = self.container.add_mux_stream("h264")
        if audio:
            self.streams["audio"] = self.container.add_mux_stream("aac", rate=OPUS_HZ)

    def write(self, item: MuxPacket, pts: int) -> None:
        packet = av.Packet(item.data)
        packet.stream = self.streams[item.kind]
        packet.time_base = Fraction(1, TS_HZ)
        packet.pts = packet.dts = pts
        packet.duration = item.duration
        packet.is_keyframe = item.keyframe
        self.container.mux(packet)

    def close(self) -> None:
        self.container.close()


@dataclass(slots=True)
class _OpenSegment:
    sequence: int
    start: int  # timeline ticks
    end: int  # timeline ticks just past the last sample written
    file: _SegmentFile


class HlsPackager:
    """Packages one stage's packets as HLS: MPEG-TS segments, live and archive playlists.

    One instance is one run (one publisher session). :meth:`run` reads until the sources
    end; :meth:`close` stops it early. The sources are not closed here: the caller owns
    its hub consumers.
    """

    def __init__(
        self,
        stage: str,
        out_dir: Path,
        *,
        video: PacketSource | None,
        audio: PacketSource | None,
        clock: Callable[[], datetime],
        segment_seconds: float = 2.0,
        window: int = 6,
        resume: bool = False,
        keyframe_request: Callable[[], object] | None = None,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> None:
        """Prepare a run; nothing is read until :meth:`run`.

        Args:
            stage: The stage's id, for logs.
            out_dir: Where segments and playlists go (created if missing).
            video: H.264 packets (other codecs are dropped with a warning: MPEG-TS
                cannot carry VP8, and video is never transcoded).
            audio: Opus packets.
            clock: The wall clock (timezone-aware) for ``EXT-X-PROGRAM-DATE-TIME``.
            segment_seconds: Shortest segment; video segments end at the first
                keyframe after it.
            window: Segments in the live playlist.
            resume: Continue the playlists already in ``out_dir`` (a reconnecting
                publisher): sequence numbers go on after the archive's last segment
                and the first new segment is a discontinuity.
            keyframe_request: Called when a segment has run ``segment_seconds`` without
                a keyframe (WebRTC encoders send keyframes only when asked), at most
                once per ``segment_seconds``; the hub should forward it upstream.
            on_segment: Called with each finished segment once both playlists list it
                (for metrics, or to tell a CDN to prefetch).

        Raises:
            ValueError: With no source, a non-positive ``segment_seconds`` or a
                ``window`` below 1.
            FileExistsError: If ``out_dir`` already has an archive and ``resume`` is
                false (a day's recording is never overwritten silently).
        """
        if video is None and audio is None:
            raise ValueError("an HLS packager needs a video or an audio source")
        if segment_seconds <= 0:
            raise ValueError("segment_seconds must be positive")
        if window < 1:
            raise ValueError("window must be at least 1")
        self.stage = stage
        self.out_dir = out_dir
        self._video_source = video
        self._audio_source = audio
        self._clock = clock
        self._segment_seconds = segment_seconds
        self._segment_ticks = round(segment_seconds * TS_HZ)
        self._window = window
        self._keyframe_request = keyframe_request
        self._on_segment = on_segment

        out_dir.mkdir(parents=True, exist_ok=True)
        archive = out_dir / ARCHIVE_PLAYLIST
        self._segments: list[Segment] = []
        if archive.exists():
            if not resume:
                raise FileExistsError(f"{archive} exists; pass resume=True to continue it")
            self._segments = parse_playlist(archive.read_text(encoding="utf-8"))
        self._next_sequence = self._segments[-1].sequence + 1 if self._segments else 0
        self._discontinuity = bool(self._segments)

        self._audio = OpusToAac() if audio is not None else None
        self._merger: PacketMerger | None = None
        self._current: _OpenSegment | None = None
        self._origin: int | None = None  # timeline ticks of MPEG-TS time TS_PAD
        self._wall: tuple[datetime, int] | None = None  # (wall time, its timeline ticks)
        self._video_started = False
        self._last_video: int | None = None
        self._frame_ticks = 0  # the last video frame interval
        self._first_audio: int | None = None
        self._last_request: int | None = None
        self._warned: set[str] = set()
        self._closed = False
        self._finished = False

    @property
    def segments(self) -> list[Segment]:
        """Every finished segment in the archive, this run's and earlier runs'."""
        return list(self._segments)

    async def run(self) -> None:
        """Package until the sources end (then both playlists get ``#EXT-X-ENDLIST``).

        If :meth:`close` is called meanwhile, returns once closed. If cancelled, the
        open segment is finished and the archive closed, as by :meth:`close`.

        Raises:
            Exception: What a source's ``get()`` raised, or an :class:`OSError` or
                :class:`av.FFmpegError` when a segment cannot be written; the open
                segment is finished and the archive closed first.
        """
        if self._closed:
            return
        sources: dict[str, PacketSource] = {}
        if self._video_source is not None:
            sources["video"] = self._video_source
        if self._audio_source is not None:
            sources["audio"] = self._audio_source
        self._merger = PacketMerger(sources)
        ended = False
        try:
            while (item := await self._merger.next()) is not None:
                self._ingest(item)
            ended = not self._closed
        finally:
            self._merger.stop()
            self._finish(ended=ended)

    def close(self) -> None:
        """Stop: finish the open segment and close the archive playlist.

        The live playlist gets no ``#EXT-X-ENDLIST`` here (the stream did not end; a
        resumed run may continue it). Idempotent.
        """
        self._closed = True
        if self._merger is not None:
            self._merger.stop()
        self._finish(ended=False)

    # -- per packet --

    def _ingest(self, item: TimedPacket) -> None:
        packet = item.packet
        if self._wall is None:
            # Relate the wall clock to the timeline once; the packet may have waited
            # (in the hub's GOP cache, in queues) since it arrived, so go back by that.
            waited = max(0.0, time.monotonic() - packet.arrival)
            self._wall = (self._clock() - timedelta(seconds=waited), item.ticks)
        if packet.kind == "video":
            if packet.codec != "h264":
                self._warn_once(packet.codec, "HLS carries H.264 only; dropping this video")
                return
            if not self._video_started:
                if not packet.keyframe:
                    return  # a decoder could not start here
                self._video_started = True
            if self._last_video is not None:
                if item.ticks <= self._last_video:
                    # WebRTC H.264 has no B-frames; this is a replayed or reordered frame.
                    return
                self._frame_ticks = item.ticks - self._last_video
            self._emit(
                MuxPacket("video", packet.data, item.ticks, self._frame_ticks, packet.keyframe)
            )
            return
        if packet.codec != "opus" or self._audio is None:
            self._warn_once(packet.codec, "unexpected audio codec; dropping it")
            return
        if self._current is None and self._video_source is not None and not self._video_started:
            # Wait for the first keyframe so the first segment starts on one; if none
            # comes within a segment's time, start audio-only and let video join.
            if self._first_audio is None:
                self._first_audio = item.ticks
            if item.ticks - self._first_audio < self._segment_ticks:
                return
        for out in self._audio.push(packet, item.ticks):
            self._emit(out)

    def _emit(self, out: MuxPacket) -> None:
        current = self._current
        if current is None:
            current = self._open(out.ticks)
        elif self._cuts(out, current):
            self._close_segment(current, end=out.ticks)
            current = self._open(out.ticks)
        assert self._origin is not None
        pts = out.ticks - self._origin + TS_PAD
        if pts < 0:
            return  # far older than the stream's start: nothing can play it
        current.file.write(out, pts)
        current.end = max(current.end, out.ticks + out.duration)
        if out.kind == "video":
            self._last_video = out.ticks
            if not out.keyframe:
                self._maybe_request_keyframe(out.ticks - current.start, out.ticks)

    def _cuts(self, out: MuxPacket, current: _OpenSegment) -> bool:
        elapsed = out.ticks - current.start
        if out.kind == "video":
            return out.keyframe and elapsed + CUT_TOLERANCE * TS_HZ >= self._segment_ticks
        # Audio cuts only when video is absent or stalled (a camera switched off).
        video_quiet = self._last_video is None or out.ticks - self._last_video >= (
            self._segment_ticks
        )
        return video_quiet and elapsed >= self._segment_ticks

    def _maybe_request_keyframe(self, elapsed: int, ticks: int) -> None:
        if self._keyframe_request is None or elapsed < self._segment_ticks:
            return
        if self._last_request is not None and ticks - self._last_request < self._segment_ticks:
            return
        self._last_request = ticks
        self._keyframe_request()

    # -- segments and playlists --

    def _open(self, start: int) -> _OpenSegment:
        if self._origin is None:
            self._origin = start
        sequence = self._next_sequence
        self._next_sequence += 1
        file = _SegmentFile(
            self.out_dir / segment_uri(sequence),
            video=self._video_source is not None,
            audio=self._audio_source is not None,
        )
        self._current = _OpenSegment(sequence, start, start, file)
        return self._current

    def _close_segment(self, current: _OpenSegment, *, end: int) -> None:
        current.file.close()
        self._current = None
        assert self._wall is not None
        wall, wall_ticks = self._wall
        self._segments.append(
            Segment(
                sequence=current.sequence,
                uri=segment_uri(current.sequence),
                duration=Fraction(max(end - current.start, 1), TS_HZ),
                program_date_time=wall + timedelta(seconds=(current.start - wall_ticks) / TS_HZ),
                discontinuity=self._discontinuity,
            )
        )
        self._discontinuity = False
        self._write_playlists(ended=False, archive_ended=False)
        if self._on_segment is not None:
            self._on_segment(self._segments[-1])

    def _write_playlists(self, *, ended: bool, archive_ended: bool) -> None:
        target = target_duration(self._segments, self._segment_seconds)
        listed, discontinuities = live_window(self._segments, self._window)
        write_atomic(
            self.out_dir / LIVE_PLAYLIST,
            render_playlist(
                listed, target=target, ended=ended, discontinuity_sequence=discontinuities
            ),
        )
        write_atomic(
            self.out_dir / ARCHIVE_PLAYLIST,
            render_playlist(self._segments, target=target, ended=archive_ended, event=True),
        )

    def _finish(self, *, ended: bool) -> None:
        if self._finished:
            return
        self._finished = True
        if self._audio is not None and self._current is not None:
            for out in self._audio.flush():
                self._emit(out)
        if self._current is not None:
            self._close_segment(self._current, end=self._current.end)
        if self._segments:
            self._write_playlists(ended=ended, archive_ended=True)
        log.info(
            "hls.finished",
            stage=self.stage,
            segments=len(self._segments),
            ended=ended,
        )

    def _warn_once(self, codec: str, message: str) -> None:
        if codec not in self._warned:
            self._warned.add(codec)
            log.warning("hls.codec_dropped", stage=self.stage, codec=codec, reason=message)
