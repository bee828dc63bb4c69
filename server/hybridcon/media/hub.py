"""The stage hub: one publisher's packets in, many consumers out, nothing transcoded.

A :class:`StageHub` drains each track of the current ingest (the publisher's video
and/or audio) in its own task that *always* reads, whoever is listening: aiortc's
track queue is unbounded, and an undrained ingest hands the first viewer seconds of
stale video (media findings: p95 3.2–3.7 s undrained, 91 ms drained). Every packet is
wrapped once as a :class:`MediaPacket` and the same object goes to every consumer.

* **Last GOP.** The video packets since the last keyframe are kept (bounded by
  packets and bytes), so a new video consumer starts on a keyframe at once instead of
  waiting up to a GOP; a new audio consumer starts at the same media time, so a pair
  of consumers starts in sync. When the cache is unusable (no keyframe yet, or the
  GOP outgrew the bounds) a new video consumer waits for the next keyframe and the
  hub asks the publisher for one.
* **Live viewers catch up.** A WHEP viewer's consumers are *live*: a
  :class:`Playhead` shared by its video and audio hands the cached GOP out at
  :data:`CATCH_UP_RATE` times real time (unpaced, a GOP over ~1.1 s overflowed an
  aiortc viewer's UDP receive buffer), a cached keyframe older than
  ``fresh_keyframe_age`` makes the hub ask for a fresh one, and a live consumer still
  behind when a keyframe comes jumps to it, audio with it.
* **Slow consumers never slow anyone else.** Each consumer has a bounded queue. When
  it is full, the consumer drops what it holds and everything up to the next
  keyframe (counted in :attr:`Consumer.skipped`), and the hub asks for a keyframe.
* **Keyframe requests** (lagging consumers, new consumers, viewers' PLIs) go upstream
  at most once per ``keyframe_interval``: every PLI makes an encoder spend bits on a
  keyframe, and many viewers must not multiply that.
* **Timestamps.** ``pts`` is the RTP timestamp, unwrapped, in the codec's clock rate.
  Both kinds share a zero: the ingest's first packet. Each kind's first packet is
  placed by its arrival time (no RTCP sender reports on this path), which aligns
  audio and video to within the jitter buffers' hold-back (tens of milliseconds).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import av
import structlog
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from hybridcon.errors import Conflict, Invalid

log = structlog.get_logger(__name__)

Kind = Literal["video", "audio"]
KINDS: tuple[Kind, Kind] = ("video", "audio")

VIDEO_TIME_BASE = Fraction(1, 90000)
OPUS_TIME_BASE = Fraction(1, 48000)

GOP_MAX_PACKETS = 600
GOP_MAX_BYTES = 8 * 1024 * 1024
# Seconds of packets behind the rolling bitrate and fps.
STATS_WINDOW = 2.0

# A live viewer that starts behind live (on the cached GOP) is sent it at this multiple
# of real time. Unpaced, a GOP of more than ~1.1 s at 2.5 Mbit/s overflowed an aiortc
# viewer's default UDP receive buffer (212 992 bytes) and cost it 1.3-1.7 s. At 4x a
# viewer 2 s behind is live after 0.67 s, with no loss measured (3x: 1 s); see
# docs/benchmarks.md, "Time to first frame".
CATCH_UP_RATE = 4.0
# A live viewer starting on a cached keyframe older than this asks the publisher for a
# fresh one (through the rate limit) and jumps to it when it comes.
FRESH_KEYFRAME_AGE = 0.3
# A live viewer whose queue starts this far (media seconds) behind a new keyframe drops
# what it holds and jumps to the keyframe: it would only play old frames.
LIVE_LAG = 0.2
# Audio this far behind a live viewer's playhead after a jump is dropped, not played.
AUDIO_SLACK = 0.05
# A live viewer whose next due packet reached the hub less than this long ago has
# caught up: it stops being paced.
CAUGHT_UP = 0.1

RTP_TIMESTAMP_MOD = 1 << 32

# H.264 NAL unit types (ITU-T H.264 table 7-1).
NAL_SLICE = 1
NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8


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


# --- bitstream facts -------------------------------------------------------------------


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


def vp8_is_keyframe(data: bytes) -> bool:
    """Whether a VP8 frame is a key frame: the P bit of its frame tag is 0 (RFC 6386 §9.1)."""
    return bool(data) and not data[0] & 0x01


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


class RtpUnwrapper:
    """32-bit RTP timestamps to an unbounded count (RFC 3550 §5.1: they wrap).

    Each timestamp is placed at the signed 32-bit distance from the previous one, so
    a wrap goes forward and a timestamp slightly older than the last (reordering)
    goes back a little instead of jumping 2**32 ahead.
    """

    def __init__(self) -> None:
        self._last: int | None = None
        self._value = 0

    def unwrap(self, timestamp: int) -> int:
        """The unwrapped value of ``timestamp`` (any int; only its low 32 bits count)."""
        timestamp %= RTP_TIMESTAMP_MOD
        if self._last is None:
            self._value = timestamp
        else:
            delta = (timestamp - self._last) % RTP_TIMESTAMP_MOD
            if delta >= RTP_TIMESTAMP_MOD // 2:
                delta -= RTP_TIMESTAMP_MOD
            self._value += delta
        self._last = timestamp
        return self._value


class GopCache:
    """The video packets since the last keyframe, bounded by packets and bytes.

    When a GOP outgrows the bounds the cache empties and stays unusable until the
    next keyframe: a consumer cannot start in the middle of a GOP.
    """

    def __init__(self, *, max_packets: int = GOP_MAX_PACKETS, max_bytes: int = GOP_MAX_BYTES):
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        self._packets: list[MediaPacket] = []
        self.bytes = 0
        self.overflows = 0

    def add(self, packet: MediaPacket) -> None:
        """Keep ``packet``: a keyframe starts a new GOP; others extend the current one.

        Args:
            packet: the next video packet of the ingest.
        """
        if packet.keyframe:
            self._packets = [packet]
            self.bytes = len(packet.data)
        elif self._packets:
            self._packets.append(packet)
            self.bytes += len(packet.data)
        else:
            return
        if len(self._packets) > self.max_packets or self.bytes > self.max_bytes:
            self.overflows += 1
            self.clear()

    def clear(self) -> None:
        """Forget everything (the ingest ended, or the GOP outgrew the bounds)."""
        self._packets = []
        self.bytes = 0

    @property
    def usable(self) -> bool:
        """Whether a consumer can start from the cache (it holds a keyframe)."""
        return bool(self._packets)

    @property
    def start(self) -> MediaPacket | None:
        """The cached keyframe, if any."""
        return self._packets[0] if self._packets else None

    def __len__(self) -> int:
        return len(self._packets)

    def packets(self) -> list[MediaPacket]:
        """A copy of the cached GOP, keyframe first (empty when unusable)."""
        return list(self._packets)


# --- consumers -------------------------------------------------------------------------


class Playhead:
    """Where one live viewer is on its ingest's timeline; its video and audio share it.

    A live consumer hands out a packet once its media time is due: the playhead is
    anchored at the first packet taken and runs at ``rate`` times real time from there,
    so a viewer starting on an old cached GOP is sent it paced and catches up with live
    after ``age / (rate - 1)`` seconds. Once a due packet is fresh (it reached the hub
    less than :data:`CAUGHT_UP` ago) the playhead is *live* and nothing waits any more,
    whatever the timestamps do. When the video consumer jumps to a fresh keyframe the
    playhead moves there and the audio behind it is dropped, so the two kinds stay
    together. A consumer of another ingest re-anchors it (timestamps restart with every
    ingest).

    Attributes:
        rate: media seconds sent per second while behind live.
        anchor: the media time (seconds) of the last anchor.
        live: whether the viewer has caught up since the last anchor.
        moves: times the playhead was anchored (first packets, jumps, new ingests).
    """

    def __init__(self, *, rate: float = CATCH_UP_RATE) -> None:
        """Args:
            rate: media seconds sent per second while behind live; above 1.

        Raises:
            Invalid: ``rate`` is not above 1 (the viewer would never catch up).
        """
        if not rate > 1:
            raise Invalid(f"a playhead must run faster than real time, not {rate}x")
        self.rate = rate
        self.anchor = 0.0
        self.live = False
        self.moves = 0
        self._ingest: int | None = None
        self._wall = 0.0

    def position(self, ingest: int, now: float) -> float | None:
        """The media time (seconds) due by ``now``: infinite once live; None when not
        anchored in ``ingest``."""
        if self._ingest != ingest:
            return None
        if self.live:
            return math.inf
        return self.anchor + (now - self._wall) * self.rate

    def move(self, ingest: int, media: float, now: float) -> None:
        """Anchor the playhead: ``media`` seconds of ``ingest`` are due at ``now``."""
        self._ingest = ingest
        self.anchor = media
        self._wall = now
        self.live = False
        self.moves += 1


class Consumer:
    """One reader of one kind of a hub's packets, with its own bounded queue.

    Attributes:
        kind: ``"video"`` or ``"audio"``.
        name: for logs and stats (``"hls"``, ``"recorder"``, ``"whep:<id>"``).
        skipped: packets dropped because this consumer lagged (it then resumes at the
            next keyframe), or, live, because it jumped to a fresh keyframe.
        delivered: packets handed out by :meth:`get`.
        jumps: times a live consumer dropped what it held for a fresh keyframe.
        playhead: a live consumer's pacing (see :class:`Playhead`); None hands out
            every packet as soon as it is queued (HLS, recorder, probe).
    """

    def __init__(
        self,
        hub: StageHub,
        kind: Kind,
        name: str,
        max_packets: int,
        *,
        ingest: int = 0,
        playhead: Playhead | None = None,
    ) -> None:
        if max_packets < 1:
            raise Invalid("a consumer's queue holds at least one packet")
        self._hub = hub
        self.kind = kind
        self.name = name
        self.max_packets = max_packets
        self.playhead = playhead
        self.skipped = 0
        self.delivered = 0
        self.jumps = 0
        self._ingest = ingest
        self._queue: deque[MediaPacket] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._skipping = False
        self._ended = False

    async def get(self) -> MediaPacket | None:
        """The next packet; None once the ingest it belongs to has ended (or on close).

        A consumer made while nothing is published belongs to the next ingest. A live
        consumer (one with a playhead) waits until the next packet is due.
        """
        loop = asyncio.get_running_loop()
        while (packet := self._take()) is None:
            if self._ended and not self._queue:
                return None
            waiter = loop.create_future()
            self._waiter = waiter
            # A packet that is not due yet: wake when it is (or earlier, when a push
            # replaces it with a fresh keyframe).
            due = self._due_in()
            timer = None if due is None else loop.call_later(due, self._wake)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        return packet

    def get_nowait(self) -> MediaPacket | None:
        """The next packet if one is queued (and, live, due), else None (also when ended)."""
        return self._take()

    def _take(self) -> MediaPacket | None:
        """Pop the next packet if it may go out now; drop audio a live jump left behind."""
        playhead = self.playhead
        while self._queue:
            head = self._queue[0]
            if playhead is not None:
                now = self._hub._clock()
                position = playhead.position(self._ingest, now)
                if position is None:
                    # The viewer's first packet of this ingest starts its timeline.
                    playhead.move(self._ingest, head.seconds, now)
                    position = head.seconds
                if head.kind == "audio" and head.seconds < playhead.anchor - AUDIO_SLACK:
                    # Older than where video jumped to: it would play out of sync.
                    self._queue.popleft()
                    self.skipped += 1
                    continue
                if head.seconds > position:
                    return None
                if not playhead.live and now - head.arrival <= CAUGHT_UP:
                    playhead.live = True
            self.delivered += 1
            return self._queue.popleft()
        return None

    def _due_in(self) -> float | None:
        """Seconds until the queued head is due (None: nothing queued, or no playhead)."""
        playhead = self.playhead
        if playhead is None or not self._queue:
            return None
        position = playhead.position(self._ingest, self._hub._clock())
        if position is None:
            return 0.0
        return max(0.0, (self._queue[0].seconds - position) / playhead.rate)

    def close(self) -> None:
        """Stop receiving; a pending :meth:`get` returns None. Idempotent."""
        self._hub._remove(self)
        self._end()

    @property
    def pending(self) -> int:
        """Packets queued and not read yet."""
        return len(self._queue)

    @property
    def ended(self) -> bool:
        """Whether the ingest ended (or the consumer was closed)."""
        return self._ended

    def __aiter__(self) -> AsyncIterator[MediaPacket]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[MediaPacket]:
        while (packet := await self.get()) is not None:
            yield packet

    # --- called by the hub -------------------------------------------------------------

    def _start(self, packets: list[MediaPacket], *, skipping: bool) -> None:
        self._queue.extend(packets)
        self._skipping = skipping
        self._wake()

    def _push(self, packet: MediaPacket) -> bool:
        """Queue ``packet``; returns False when this consumer lags (it starts skipping)."""
        if self._ended:
            return True
        if self._skipping:
            if not packet.keyframe:
                self.skipped += 1
                return True
            self._skipping = False
        if (
            self.playhead is not None
            and packet.keyframe
            and packet.kind == "video"
            and self._queue
            and packet.seconds - self._queue[0].seconds > LIVE_LAG
        ):
            # A live viewer still behind (catching up on the cached GOP, or slow): the
            # new keyframe is live, what it holds is not. Audio follows at _take().
            self.skipped += len(self._queue)
            self._queue.clear()
            self.jumps += 1
            self.playhead.move(self._ingest, packet.seconds, self._hub._clock())
        if len(self._queue) >= self.max_packets:
            # What is queued is stale and, for video, useless without its keyframe:
            # drop it all and resume at the next keyframe, live.
            self.skipped += len(self._queue)
            self._queue.clear()
            if not packet.keyframe:
                self.skipped += 1
                self._skipping = True
                return False
        self._queue.append(packet)
        self._wake()
        return True

    def _end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


# --- stats -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KindStats:
    """One kind of the ingest, as measured by the hub.

    Attributes:
        codec: the codec of the current ingest (None when not publishing this kind).
        packets: frames received over the hub's life.
        bytes: their payload bytes.
        bitrate_bps: payload bits per second over the last :data:`STATS_WINDOW`.
        fps: frames per second over the same window (audio: packets per second).
        keyframes: keyframes received over the hub's life.
        last_keyframe_interval_s: media time between the last two keyframes.
        last_packet_age_s: seconds since the last packet (None: never any).
        lost: RTP packets lost on the way in, as the receiver counts them (if known).
        consumers: consumers of this kind now.
        skipped: packets skipped by lagging consumers over the hub's life.
        profile: H.264 ``profile-level-id`` from the in-band SPS (video, if known).
    """

    codec: str | None
    packets: int
    bytes: int
    bitrate_bps: float
    fps: float
    keyframes: int
    last_keyframe_interval_s: float | None
    last_packet_age_s: float | None
    lost: int | None
    consumers: int
    skipped: int
    profile: str | None = None

    def public(self) -> dict[str, Any]:
        """A JSON-ready dict (rounded)."""
        return {
            "codec": self.codec,
            "packets": self.packets,
            "bytes": self.bytes,
            "bitrate_bps": round(self.bitrate_bps),
            "fps": round(self.fps, 1),
            "keyframes": self.keyframes,
            "last_keyframe_interval_s": _round(self.last_keyframe_interval_s),
            "last_packet_age_s": _round(self.last_packet_age_s),
            "lost": self.lost,
            "consumers": self.consumers,
            "skipped": self.skipped,
            "profile": self.profile,
        }


@dataclass(frozen=True, slots=True)
class HubStats:
    """A snapshot of a hub's health (see :class:`KindStats`).

    Attributes:
        publishing: whether an ingest is attached.
        video: video stats.
        audio: audio stats.
        keyframe_requests: requests forwarded upstream.
        keyframe_requests_limited: requests held back by the rate limit.
        ingests: ingests attached over the hub's life.
        gop_packets: video packets in the last-GOP cache.
        gop_bytes: their bytes.
    """

    publishing: bool
    video: KindStats
    audio: KindStats
    keyframe_requests: int
    keyframe_requests_limited: int
    ingests: int
    gop_packets: int
    gop_bytes: int

    def __getitem__(self, kind: Kind) -> KindStats:
        return self.video if kind == "video" else self.audio

    def public(self) -> dict[str, Any]:
        """A JSON-ready dict for health pushes and the engagement log."""
        return {
            "publishing": self.publishing,
            "video": self.video.public(),
            "audio": self.audio.public(),
            "keyframe_requests": self.keyframe_requests,
            "keyframe_requests_limited": self.keyframe_requests_limited,
            "ingests": self.ingests,
            "gop_packets": self.gop_packets,
            "gop_bytes": self.gop_bytes,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass(slots=True)
class _Counters:
    packets: int = 0
    bytes: int = 0
    keyframes: int = 0
    skipped: int = 0
    lost: int | None = None
    last_arrival: float | None = None
    last_keyframe_pts: int | None = None
    last_keyframe_interval_s: float | None = None
    window: deque[tuple[float, int]] = field(default_factory=deque)
    window_start: float | None = None

    def add(self, packet: MediaPacket) -> None:
        size = len(packet.data)
        self.packets += 1
        self.bytes += size
        self.last_arrival = packet.arrival
        if self.window_start is None:
            self.window_start = packet.arrival
        self.window.append((packet.arrival, size))
        self._trim(packet.arrival)
        if packet.keyframe and packet.kind == "video":
            self.keyframes += 1
            if self.last_keyframe_pts is not None:
                interval = (packet.pts - self.last_keyframe_pts) * packet.time_base
                self.last_keyframe_interval_s = float(interval)
            self.last_keyframe_pts = packet.pts

    def _trim(self, now: float) -> None:
        while self.window and self.window[0][0] <= now - STATS_WINDOW:
            self.window.popleft()

    def rates(self, now: float) -> tuple[float, float]:
        """``(bits per second, frames per second)`` over the window ending ``now``."""
        self._trim(now)
        if not self.window or self.window_start is None:
            return 0.0, 0.0
        # A young ingest is measured over its age, not the full window (floor 0.5 s
        # so that the first packets do not read as a burst).
        span = min(STATS_WINDOW, max(0.5, now - self.window_start))
        total = sum(size for _, size in self.window)
        return total * 8 / span, len(self.window) / span

    def new_ingest(self) -> None:
        self.window.clear()
        self.window_start = None
        self.last_keyframe_pts = None
        self.lost = None


# --- the hub ---------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Track:
    kind: Kind
    request_keyframe: Callable[[], None]
    unwrap: RtpUnwrapper = field(default_factory=RtpUnwrapper)
    first: int | None = None
    offset: int = 0
    task: asyncio.Task[None] | None = None
    ended: bool = False


@dataclass(eq=False, slots=True)
class _Ingest:
    number: int
    tracks: dict[Kind, _Track] = field(default_factory=dict)
    start: float | None = None


class StageHub:
    """The pass-through hub of one stage (see the module docstring).

    Attributes:
        stage: the stage's id.
        codecs: kind -> codec name of the current ingest (as packets arrive).
    """

    def __init__(
        self,
        stage: str,
        *,
        queue_packets: int = 600,
        keyframe_interval: float = 1.0,
        gop_packets: int = GOP_MAX_PACKETS,
        gop_bytes: int = GOP_MAX_BYTES,
        fresh_keyframe_age: float | None = FRESH_KEYFRAME_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create an idle hub.

        Args:
            stage: the stage's id (for logs).
            queue_packets: default bound of each consumer's queue.
            keyframe_interval: at most one keyframe request upstream per this many seconds.
            gop_packets: bound of the last-GOP cache, in packets.
            gop_bytes: bound of the last-GOP cache, in bytes.
            fresh_keyframe_age: a live consumer starting on a cached keyframe older
                than this many seconds asks for a fresh one; None never asks.
            clock: monotonic seconds (a fake one in tests).
        """
        self.stage = stage
        self.queue_packets = queue_packets
        self.keyframe_interval = keyframe_interval
        self.fresh_keyframe_age = fresh_keyframe_age
        self.codecs: dict[str, str] = {}
        self._clock = clock
        self._gop = GopCache(max_packets=gop_packets, max_bytes=gop_bytes)
        # Audio since (about) the cached keyframe, so an audio consumer can start at the
        # same media time as a video one. Trimmed at every keyframe; bounded anyway.
        self._audio_tail: deque[MediaPacket] = deque(maxlen=gop_packets)
        self._parameter_sets = H264ParameterSets()
        self._consumers: dict[Kind, dict[Consumer, None]] = {"video": {}, "audio": {}}
        self._counters: dict[Kind, _Counters] = {"video": _Counters(), "audio": _Counters()}
        self._ingest: _Ingest | None = None
        self._ingests = 0
        self._last_request: float | None = None
        self._deferred: asyncio.TimerHandle | None = None
        self._requests = 0
        self._requests_limited = 0

    # --- ingest ------------------------------------------------------------------------

    @property
    def publishing(self) -> bool:
        """Whether an ingest (a publisher's tracks) is attached."""
        return self._ingest is not None

    async def attach(
        self,
        track: MediaStreamTrack,
        *,
        request_keyframe: Callable[[], None],
        codec: str | None = None,
        profile: str | None = None,
    ) -> None:
        """Start draining one of the publisher's tracks (video or audio).

        The first track attached after :meth:`detach` (or ever) starts a new ingest;
        the publisher's other track joins it. The drain task reads for as long as the
        track lives, with or without consumers. When every track of the ingest has
        ended, the ingest ends as if :meth:`detach` had been called.

        Args:
            track: a track yielding :class:`av.Packet` s (a receiver's track marked by
                :func:`hybridcon.media.passthrough.pass_through`).
            request_keyframe: asks the publisher for a keyframe (a PLI on this track's
                receiver); the hub rate-limits the calls.
            codec: the negotiated codec (``"h264"``, ``"vp8"``, ``"opus"``), so that
                :attr:`codecs` names it before the first packet (a viewer joining
                then gets the right codec); packets name theirs anyway.
            profile: H.264 ``profile-level-id`` as negotiated, for :attr:`profile`
                until the first in-band SPS tells the real one.

        Raises:
            Invalid: the track is neither video nor audio.
            Conflict: the ingest already has a track of this kind.
        """
        kind = as_kind(track.kind)
        ingest = self._ingest
        if ingest is None:
            self._ingests += 1
            ingest = self._ingest = _Ingest(number=self._ingests)
            for counters in self._counters.values():
                counters.new_ingest()
            log.info("media.ingest_started", stage=self.stage, ingest=ingest.number)
        if kind in ingest.tracks:
            raise Conflict(f"stage {self.stage} already has a {kind} ingest")
        slot = _Track(kind=kind, request_keyframe=request_keyframe)
        ingest.tracks[kind] = slot
        if codec is not None:
            self.codecs[kind] = codec.lower()
        if profile is not None and kind == "video":
            self._parameter_sets.profile_level_id = profile.lower()
        slot.task = asyncio.create_task(
            self._drain(ingest, slot, track), name=f"hub-{self.stage}-{kind}"
        )

    async def detach(self) -> None:
        """The publisher is gone: end the ingest; its consumers get None. Idempotent.

        The hub stays usable: the next :meth:`attach` starts a new ingest.
        """
        ingest = self._ingest
        if ingest is None:
            return
        self._end_ingest(ingest)
        tasks = [slot.task for slot in ingest.tracks.values() if slot.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _end_ingest(self, ingest: _Ingest) -> None:
        if self._ingest is not ingest:
            return
        self._ingest = None
        self.codecs = {}
        self._gop.clear()
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        self._audio_tail.clear()
        self._parameter_sets = H264ParameterSets()
        for kind, consumers in self._consumers.items():
            ended = list(consumers)
            consumers.clear()
            for consumer in ended:
                self._counters[kind].skipped += consumer.skipped
                consumer._end()
        log.info("media.ingest_ended", stage=self.stage, ingest=ingest.number)

    async def _drain(self, ingest: _Ingest, slot: _Track, track: MediaStreamTrack) -> None:
        try:
            while True:
                try:
                    item = await track.recv()
                except MediaStreamError:
                    break
                if not isinstance(item, av.Packet):
                    # A decoding receiver: the seam was not applied to it. Passing
                    # decoded frames on would mean transcoding; refuse loudly.
                    log.error("media.ingest_not_passthrough", stage=self.stage, kind=slot.kind)
                    break
                try:
                    self._receive(ingest, slot, item)
                except Exception:
                    # One frame the hub chokes on must not end the stage's stream.
                    log.exception("media.packet_failed", stage=self.stage, kind=slot.kind)
        finally:
            slot.ended = True
            if all(t.ended for t in ingest.tracks.values()):
                self._end_ingest(ingest)

    def _receive(self, ingest: _Ingest, slot: _Track, item: av.Packet[Any]) -> None:
        if self._ingest is not ingest or item.pts is None or item.time_base is None:
            return
        arrival = self._clock()
        kind = slot.kind
        codec = str(item.opaque) if item.opaque is not None else _default_codec(kind)
        time_base = Fraction(item.time_base.numerator, item.time_base.denominator)
        rtp = slot.unwrap.unwrap(item.pts)
        if ingest.start is None:
            ingest.start = arrival
        if slot.first is None:
            slot.first = rtp
            slot.offset = round((arrival - ingest.start) / time_base)
        data = bytes(item)
        if codec == "h264":
            data = self._parameter_sets.complete(data)
        packet = MediaPacket(
            kind=kind,
            codec=codec,
            data=data,
            pts=rtp - slot.first + slot.offset,
            time_base=time_base,
            keyframe=is_keyframe(kind, codec, data),
            arrival=arrival,
        )
        self.codecs[kind] = codec
        self.feed(packet)

    def feed(self, packet: MediaPacket) -> None:
        """Hand one packet of the current ingest to the cache and every consumer.

        The drain tasks call this; it is public for tests and for feeding a hub from
        something other than a peer connection (a file, another node).

        Args:
            packet: the next packet of its kind.
        """
        self._counters[packet.kind].add(packet)
        if packet.kind == "video":
            self._gop.add(packet)
            if packet.keyframe:
                self._trim_audio_tail(packet)
        else:
            self._audio_tail.append(packet)
        lagging = False
        for consumer in list(self._consumers[packet.kind]):
            if not consumer._push(packet):
                lagging = True
                log.info("media.consumer_lagging", stage=self.stage, consumer=consumer.name)
        if lagging:
            self.request_keyframe()

    def _trim_audio_tail(self, keyframe: MediaPacket) -> None:
        start = keyframe.seconds
        tail = self._audio_tail
        while tail and tail[0].seconds < start:
            tail.popleft()

    # --- consumers ---------------------------------------------------------------------

    def consumer(
        self,
        kind: Kind,
        *,
        name: str,
        max_packets: int | None = None,
        playhead: Playhead | None = None,
    ) -> Consumer:
        """A new consumer of ``kind``.

        Video starts with the cached GOP (a keyframe at once); when there is none it
        waits for the next keyframe, which is requested. Audio starts at the cached
        keyframe's media time, or live. Made while nothing is published, a consumer
        belongs to the next ingest and starts at its first keyframe.

        A live consumer (``playhead`` given: a WHEP viewer's) is paced by it, jumps to a
        fresh keyframe whenever it is behind, and, when the cached keyframe is older
        than ``fresh_keyframe_age``, asks for a fresh one through the rate limit.

        Args:
            kind: ``"video"`` or ``"audio"``.
            name: for logs and stats.
            max_packets: queue bound (default: the hub's ``queue_packets``).
            playhead: the viewer's playhead, shared by its video and audio consumers.

        Returns:
            The consumer; :meth:`Consumer.close` it when done.

        Raises:
            Invalid: an unknown kind, or a bound below 1.
        """
        kind = as_kind(kind)
        ingest = self._ingest.number if self._ingest is not None else self._ingests + 1
        consumer = Consumer(
            self,
            kind,
            name,
            max_packets or self.queue_packets,
            ingest=ingest,
            playhead=playhead,
        )
        if kind == "video":
            cached = self._gop.packets()
            if cached and len(cached) <= consumer.max_packets:
                consumer._start(cached, skipping=False)
                if playhead is not None:
                    # It starts at once on the old keyframe, paced, and jumps to the
                    # fresh one when it comes (Consumer._push).
                    self.request_fresh_keyframe()
            else:
                consumer._start([], skipping=True)
                if self.publishing:
                    self.request_keyframe()
        else:
            start = self._gop.start
            tail = list(self._audio_tail) if start is not None else []
            consumer._start(tail[-consumer.max_packets :], skipping=False)
        self._consumers[kind][consumer] = None
        return consumer

    def _remove(self, consumer: Consumer) -> None:
        if consumer in self._consumers[consumer.kind]:
            del self._consumers[consumer.kind][consumer]
            self._counters[consumer.kind].skipped += consumer.skipped

    def consumer_names(self, kind: Kind) -> list[str]:
        """Names of the current consumers of ``kind``."""
        return [c.name for c in self._consumers[kind]]

    # --- keyframes ---------------------------------------------------------------------

    def request_fresh_keyframe(self) -> bool:
        """A live viewer is starting: ask for a keyframe if the cached one is old.

        "Old" is older than ``fresh_keyframe_age``; the request goes through the rate
        limit of :meth:`request_keyframe`. When the limit holds it back, it is made
        once the limit allows, if a live viewer is still behind then and no keyframe
        came meanwhile. Called when a WHEP viewer's offer is answered, so the keyframe
        is on its way while the viewer connects, and again when its consumer starts.

        Returns:
            Whether a request went upstream now.
        """
        if not self._cache_is_old():
            return False
        if self.request_keyframe():
            return True
        self._defer_fresh_keyframe()
        return False

    def _cache_is_old(self) -> bool:
        start = self._gop.start
        return (
            start is not None
            and self.fresh_keyframe_age is not None
            and self._clock() - start.arrival > self.fresh_keyframe_age
        )

    def _defer_fresh_keyframe(self) -> None:
        last = self._last_request
        if self._deferred is not None or last is None or not self.publishing:
            return
        wait = last + self.keyframe_interval - self._clock()
        if wait <= 0:
            return  # not held back by the limit (no video to ask)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a synchronous caller (tests): nothing to run it later
            return
        self._deferred = loop.call_later(wait, self._deferred_fresh_keyframe)

    def _deferred_fresh_keyframe(self) -> None:
        self._deferred = None
        # A viewer may have caught up by the pacing meanwhile: then no keyframe is due.
        behind = any(
            c.playhead is not None and not c.playhead.live for c in self._consumers["video"]
        )
        if behind and self._cache_is_old():
            self.request_keyframe()

    def request_keyframe(self) -> bool:
        """Ask the publisher for a keyframe, at most once per ``keyframe_interval``.

        Returns:
            Whether the request went upstream (False: rate-limited, or no video).
        """
        ingest = self._ingest
        video = ingest.tracks.get("video") if ingest is not None else None
        if video is None or video.ended:
            return False
        now = self._clock()
        if self._last_request is not None and now - self._last_request < self.keyframe_interval:
            self._requests_limited += 1
            return False
        self._last_request = now
        self._requests += 1
        try:
            video.request_keyframe()
        except Exception:  # a failing publisher connection must not break the fan-out
            log.exception("media.keyframe_request_failed", stage=self.stage)
        return True

    # --- stats -------------------------------------------------------------------------

    def note_lost(self, kind: Kind, packets: int) -> None:
        """Record the RTP packets lost on the way in, as the receiver counts them.

        Args:
            kind: the track's kind.
            packets: the receiver's cumulative count for the current ingest.
        """
        self._counters[kind].lost = packets

    @property
    def profile(self) -> str | None:
        """H.264 ``profile-level-id`` of the current ingest: from its in-band SPS, or as
        negotiated until the first SPS arrives."""
        return self._parameter_sets.profile_level_id

    @property
    def stats(self) -> HubStats:
        """A snapshot of the hub's health now."""
        now = self._clock()

        def kind_stats(kind: Kind) -> KindStats:
            c = self._counters[kind]
            bitrate, fps = c.rates(now)
            return KindStats(
                codec=self.codecs.get(kind),
                packets=c.packets,
                bytes=c.bytes,
                bitrate_bps=bitrate,
                fps=fps,
                keyframes=c.keyframes,
                last_keyframe_interval_s=c.last_keyframe_interval_s,
                last_packet_age_s=None if c.last_arrival is None else now - c.last_arrival,
                lost=c.lost,
                consumers=len(self._consumers[kind]),
                skipped=c.skipped + sum(x.skipped for x in self._consumers[kind]),
                profile=self.profile if kind == "video" else None,
            )

        return HubStats(
            publishing=self.publishing,
            video=kind_stats("video"),
            audio=kind_stats("audio"),
            keyframe_requests=self._requests,
            keyframe_requests_limited=self._requests_limited,
            ingests=self._ingests,
            gop_packets=len(self._gop),
            gop_bytes=self._gop.bytes,
        )


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


def _default_codec(kind: Kind) -> str:
    return "h264" if kind == "video" else "opus"
