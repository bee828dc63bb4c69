"""The in-process bus: per-topic sequence numbers and a bounded history, one process.

Every sequenced message on a topic gets the next ``seq`` and is kept (as its encoded
JSON) in a bounded history, so a client that reconnects with ``since`` gets what it
missed. Sequence numbers start, per topic and per process, from the wall clock in
milliseconds: after a restart they keep rising, so a client's ``since`` from before the
restart is simply older than the history (a ``reset``), never mistaken for a newer seq.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from hybridcon.bus.protocol import Deliver, Reconnected

DEFAULT_HISTORY = 500


@dataclass
class _TopicLog:
    seq: int
    frames: deque[tuple[int, bytes]] = field(default_factory=deque)


class LocalBus:
    """Sequence numbers and history per topic; delivery to this process's subscribers.

    Args:
        deliver: called with ``(topic, frame)`` for every published message (or later,
            through :meth:`bind`); until then messages are only kept.
        history: how many sequenced messages each topic keeps for ``since``.
        epoch_ms: the first sequence base (tests pass a fixed value).
    """

    def __init__(
        self,
        deliver: Deliver | None = None,
        *,
        history: int = DEFAULT_HISTORY,
        epoch_ms: int | None = None,
    ) -> None:
        self._deliver: Deliver = deliver if deliver is not None else _nowhere
        self._history = history
        self._epoch = epoch_ms if epoch_ms is not None else int(time.time() * 1000)
        self._topics: dict[str, _TopicLog] = {}

    def bind(self, deliver: Deliver) -> None:
        """Set where published messages are delivered."""
        self._deliver = deliver

    async def start(self) -> None:
        """Nothing to connect to."""

    async def stop(self) -> None:
        """Nothing to disconnect."""

    async def watch(self, topic: str) -> None:
        """Every topic is here already."""

    def on_reconnect(self, callback: Reconnected) -> None:
        """One process has no connection to lose: never called."""

    @property
    def connected(self) -> bool:
        """Always: there is nothing between this node and itself."""
        return True

    def publish_sequenced(
        self, topic: str, head: bytes, tail: bytes
    ) -> asyncio.Future[tuple[int, bytes]]:
        """Number, keep and deliver a message now; the future is already done."""
        seq = self.next_seq(topic)
        payload = b"%b%d%b" % (head, seq, tail)
        self.publish(topic, payload, seq)
        done: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        done.set_result((seq, payload))
        return done

    def _log(self, topic: str) -> _TopicLog:
        log = self._topics.get(topic)
        if log is None:
            log = self._topics[topic] = _TopicLog(seq=self._epoch)
        return log

    def next_seq(self, topic: str) -> int:
        """Reserve the next sequence number of ``topic`` (for a message about to be built)."""
        log = self._log(topic)
        log.seq += 1
        return log.seq

    def last_seq(self, topic: str) -> int:
        """The newest sequence number of ``topic`` (the base when nothing was sent yet)."""
        return self._log(topic).seq

    def publish(self, topic: str, payload: bytes, seq: int | None = None) -> None:
        """Deliver an encoded message; with ``seq``, keep it in the topic's history."""
        if seq is not None:
            frames = self._log(topic).frames
            frames.append((seq, payload))
            if len(frames) > self._history:
                frames.popleft()
        self._deliver(topic, payload)

    def since(self, topic: str, seq: int) -> list[bytes] | None:
        """The messages after ``seq``, oldest first.

        Returns:
            The encoded messages, or ``None`` when history does not reach back to ``seq``
            (or ``seq`` is from the future, e.g. from before a restart with a clock that
            went back): the client must then reload the snapshot.
        """
        log = self._log(topic)
        if seq == log.seq:
            return []
        if seq > log.seq:
            return None
        frames = log.frames
        if not frames or frames[0][0] > seq + 1:
            return None
        return [payload for s, payload in frames if s > seq]


def _nowhere(_topic: str, _payload: bytes) -> None:
    """Delivery before a hub is bound: nobody on this node subscribes yet."""
