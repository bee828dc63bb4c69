"""Reactions: a small fixed set of emoji, counted per topic and pushed at most once a second."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import StringConstraints

from hybridcon.core.payloads import Reaction
from hybridcon.errors import Invalid
from hybridcon.realtime.command import Capability, Request, Topic, command
from hybridcon.realtime.context import Context, Node

EMOJI = ("👏", "❤️", "😂", "😮", "👍", "🎉")
PUSH_INTERVAL = 1.0


class React(Request):
    """A reaction from the small fixed set; counts are pushed at most once a second."""

    type: Literal["react"]
    topic: Topic
    emoji: Annotated[str, StringConstraints(max_length=8)]


class Reactions(Capability):
    """Counts since the last push, per topic."""

    pushes: ClassVar[Mapping[str, str]] = {
        "reactions": "the counts since the last push, at most once a second"
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self._counts: dict[str, Counter[str]] = {}

    async def start(self) -> None:
        """Start the once-a-second push."""
        self._node.every(PUSH_INTERVAL, self.push, "reactions")

    def add(self, topic: str, emoji: str) -> None:
        """Count one reaction."""
        self._counts.setdefault(topic, Counter())[emoji] += 1

    def push(self) -> None:
        """Push ``reactions {counts}`` for every topic that had some since the last push."""
        counts, self._counts = self._counts, {}
        for topic, counter in counts.items():
            self._node.broadcast(topic, "reactions", {"counts": dict(counter)})

    @command(React, scope="topic")
    async def react(self, ctx: Context, request: React) -> dict[str, Any]:
        """Count a reaction; everyone on the topic sees the totals within a second."""
        if request.emoji not in EMOJI:
            raise Invalid(f"emoji must be one of {' '.join(EMOJI)}")
        self.add(request.topic, request.emoji)
        ctx.engage(Reaction(emoji=request.emoji), request.topic)
        return {}
