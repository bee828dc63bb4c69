"""Subscribing to topics: access rules, snapshots, and recovery with ``since``."""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING, Any

import orjson

from hybridcon.core.engagement import EventKind
from hybridcon.realtime.access import check_topic
from hybridcon.realtime.chat import HELD_IN_SNAPSHOT
from hybridcon.realtime.polls import moderator_results
from hybridcon.realtime.protocol import Ping, Subscribe, Unsubscribe, handles

if TYPE_CHECKING:
    from hybridcon.realtime.connection import Connection
    from hybridcon.realtime.gateway import Gateway


@handles("ping")
async def ping(gateway: Gateway, _conn: Connection, _request: Ping) -> dict[str, Any]:
    """Keep-alive: the server's time."""
    return {"ts": gateway.services.clock().isoformat()}


@handles("subscribe")
async def subscribe(gateway: Gateway, conn: Connection, request: Subscribe) -> bytes:
    """Join a topic: a snapshot of its state, what was missed since ``since``, then live."""
    topic = request.topic
    check_topic(gateway, conn, topic)
    hub = gateway.hub
    # Build the snapshot first (it may wait for the database), then subscribe and read
    # the sequence number in one step, so nothing falls between snapshot and live.
    if topic.startswith("mod:"):
        base = topic.removeprefix("mod:")
        chat = await gateway.chat.get(base)
        qa = await gateway.qa.topic(base)
        snapshot: dict[str, Any] = {
            "held": list(islice(chat.held.values(), HELD_IN_SNAPSHOT)),
            "polls": [
                {**p.describe(results=False), "results": moderator_results(gateway, p)}
                for p in gateway.polls.open_on(base)
            ],
            "questions": qa.listing(moderator=True),
        }
        if gateway.stream_snapshot is not None:
            stream = gateway.stream_snapshot(topic, conn.claims)
            if stream is not None:
                snapshot["stream"] = stream
        recent: list[bytes] = []
    else:
        chat = await gateway.chat.get(topic)
        qa = await gateway.qa.topic(topic)
        recent = [payload for _, payload in chat.recent]
        snapshot = {
            "settings": chat.room.settings(),
            "polls": [
                {
                    **p.describe(results=p.tally.audience_sees_results()),
                    "voted": conn.claims.sub in p.tally.ballots,
                }
                for p in gateway.polls.open_on(topic)
            ],
            "questions": qa.listing(moderator=False),
            "qa": {"moderated": qa.settings.moderated, "anonymous": qa.settings.anonymous},
        }
        if gateway.stream_snapshot is not None:
            stream = gateway.stream_snapshot(topic, conn.claims)
            if stream is not None:
                snapshot["stream"] = stream
    first = hub.subscribe(conn, topic)
    seq = hub.bus.last_seq(topic)
    missed: list[bytes] | None = []
    if request.since is not None:
        missed = hub.bus.since(topic, request.since)
    snapshot["viewers"] = hub.viewers(topic)
    if first and not topic.startswith("mod:"):
        gateway.engage(EventKind.JOIN, conn, topic, {})
    return orjson.dumps(
        {
            "topic": topic,
            "seq": seq,
            "snapshot": {**snapshot, "chat": orjson.Fragment(b"[" + b",".join(recent) + b"]")},
            "missed": orjson.Fragment(b"[" + b",".join(missed or []) + b"]"),
            "reset": missed is None,
        }
    )


@handles("unsubscribe")
async def unsubscribe(gateway: Gateway, conn: Connection, request: Unsubscribe) -> dict[str, Any]:
    """Leave a topic."""
    if gateway.hub.unsubscribe(conn, request.topic) and not request.topic.startswith("mod:"):
        gateway.engage(EventKind.LEAVE, conn, request.topic, {})
    return {"topic": request.topic}
