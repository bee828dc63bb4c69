"""The stage hub: one publisher's packets in, many consumers out, nothing transcoded.

A :class:`StageHub` drains each track of the current ingest (the publisher's video
and/or audio) in its own task that *always* reads, whoever is listening: aiortc's
track queue is unbounded, and an undrained ingest hands the first viewer seconds of
stale video (media findings: p95 3.2–3.7 s undrained, 91 ms drained). Every packet is
wrapped once as a :class:`~hybridcon.media.packets.MediaPacket` and the same object
goes to every consumer.

* **Last GOP.** The video packets since the last keyframe are kept (bounded by
  packets and bytes), so a new video consumer starts on a keyframe at once instead of
  waiting up to a GOP; a new audio consumer starts at the same media time, so a pair
  of consumers starts in sync. When the cache is unusable (no keyframe yet, or the
  GOP outgrew the bounds) a new video consumer waits for the next keyframe and the
  hub asks the publisher for one.
* **Live viewers catch up.** A WHEP viewer's consumers are *live*: a
  :class:`~hybridcon.media.consumer.Playhead` shared by its video and audio hands the
  cached GOP out at :data:`~hybridcon.media.consumer.CATCH_UP_RATE` times real time
  (unpaced, a GOP over ~1.1 s overflowed an aiortc viewer's UDP receive buffer), a
  cached keyframe older than ``fresh_keyframe_age`` makes the hub ask for a fresh one,
  and a live consumer still behind when a keyframe comes jumps to it, audio with it.
* **Slow consumers never slow anyone else.** Each consumer has a bounded queue. When
  it is full, the consumer drops what it holds and everything up to the next
  keyframe (counted in :attr:`~hybridcon.media.consumer.Consumer.skipped`), and the
  hub asks for a keyframe.
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
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import structlog
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from hybridcon.errors import Conflict
from hybridcon.media.consumer import Consumer, Playhead
from hybridcon.media.h264 import H264ParameterSets
from hybridcon.media.packets import Kind, MediaPacket, as_kind, is_keyframe
from hybridcon.media.stats import HubStats, KindCounters, KindStats

log = structlog.get_logger(__name__)

GOP_MAX_PACKETS = 600
GOP_MAX_BYTES = 8 * 1024 * 1024
# A live viewer starting on a cached keyframe older than this asks the publisher for a
# fresh one (through the rate limit) and jumps to it when it comes.
FRESH_KEYFRAME_AGE = 0.3

RTP_TIMESTAMP_MOD = 1 << 32


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
        self._counters: dict[Kind, KindCounters] = {
            "video": KindCounters(),
            "audio": KindCounters(),
        }
        self._ingest: _Ingest | None = None
        self._ingests = 0
        self._muted: set[Kind] = set()
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
        muted = packet.kind in self._muted
        lagging = False
        for consumer in list(self._consumers[packet.kind]):
            if muted and consumer.viewer:
                continue
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
        if kind in self._muted and consumer.viewer:
            # Nothing of a muted kind goes out; it starts at the next keyframe once unmuted.
            consumer._start([], skipping=kind == "video")
        elif kind == "video":
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

    def mute(self, kind: Kind, muted: bool) -> None:
        """Stop (or resume) handing ``kind`` to every viewer; the ingest is still drained.

        A room's host muting a participant's microphone or camera for everyone: the
        publisher keeps sending (the hub cannot stop its encoder), no viewer (a live
        consumer: one with a playhead) receives. The hub's own readers (a first-media
        watch, HLS, the recorder, the probe) still get every packet. On unmute, audio
        resumes with the next packet and video with the next keyframe, which is
        requested (a consumer cannot start in the middle of a GOP).

        Args:
            kind: ``"video"`` or ``"audio"``.
            muted: True to stop forwarding, False to resume.

        Raises:
            Invalid: an unknown kind.
        """
        kind = as_kind(kind)
        if muted == (kind in self._muted):
            return
        if muted:
            self._muted.add(kind)
            for consumer in self._consumers[kind]:
                if consumer.viewer:
                    consumer._drop()
            log.info("media.kind_muted", stage=self.stage, kind=kind)
            return
        self._muted.discard(kind)
        log.info("media.kind_unmuted", stage=self.stage, kind=kind)
        if kind == "video":
            for consumer in self._consumers[kind]:
                if consumer.viewer:
                    consumer._resync()
            self.request_keyframe()

    def muted(self, kind: Kind) -> bool:
        """Whether ``kind`` is muted (see :meth:`mute`)."""
        return kind in self._muted

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


def _default_codec(kind: Kind) -> str:
    return "h264" if kind == "video" else "opus"
