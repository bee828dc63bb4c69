"""Topics on this node: who is subscribed, publishing (serialised once), viewer counts.

A message is encoded to JSON once and framed once per fan-out; every subscriber gets
the same bytes. Sequenced messages go through the bus (sequence number and history
for ``since``). Viewer counts are read from here once per ``COUNT_INTERVAL`` and pushed,
added up across nodes, by :mod:`hybridcon.realtime.viewers`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from hybridcon.bus.protocol import Bus
from hybridcon.realtime.connection import Connection, Flusher
from hybridcon.realtime.wire import text_frame

COUNT_INTERVAL = 1.0
ENVELOPE = frozenset(("type", "topic", "seq"))
"""The keys of a push that the hub writes; a message's fields may not carry them."""


def _check_fields(kind: str, fields: Mapping[str, Any]) -> None:
    if not ENVELOPE.isdisjoint(fields):
        clash = sorted(ENVELOPE.intersection(fields))
        raise ValueError(f"{kind} fields may not carry the envelope's {clash}")


class Hub:
    """Subscriptions and fan-out for one node."""

    def __init__(self, *, bus: Bus, flusher: Flusher) -> None:
        self.bus = bus
        bus.bind(self._deliver)
        # Frames published on a topic during the current tick, joined and queued to every
        # subscriber once per tick (see Flusher).
        self._pending: dict[str, list[bytes]] = {}
        # Who subscribed to a topic while it had frames pending, and how many: they get
        # only the frames after those (the others are in their snapshot or `missed`).
        self._newcomers: dict[str, dict[Connection, int]] = {}
        self._flusher = flusher
        flusher.sources.append(self.flush_topics)
        self._subscribers: dict[str, dict[Connection, None]] = {}
        self._people: dict[str, Counter[str]] = {}  # topic -> sub -> connections
        # Topics between nodes, not clients (see realtime/signals.py): handed over whole.
        self._internal: dict[str, Callable[[bytes], None]] = {}
        # Who keeps state from the messages as this node delivers them (see on_delivered).
        self._taps: list[Callable[[str, bytes], None]] = []

    def on_delivered(self, tap: Callable[[str, bytes], None]) -> None:
        """Call ``tap(topic, message)`` for every message this node delivers, before its
        subscribers get it, subscribed or not: state kept from the pushes themselves
        changes in the same step as the pushes reach this node's clients."""
        self._taps.append(tap)

    def on_internal(self, topic: str, receive: Callable[[bytes], None]) -> None:
        """Hand ``topic``'s messages to ``receive`` (a topic no client subscribes to)."""
        self._internal[topic] = receive

    # --- subscriptions -------------------------------------------------------------------

    def subscribe(self, conn: Connection, topic: str) -> bool:
        """Add ``conn`` to ``topic``; returns False when it already was.

        What the topic published before this moment (and has not yet written) goes to
        the subscribers it was published to, not to the newcomer: its snapshot and
        ``missed`` already hold it. It is not written now but at the tick, with the rest:
        writing it at every join would split the tick's lines into one write each while
        an audience joins.
        """
        subs = self._subscribers.setdefault(topic, {})
        if conn in subs:
            return False
        frames = self._pending.get(topic)
        if frames:
            self._newcomers.setdefault(topic, {})[conn] = len(frames)
        subs[conn] = None
        conn.topics += (topic,)
        people = self._people.setdefault(topic, Counter())
        people[conn.claims.sub] += 1
        return True

    def unsubscribe(self, conn: Connection, topic: str) -> bool:
        """Remove ``conn`` from ``topic``; returns False when it was not subscribed."""
        subs = self._subscribers.get(topic)
        if not subs or conn not in subs:
            return False
        del subs[conn]
        newcomers = self._newcomers.get(topic)
        if newcomers:
            newcomers.pop(conn, None)
        conn.topics = tuple(t for t in conn.topics if t != topic)
        if not subs:
            del self._subscribers[topic]
        people = self._people[topic]
        people[conn.claims.sub] -= 1
        if people[conn.claims.sub] <= 0:
            del people[conn.claims.sub]
        if not people:
            del self._people[topic]
        return True

    def drop(self, conn: Connection) -> list[str]:
        """Remove ``conn`` from every topic; returns the topics it was in."""
        topics = list(conn.topics)
        for topic in topics:
            self.unsubscribe(conn, topic)
        return topics

    def viewers(self, topic: str) -> int:
        """Distinct people subscribed to ``topic`` on this node."""
        return len(self._people.get(topic, ()))

    def subscribers(self, topic: str) -> int:
        """Connections subscribed to ``topic``."""
        return len(self._subscribers.get(topic, ()))

    # --- publishing ----------------------------------------------------------------------

    def _deliver(self, topic: str, payload: bytes) -> None:
        for tap in self._taps:
            tap(topic, payload)
        if topic not in self._subscribers:
            receive = self._internal.get(topic)
            if receive is not None:
                receive(payload)
            return
        frames = self._pending.get(topic)
        if frames is None:
            self._pending[topic] = [text_frame(payload)]
            self._flusher.schedule()
        else:
            frames.append(text_frame(payload))

    def _flush_topic(self, topic: str) -> None:
        frames = self._pending.pop(topic, None)
        newcomers = self._newcomers.pop(topic, None)
        subs = self._subscribers.get(topic)
        if not frames or not subs:
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        if not newcomers:
            for conn in list(subs):
                if not conn.write_now(data):
                    conn.send_frame(data)
            return
        for conn in list(subs):
            seen = newcomers.get(conn)
            if seen is None:
                if not conn.write_now(data):
                    conn.send_frame(data)
            elif seen < len(frames):
                later = b"".join(frames[seen:])
                if not conn.write_now(later):
                    conn.send_frame(later)

    def flush_topics(self) -> None:
        """Queue every topic's frames of this tick to its subscribers (one join per topic)."""
        for topic in list(self._pending):
            self._flush_topic(topic)

    def publish(
        self, topic: str, kind: str, fields: Mapping[str, Any]
    ) -> asyncio.Future[tuple[int, bytes]]:
        """Publish a sequenced message (kept for ``since``), in call order.

        The message is encoded here, once, around the place of its ``seq``, which the bus
        assigns where it orders the topic's messages; on the local bus that is now, so the
        seq is taken and the message delivered in one step (no await), and seq order is
        delivery order.

        Returns:
            A future of the message's ``seq`` and its encoded form (done at once on the
            local bus).

        Raises:
            ValueError: ``fields`` carries ``type``, ``topic`` or ``seq`` (the envelope
                is the hub's; a field of that name would give the receiver a message
                that claims another topic's place in its sequence).
        """
        _check_fields(kind, fields)
        head = b'{"type":%b,"topic":%b,"seq":' % (orjson.dumps(kind), orjson.dumps(topic))
        body = orjson.dumps(fields)
        tail = b"," + body[1:] if len(body) > 2 else b"}"
        return self.bus.publish_sequenced(topic, head, tail)

    def broadcast(self, topic: str, kind: str, fields: Mapping[str, Any]) -> None:
        """Publish an unsequenced state message (not kept; newer state replaces it).

        Raises:
            ValueError: ``fields`` carries an envelope key (see :meth:`publish`).
        """
        _check_fields(kind, fields)
        self.bus.publish(topic, orjson.dumps({"type": kind, "topic": topic, **fields}))

    def broadcast_here(self, topic: str, kind: str, fields: Mapping[str, Any]) -> None:
        """An unsequenced state message to this node's subscribers only: state every
        node holds alike (poll results), pushed by each node to its own clients.

        Raises:
            ValueError: ``fields`` carries an envelope key (see :meth:`publish`).
        """
        _check_fields(kind, fields)
        self._deliver(topic, orjson.dumps({"type": kind, "topic": topic, **fields}))

    # --- viewer counts (read by realtime/viewers.py every COUNT_INTERVAL) -------------

    def counts(self) -> dict[str, int]:
        """Distinct people per topic on this node (``mod:`` topics left out)."""
        return {
            topic: len(people)
            for topic, people in self._people.items()
            if not topic.startswith("mod:")
        }
