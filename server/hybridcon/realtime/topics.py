"""Subscribing to topics: snapshots from every capability, and recovery with ``since``."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import Field

from hybridcon.core.payloads import Join, Leave
from hybridcon.errors import TooLarge
from hybridcon.realtime.command import Capability, ModTopic, Request, command
from hybridcon.realtime.context import Context, Node, Subscriptions


class Ping(Request):
    """Application-level keep-alive; answered with ``{"ts": ...}``."""

    type: Literal["ping"]


class Subscribe(Request):
    """Join a topic; the result holds a snapshot and, with ``since``, what was missed."""

    type: Literal["subscribe"]
    topic: ModTopic
    since: int | None = Field(default=None, ge=0)


class Unsubscribe(Request):
    """Leave a topic."""

    type: Literal["unsubscribe"]
    topic: ModTopic


class Topics(Capability):
    """``ping``, ``subscribe`` and ``unsubscribe``."""

    def __init__(self, node: Node, subscriptions: Subscriptions) -> None:
        super().__init__(node)
        self._subs = subscriptions

    @command(Ping)
    async def ping(self, _ctx: Context, _request: Ping) -> dict[str, Any]:
        """Keep-alive: the server's time."""
        return {"ts": self._node.clock().isoformat()}

    @command(Subscribe, scope="topic")
    async def subscribe(self, ctx: Context, request: Subscribe) -> bytes:
        """Join a topic: a snapshot of its state, what was missed since ``since``, then live."""
        topic = request.topic
        moderator = topic.startswith("mod:")
        subs = self._subs
        # Load first (it may wait for the database), then take the snapshot, subscribe
        # and read the sequence number in one step, so nothing falls between snapshot
        # and live.
        limit = self._node.settings.ws_max_topics
        if topic not in ctx.topics and len(ctx.topics) >= limit:
            raise TooLarge(f"you follow {limit} topics already; unsubscribe from one first")
        base = topic.removeprefix("mod:")
        await subs.watch(topic)
        await subs.load(base)
        snapshot = subs.snapshot(ctx, base, moderator)
        snapshot.setdefault("chat", orjson.Fragment(b"[]"))
        first = subs.subscribe(ctx.conn, topic)
        seq = subs.last_seq(topic)
        missed: list[bytes] | None = []
        if request.since is not None:
            missed = subs.since(topic, request.since)
        snapshot["viewers"] = self._node.audience(topic)
        if first and not moderator:
            ctx.engage(Join(), topic)
        return orjson.dumps(
            {
                "topic": topic,
                "seq": seq,
                "snapshot": snapshot,
                "missed": orjson.Fragment(b"[" + b",".join(missed or []) + b"]"),
                "reset": missed is None,
            }
        )

    @command(Unsubscribe)
    async def unsubscribe(self, ctx: Context, request: Unsubscribe) -> dict[str, Any]:
        """Leave a topic."""
        topic = request.topic
        if self._subs.unsubscribe(ctx.conn, topic) and not topic.startswith("mod:"):
            ctx.engage(Leave(), topic)
        return {"topic": topic}
