"""The ``Bus``: what the node's topics need from whatever carries messages between nodes.

A bus numbers each topic's sequenced messages, keeps a bounded history of them for
clients that come back with ``since``, and hands every published message to the
delivery function bound to it (the node's hub, which fans it out to the local
subscribers). :class:`~hybridcon.bus.local.LocalBus` does it in one process;
:class:`~hybridcon.bus.redis.RedisBus` across nodes. ``app.py`` makes the bus and hands
it to the gateway.

A sequenced message is given as the JSON text before and after its number (``head`` and
``tail``): the number is only known where the bus assigns it (in Redis, atomically with
storing and fanning out the message), and the message is spliced there, so every node
delivers the same bytes in the same order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

Deliver = Callable[[str, bytes], None]
"""Called with ``(topic, encoded message)`` for every message published on any topic."""

Reconnected = Callable[[], None]
"""Called after the bus came back from losing its connection (messages between nodes
may have been lost meanwhile: state kept on the nodes is reloaded from storage)."""


class Bus(Protocol):
    """Sequence numbers, history and delivery per topic."""

    def bind(self, deliver: Deliver) -> None:
        """Set where published messages are delivered on this node."""

    async def start(self) -> None:
        """Connect (and load what the node needs to answer ``since``)."""

    async def stop(self) -> None:
        """Send what is queued, then disconnect."""

    async def watch(self, topic: str) -> None:
        """Make sure this node receives ``topic`` and can answer ``since`` for it (called
        before a client subscribes; a no-op once done)."""

    def publish_sequenced(
        self, topic: str, head: bytes, tail: bytes
    ) -> asyncio.Future[tuple[int, bytes]]:
        """Number, keep and deliver ``head + str(seq) + tail``, in call order per node.

        Returns:
            A future of ``(seq, message)``, done at once on a local bus.
        """

    def publish(self, topic: str, payload: bytes) -> None:
        """Deliver an unsequenced message (state that newer state replaces; not kept)."""

    def on_reconnect(self, callback: Reconnected) -> None:
        """Call ``callback`` each time the bus is connected again after a drop (never on
        a bus that cannot drop)."""

    @property
    def connected(self) -> bool:
        """Whether messages can reach the other nodes now (always on a local bus)."""

    def last_seq(self, topic: str) -> int:
        """The newest sequence number of ``topic`` delivered on this node."""

    def since(self, topic: str, seq: int) -> list[bytes] | None:
        """The messages after ``seq`` (oldest first), or None when history does not
        reach back to it: the client must reload the snapshot."""
