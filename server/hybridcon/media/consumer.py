"""A reader of a stage hub: one kind of its packets through a bounded queue of its own,
handed out at once or, for a WHEP viewer, paced by the viewer's :class:`Playhead`.

The hub gives every consumer the same packet objects. What a consumer does when it lags
(it drops what it holds, up to the next keyframe) or when it is live and behind (it jumps
to a fresh keyframe, its audio with it) happens inside it, so one slow reader never slows
the hub or another reader. How consumers start, on the cached GOP, is the hub's part
(:meth:`~hybridcon.media.hub.StageHub.consumer`).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from hybridcon.errors import Invalid
from hybridcon.media.packets import Kind, MediaPacket

if TYPE_CHECKING:
    from hybridcon.media.hub import StageHub

# A live viewer that starts behind live (on the cached GOP) is sent it at this multiple
# of real time. Unpaced, a GOP of more than ~1.1 s at 2.5 Mbit/s overflowed an aiortc
# viewer's default UDP receive buffer (212 992 bytes) and cost it 1.3-1.7 s. At 4x a
# viewer 2 s behind is live after 0.67 s, with no loss measured (3x: 1 s); see
# docs/benchmarks.md, "Time to first frame".
CATCH_UP_RATE = 4.0
# A live viewer whose queue starts this far (media seconds) behind a new keyframe drops
# what it holds and jumps to the keyframe: it would only play old frames.
LIVE_LAG = 0.2
# Audio this far behind a live viewer's playhead after a jump is dropped, not played.
AUDIO_SLACK = 0.05
# A live viewer whose next due packet reached the hub less than this long ago has
# caught up: it stops being paced.
CAUGHT_UP = 0.1


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

    @property
    def viewer(self) -> bool:
        """Whether this consumer plays to a viewer (it has a playhead): a muted kind is
        not handed to viewers (:meth:`~hybridcon.media.hub.StageHub.mute`)."""
        return self.playhead is not None

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

    def _drop(self) -> None:
        """Forget what is queued (its kind was muted): none of it may go out now."""
        self.skipped += len(self._queue)
        self._queue.clear()

    def _resync(self) -> None:
        """Resume at the next keyframe (video after an unmute)."""
        self._drop()
        self._skipping = True

    def _end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


async def first_playable(consumers: list[Consumer]) -> bool:
    """Wait until one of ``consumers`` (one per kind, new) hands out its first packet:
    any audio, or a video keyframe (a video consumer starts at one). Closes them all.

    Returns:
        True when media arrived; False when every consumer ended first (the ingest
        ended before any playable packet).
    """
    reads = [asyncio.ensure_future(c.get()) for c in consumers]
    arrived = False
    try:
        while reads and not arrived:
            done, pending = await asyncio.wait(reads, return_when=asyncio.FIRST_COMPLETED)
            arrived = any(read.result() is not None for read in done)
            reads = list(pending)
    finally:
        for read in reads:
            read.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
        for consumer in consumers:
            consumer.close()
    return arrived
