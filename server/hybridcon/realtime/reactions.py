"""Reactions: a small fixed set of emoji, counted per topic and pushed at most once a second."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any

from hybridcon.core.engagement import EventKind
from hybridcon.errors import Invalid
from hybridcon.realtime.access import check_topic
from hybridcon.realtime.protocol import React, handles

if TYPE_CHECKING:
    from hybridcon.realtime.connection import Connection
    from hybridcon.realtime.gateway import Gateway

EMOJI = ("👏", "❤️", "😂", "😮", "👍", "🎉")
PUSH_INTERVAL = 1.0


class Reactions:
    """Counts since the last push, per topic."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._counts: dict[str, Counter[str]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, topic: str, emoji: str) -> None:
        """Count one reaction."""
        self._counts.setdefault(topic, Counter())[emoji] += 1

    def push(self) -> None:
        """Push ``reactions {counts}`` for every topic that had some since the last push."""
        counts, self._counts = self._counts, {}
        for topic, counter in counts.items():
            self._gateway.hub.broadcast(topic, "reactions", {"counts": dict(counter)})

    def start(self) -> None:
        """Start the once-a-second push."""
        self._task = asyncio.create_task(self._run(), name="reactions")

    async def stop(self) -> None:
        """Stop pushing."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(PUSH_INTERVAL)
            self.push()


@handles("react")
async def react(gateway: Gateway, conn: Connection, request: React) -> dict[str, Any]:
    """Count a reaction; everyone on the topic sees the totals within a second."""
    check_topic(gateway, conn, request.topic)
    if request.emoji not in EMOJI:
        raise Invalid(f"emoji must be one of {' '.join(EMOJI)}")
    gateway.reactions.add(request.topic, request.emoji)
    gateway.engage(EventKind.REACTION, conn, request.topic, {"emoji": request.emoji})
    return {}
