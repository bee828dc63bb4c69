"""The ``Bus``: what the node's topics need from whatever carries messages between nodes.

A bus numbers each topic's sequenced messages, keeps a bounded history of them for
clients that come back with ``since``, and hands every published message to the
delivery function bound to it (the node's hub, which fans it out to the local
subscribers). :class:`~hybridcon.bus.local.LocalBus` does it in one process; a Redis
bus does it across nodes. ``app.py`` makes the bus and hands it to the gateway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Deliver = Callable[[str, bytes], None]
"""Called with ``(topic, encoded message)`` for every message published on any topic."""


class Bus(Protocol):
    """Sequence numbers, history and delivery per topic."""

    def bind(self, deliver: Deliver) -> None:
        """Set where published messages are delivered on this node."""

    def next_seq(self, topic: str) -> int:
        """Reserve the next sequence number of ``topic``."""

    def last_seq(self, topic: str) -> int:
        """The newest sequence number of ``topic``."""

    def publish(self, topic: str, payload: bytes, seq: int | None = None) -> None:
        """Deliver an encoded message; with ``seq``, keep it in the topic's history."""

    def since(self, topic: str, seq: int) -> list[bytes] | None:
        """The messages after ``seq`` (oldest first), or None when history does not
        reach back to it: the client must reload the snapshot."""
