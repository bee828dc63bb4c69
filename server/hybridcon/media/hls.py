"""HLS for a stage: MPEG-TS segments and playlists from the hub's packets, video never transcoded.

:class:`HlsPackager` reads a stage's packets (from :class:`~hybridcon.media.hub.Consumer`
objects, or anything with the same ``get()``), remuxes H.264 into MPEG-TS segments with
PyAV as it arrived (Annex-B with in-band SPS/PPS is what MPEG-TS carries natively, so
the bytes are copied, never decoded), and transcodes Opus to AAC (browsers' HLS needs
AAC; this is the only decoding done, and most of the packager's cost). It cuts a
segment at the first video keyframe at least ``segment_seconds`` after the segment
started, so segments match the publisher's GOP when that is 2 s or more; an audio-only
stage (the radio) is cut every ``segment_seconds``.

Two playlists are kept next to the segments, each replaced atomically (written to a
temporary file, then renamed) so a reader never sees half of one:

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
order before muxing (see :class:`PacketMerger`) so that segment cuts fall between the
right audio packets. The wall clock is related to the timeline once, at the run's
first packet, through its ``arrival``.

The work per packet is small (one remux, one Opus decode, one AAC encode per 21 ms), so
it runs on the event loop rather than in a thread.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, Protocol

import av
import structlog
from av.audio.frame import AudioFrame
from av.container import OutputContainer
from av.stream import Stream

log = structlog.get_logger(__name__)

TS_HZ = 90_000
"""The MPEG-TS clock, and the shared timeline's unit (ticks)."""

OPUS_HZ = 48_000
AAC_FRAME = 1024
"""Samples per AAC-LC frame."""

LIVE_PLAYLIST = "index.m3u8"
ARCHIVE_PLAYLIST = "archive.m3u8"

MAX_SKEW_SECONDS = 1.0
"""How far one stream may run ahead of a silent other before it is muxed without it."""

CUT_TOLERANCE = Fraction(1, 10)
"""Seconds a keyframe may come early and still end a segment: a 2-s GOP from a real
camera is stamped with capture times, so its keyframes land a few milliseconds either
side of 2 s, and without slack every other segment would be 4 s long."""

MAX_SILENCE_FILL_SECONDS = 5
"""Audio gaps up to this long are filled with silence (players stall on holes); longer
ones restart the AAC encoder at the new position instead of encoding minutes of
silence in one burst on the event loop."""

TS_PAD = 10 * TS_HZ
"""Added to every MPEG-TS timestamp: the AAC encoder's priming frame, audio that starts
just before the first keyframe and packets handed out late by the merge land before the
timeline's origin, and libavformat would shift negative timestamps per segment, breaking
continuity between segments."""

BATCH_SECONDS = 0.2
"""How long a reader that needs no packet the moment it arrives (HLS, the recorder,
the health probe) rests after emptying its hub consumer: segments, recordings and
health are up to this much later, for a fraction of the wake-ups."""

SILENCE_MIN_SAMPLES = 48
"""An audio gap of 1 ms or more is filled; smaller ones are timestamp rounding."""


class MediaPacketLike(Protocol):
    """What this module reads from a :class:`~hybridcon.media.hub.MediaPacket`."""

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
    """One stream of a stage's packets, e.g. a hub :class:`~hybridcon.media.hub.Consumer`."""

    async def get(self) -> MediaPacketLike | None:
        """The next packet, or ``None`` once the ingest has ended."""
        ...


# --- playlists (pure) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """One finished media segment as the playlists list it.

    Attributes:
        sequence: Media sequence number (``seg-{sequence:06d}.ts``).
        uri: Relative URI of the segment file.
        duration: Length in seconds.
        program_date_time: Wall-clock time of the segment's first sample.
        discontinuity: Whether timestamps or encoding restart at this segment.
    """

    sequence: int
    uri: str
    duration: Fraction
    program_date_time: datetime
    discontinuity: bool = False


def segment_uri(sequence: int) -> str:
    """The relative URI (and file name) of a segment.

    Args:
        sequence: The segment's media sequence number.

    Returns:
        ``seg-000123.ts`` style names, sorting in order up to a million segments.
    """
    return f"seg-{sequence:06d}.ts"


def target_duration(segments: Sequence[Segment], minimum: float) -> int:
    """``EXT-X-TARGETDURATION``: the longest segment in whole seconds, rounded up.

    RFC 8216 only requires each duration *rounded to nearest* to fit; rounding up is
    the safe reading (some players treat the target as a hard upper bound).

    Args:
        segments: Every segment the playlist has listed or will list.
        minimum: The nominal segment length, so the target is right from the start
            and does not grow while the first segments are short.

    Returns:
        The target duration, at least 1.
    """
    longest = max((math.ceil(s.duration) for s in segments), default=0)
    return max(1, math.ceil(minimum), longest)


def format_program_date_time(moment: datetime) -> str:
    """``EXT-X-PROGRAM-DATE-TIME`` value: ISO 8601 with milliseconds and UTC offset.

    Args:
        moment: A timezone-aware time.

    Returns:
        E.g. ``2024-05-01T10:00:02.000+00:00``.

    Raises:
        ValueError: If ``moment`` is naive (a playlist time must say its offset).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("program date time needs a timezone-aware datetime")
    return moment.isoformat(timespec="milliseconds")


def live_window(segments: Sequence[Segment], window: int) -> tuple[list[Segment], int]:
    """The segments a rolling live playlist lists, and its discontinuity sequence.

    Args:
        segments: Every segment so far, oldest first.
        window: How many of the newest to list.

    Returns:
        The newest ``window`` segments and ``EXT-X-DISCONTINUITY-SEQUENCE``: the number
        of discontinuities that have slid out of the window.

    Raises:
        ValueError: If ``window`` is less than 1.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    listed = list(segments[-window:])
    dropped = segments[: len(segments) - len(listed)]
    return listed, sum(1 for s in dropped if s.discontinuity)


def render_playlist(
    segments: Sequence[Segment],
    *,
    target: int,
    ended: bool,
    event: bool = False,
    discontinuity_sequence: int = 0,
) -> str:
    """A media playlist's text.

    Args:
        segments: The segments to list, oldest first; the first one's sequence number
            is the playlist's ``EXT-X-MEDIA-SEQUENCE``.
        target: ``EXT-X-TARGETDURATION`` (see :func:`target_duration`).
        ended: Append ``#EXT-X-ENDLIST``: no segment will be added.
        event: Declare ``#EXT-X-PLAYLIST-TYPE:EVENT`` (segments are only ever appended).
        discontinuity_sequence: Discontinuities before the first listed segment.

    Returns:
        The playlist, ending with a newline.
    """
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target}",
        f"#EXT-X-MEDIA-SEQUENCE:{segments[0].sequence if segments else 0}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    if event:
        lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
    for segment in segments:
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(
            f"#EXT-X-PROGRAM-DATE-TIME:{format_program_date_time(segment.program_date_time)}"
        )
        lines.append(f"#EXTINF:{float(segment.duration):.3f},")
        lines.append(segment.uri)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def parse_playlist(text: str) -> list[Segment]:
    """Read back the segments of a playlist written by :func:`render_playlist`.

    Args:
        text: The playlist.

    Returns:
        Its segments, oldest first.

    Raises:
        ValueError: If it is not an M3U playlist, or a segment has no duration or
            program date time.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise ValueError("not an M3U playlist")
    sequence = 0
    duration: Fraction | None = None
    moment: datetime | None = None
    discontinuity = False
    segments: list[Segment] = []
    for line in lines[1:]:
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXTINF:"):
            duration = Fraction(line.split(":", 1)[1].split(",", 1)[0])
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            moment = datetime.fromisoformat(line.split(":", 1)[1])
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif not line.startswith("#"):
            if duration is None or moment is None:
                raise ValueError(f"segment {line!r} lacks EXTINF or PROGRAM-DATE-TIME")
            segments.append(Segment(sequence, line, duration, moment, discontinuity))
            sequence += 1
            duration, moment, discontinuity = None, None, False
    return segments


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


# --- bitstream helpers ------------------------------------------------------------------

_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


def adts_header(payload_size: int, *, sample_rate: int = OPUS_HZ, channels: int = 2) -> bytes:
    """The 7-byte ADTS header for one raw AAC-LC frame (MPEG-TS carries AAC as ADTS).

    Args:
        payload_size: Bytes of the raw AAC frame that follows.
        sample_rate: One of the ADTS sampling frequencies.
        channels: Channel configuration, 1 to 7.

    Returns:
        The header (no CRC).
    """
    index = _ADTS_RATES.index(sample_rate)
    size = payload_size + 7
    profile = 1  # AAC-LC is audio object type 2, written as type minus one
    return bytes(
        (
            0xFF,
            0xF1,  # MPEG-4, layer 0, no CRC
            (profile << 6) | (index << 2) | (channels >> 2),
            ((channels & 3) << 6) | (size >> 11),
            (size >> 3) & 0xFF,
            ((size & 7) << 5) | 0x1F,  # buffer fullness 0x7FF: variable bit rate
            0xFC,
        )
    )


_OPUS_FRAME_SAMPLES = (
    *(480, 960, 1920, 2880) * 3,  # SILK NB/MB/WB: 10, 20, 40, 60 ms
    *(480, 960) * 2,  # hybrid SWB/FB: 10, 20 ms
    *(120, 240, 480, 960) * 4,  # CELT NB/WB/SWB/FB: 2.5, 5, 10, 20 ms
)


def opus_packet_channels(packet: bytes) -> int:
    """Channels one Opus packet codes, from its TOC byte's stereo flag (RFC 6716 §3.1).

    Args:
        packet: One Opus packet (not empty).

    Returns:
        2 when the packet is stereo, else 1.
    """
    return 2 if packet[0] & 0x04 else 1


def opus_packet_samples(packet: bytes) -> int:
    """Samples (at 48 kHz) one Opus packet decodes to, from its TOC byte (RFC 6716 §3.1).

    Args:
        packet: One Opus packet.

    Returns:
        Its duration in samples; 0 for an empty or malformed packet.
    """
    if not packet:
        return 0
    toc = packet[0]
    per_frame = _OPUS_FRAME_SAMPLES[toc >> 3]
    code = toc & 3
    if code == 0:
        return per_frame
    if code in (1, 2):
        return 2 * per_frame
    return per_frame * (packet[1] & 0x3F) if len(packet) > 1 else 0


# --- merging the streams on one timeline -------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimedPacket:
    """A hub packet placed on the stage's shared timeline.

    Attributes:
        packet: The packet as the hub delivered it.
        ticks: Its time on the stage's timeline (:func:`timeline_ticks`).
    """

    packet: MediaPacketLike
    ticks: int


def timeline_ticks(packet: MediaPacketLike) -> int:
    """A packet's time on the stage's timeline (the hub's shared zero for both kinds).

    Args:
        packet: Any packet from the hub.

    Returns:
        Its ``pts`` in ticks of 1/90 000 s.
    """
    return round(packet.pts * packet.time_base * TS_HZ)


async def rest_when_drained(source: object, seconds: float) -> None:
    """Let the next batch build up: rest ``seconds`` if ``source`` holds nothing more.

    For readers of hub consumers that need not see each packet the moment it arrives
    (HLS, the recorder, the health probe): a reader that rests once its consumer is
    empty wakes a few times a second instead of once per packet, and reads what came
    meanwhile without waiting. Only a source with an int ``pending`` (a
    :class:`~hybridcon.media.hub.Consumer`) is rested on; any other returns at once.

    Args:
        source: What the reader reads.
        seconds: How long to rest; 0 never rests.
    """
    pending = getattr(source, "pending", None)
    if seconds > 0 and isinstance(pending, int) and pending == 0:
        await asyncio.sleep(seconds)


class PacketMerger:
    """Reads several :class:`PacketSource` objects and hands out their packets in time order.

    A packet is handed out once every other live stream has a later one waiting (a
    k-way merge). A stream that runs ``MAX_SKEW_SECONDS`` ahead stops being read until
    the others catch up, so a source that delivers in bursts (a GOP from the hub's
    cache, a test's pre-filled queue) cannot push the other one out of order. If a
    stream stays silent that long in real time (a muted or dropped track), it is not
    waited for until it delivers again: the live output must not stall on one missing
    stream.

    Each source has one reader task for its whole life (a task and a wait set per
    packet cost noticeably more CPU at 80 packets a second); a reader checks its own
    backlog before each read, because a source with packets queued returns them
    without ever suspending. A source that says how many packets it holds (a
    ``pending`` attribute, as a hub consumer has) is read in batches: once it is empty
    its reader rests ``batch_seconds`` before the next read, so a reader and the merge
    wake a few times a second instead of once per packet (the packets wait in the
    source's bounded queue meanwhile).
    """

    def __init__(
        self,
        sources: dict[str, PacketSource],
        *,
        max_skew: float = MAX_SKEW_SECONDS,
        batch_seconds: float = BATCH_SECONDS,
    ) -> None:
        """Set up the merge; nothing is read until :meth:`next`.

        Args:
            sources: The streams by kind (``"video"``, ``"audio"``).
            max_skew: Seconds one stream may run ahead of another (media time), and
                how long to wait in real time for a silent stream.
            batch_seconds: How long a reader of a source with ``pending`` rests once
                it has emptied it (0: read every packet as it comes).
        """
        self._sources = sources
        self._batch_seconds = batch_seconds
        self._max_skew_ticks = round(max_skew * TS_HZ)
        self._max_skew = max_skew
        self._pending: dict[str, deque[TimedPacket]] = {kind: deque() for kind in sources}
        self._live = set(sources)
        self._silent: set[str] = set()  # live, but not waited for until they deliver
        self._may_read = {kind: asyncio.Event() for kind in sources}
        self._changed = asyncio.Event()  # a reader added a packet, ended or failed
        self._readers: list[asyncio.Task[None]] = []
        self._error: Exception | None = None
        self._stopped = False

    def stop(self) -> None:
        """Make :meth:`next` return ``None`` now, dropping what is still waiting."""
        self._stopped = True
        for reader in self._readers:
            reader.cancel()
        self._changed.set()

    async def next(self) -> TimedPacket | None:
        """The next packet in time order.

        Returns:
            The packet, or ``None`` when every source has ended (after everything
            waiting was handed out) or :meth:`stop` was called.

        Raises:
            Exception: Whatever a source's ``get()`` raised.
        """
        if not self._readers and not self._stopped:
            for event in self._may_read.values():
                event.set()
            self._readers = [
                asyncio.create_task(self._read(kind), name=f"merge-{kind}")
                for kind in self._sources
            ]
        while not self._stopped:
            if self._error is not None:
                raise self._error
            ready = self._release()
            if ready is not None:
                return ready
            if not self._live:
                return None
            self._changed.clear()
            if any(self._pending.values()):
                try:
                    async with asyncio.timeout(self._max_skew):
                        await self._changed.wait()
                except TimeoutError:
                    # A live stream stayed silent: go on without it until it delivers.
                    self._silent |= {kind for kind in self._live if not self._pending[kind]}
            else:
                await self._changed.wait()
        return None

    async def _read(self, kind: str) -> None:
        source = self._sources[kind]
        may_read = self._may_read[kind]
        pending = self._pending[kind]
        while True:
            if self._span(kind) >= self._max_skew_ticks:
                may_read.clear()
                await may_read.wait()
                continue
            try:
                packet = await source.get()
            except Exception as error:  # next() raises it in its caller's task
                self._error = error
                self._changed.set()
                return
            self._silent.discard(kind)
            self._changed.set()
            if packet is None:
                self._live.discard(kind)
                return
            pending.append(TimedPacket(packet, timeline_ticks(packet)))
            await rest_when_drained(source, self._batch_seconds)

    def _span(self, kind: str) -> int:
        pending = self._pending[kind]
        return pending[-1].ticks - pending[0].ticks if pending else 0

    def _release(self) -> TimedPacket | None:
        heads = [(q[0].ticks, kind) for kind, q in self._pending.items() if q]
        if not heads:
            return None
        _, kind = min(heads)
        for other in self._live - self._silent:
            if other != kind and not self._pending[other]:
                return None  # it may still deliver something earlier
        packet = self._pending[kind].popleft()
        if self._span(kind) < self._max_skew_ticks:
            self._may_read[kind].set()
        return packet


# --- Opus to AAC -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Out:
    """One packet ready for a segment: H.264 as received, or an ADTS AAC frame."""

    kind: str
    data: bytes
    ticks: int
    duration: int
    keyframe: bool


class OpusToAac:
    """Decodes Opus and encodes AAC-LC (48 kHz) on the shared timeline.

    The AAC stream has the channels the publisher sends: an Opus packet says in its TOC
    byte whether it is stereo (RFC 6716 §3.1), and the first packet of a run decides.
    Browsers send mono Opus unless asked for stereo, and most of a conference is
    speech; encoding their mono as stereo AAC would double the encoder's work, which is
    most of a packaged stage's cost, for nothing. A stereo source (OBS, a mixing desk)
    gets stereo AAC. If a run's packets change later, the decoder mixes them to the
    run's layout.

    The AAC timestamps follow the samples actually encoded, anchored at the first Opus
    packet; lost or DTX-suppressed packets leave a gap in the RTP timestamps, which is
    filled with silence so the audio clock never drifts from the video's.
    """

    BIT_RATES: ClassVar[dict[int, int]] = {1: 64_000, 2: 128_000}
    """AAC bit rate by channel count."""

    def __init__(self) -> None:
        self._decoder: av.AudioCodecContext | None = None
        self._encoder: av.AudioCodecContext | None = None
        self.channels = 0  # decided by the first packet
        self._epoch = 0  # timeline ticks of the encoder's sample 0
        self._samples = 0  # samples given to the encoder so far

    def _start(self, first: bytes) -> None:
        self.channels = opus_packet_channels(first)
        decoder = av.CodecContext.create("opus", "r")
        decoder.sample_rate = OPUS_HZ
        decoder.layout = self._layout
        self._decoder = decoder

    @property
    def _layout(self) -> str:
        return "stereo" if self.channels == 2 else "mono"

    def _new_encoder(self) -> av.AudioCodecContext:
        encoder = av.CodecContext.create("aac", "w")
        encoder.sample_rate = OPUS_HZ
        encoder.layout = self._layout
        encoder.format = "fltp"
        encoder.bit_rate = self.BIT_RATES[self.channels]
        encoder.time_base = Fraction(1, OPUS_HZ)
        # The "fast" quantiser search instead of "twoloop": at 64 kbit/s per channel
        # FFmpeg's AAC maintainers found it sounds as good or better, and here it takes
        # 0.4 % of a core per stage against 0.7 % (Opus decode included).
        encoder.options = {"aac_coder": "fast"}
        return encoder

    def push(self, packet: MediaPacketLike, ticks: int) -> list[_Out]:
        """Transcode one Opus packet.

        Args:
            packet: The Opus packet.
            ticks: Its time on the shared timeline.

        Returns:
            The AAC frames that became ready (the encoder lags by about two frames).
        """
        out: list[_Out] = []
        if self._decoder is None:
            if not packet.data:
                return out
            self._start(packet.data)
        if self._encoder is None:
            self._encoder = self._new_encoder()
            self._epoch, self._samples = ticks, 0
        position = (ticks - self._epoch) * OPUS_HZ // TS_HZ
        gap = position - self._samples
        if gap > MAX_SILENCE_FILL_SECONDS * OPUS_HZ:
            out += self.flush()
            self._encoder = self._new_encoder()
            self._epoch, self._samples = ticks, 0
        elif gap >= SILENCE_MIN_SAMPLES:
            out += self._encode(self._silence(gap))
        elif gap <= -max(opus_packet_samples(packet.data), 1):
            return out  # a repeat of audio already encoded
        assert self._decoder is not None
        try:
            frames = self._decoder.decode(av.Packet(packet.data))
        except av.FFmpegError:
            # A corrupt packet is a lost one: the next packet's gap fills it.
            return out
        for frame in frames:
            out += self._encode(frame)
        return out

    def flush(self) -> list[_Out]:
        """Drain the encoder (at the end of the stream, or before a restart).

        Returns:
            The remaining AAC frames.
        """
        if self._encoder is None:
            return []
        out = self._collect(self._encoder.encode(None))
        self._encoder = None
        return out

    def _silence(self, samples: int) -> AudioFrame:
        frame = AudioFrame(format="fltp", layout=self._layout, samples=samples)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = OPUS_HZ
        return frame

    def _encode(self, frame: AudioFrame) -> list[_Out]:
        assert self._encoder is not None
        # Number samples ourselves: decoded Opus frames carry no usable pts.
        frame.pts = self._samples
        frame.time_base = Fraction(1, OPUS_HZ)
        self._samples += frame.samples
        return self._collect(self._encoder.encode(frame))

    def _collect(self, packets: Sequence[av.Packet[Any]]) -> list[_Out]:
        out = []
        for aac in packets:
            payload = bytes(aac)
            pts = aac.pts if aac.pts is not None else 0
            out.append(
                _Out(
                    kind="audio",
                    data=adts_header(len(payload), channels=self.channels) + payload,
                    ticks=self._epoch + pts * TS_HZ // OPUS_HZ,
                    duration=AAC_FRAME * TS_HZ // OPUS_HZ,
                    keyframe=True,
                )
            )
        return out


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

    def write(self, item: _Out, pts: int) -> None:
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
            self._emit(_Out("video", packet.data, item.ticks, self._frame_ticks, packet.keyframe))
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

    def _emit(self, out: _Out) -> None:
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

    def _cuts(self, out: _Out, current: _OpenSegment) -> bool:
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
