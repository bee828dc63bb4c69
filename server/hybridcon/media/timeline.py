"""The stage's shared timeline, and a stage's streams merged on it in time order.

The hub gives both kinds one zero (its ingest's first packet, each kind placed by its
arrival), so the packets' ``pts`` are points on one timeline, counted here in ticks of
1/90 000 s, the MPEG-TS clock. :class:`PacketMerger` reads one reader's video and audio
sources (the HLS packager's, the recorder's) and hands their packets out in timeline
order, so that segment cuts and file writes fall between the right packets.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from hybridcon.media.packets import MediaPacketLike, PacketSource

TS_HZ = 90_000
"""The MPEG-TS clock, and the shared timeline's unit (ticks)."""

MAX_SKEW_SECONDS = 1.0
"""How far one stream may run ahead of a silent other before it is muxed without it."""

BATCH_SECONDS = 0.2
"""How long a reader that needs no packet the moment it arrives (HLS, the recorder,
the health probe) rests after emptying its hub consumer: segments, recordings and
health are up to this much later, for a fraction of the wake-ups."""


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
    :class:`~hybridcon.media.consumer.Consumer`) is rested on; any other returns at once.

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


@dataclass(frozen=True, slots=True)
class MuxPacket:
    """One packet ready for a segment: H.264 as received, or an ADTS AAC frame.

    Attributes:
        kind: ``"video"`` or ``"audio"``.
        data: The bytes to mux.
        ticks: Its time on the stage's timeline.
        duration: Its length in ticks.
        keyframe: Whether a decoder can start here.
    """

    kind: str
    data: bytes
    ticks: int
    duration: int
    keyframe: bool
