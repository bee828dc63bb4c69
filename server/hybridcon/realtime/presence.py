"""``presence.heartbeat``: what a viewer's player is doing, every 30 s, for the report.

Viewer counts themselves (``presence.count``) are pushed by the node's topics, which
know who is subscribed; this capability logs what the players do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import StringConstraints

from hybridcon.core.payloads import Heartbeat
from hybridcon.errors import Invalid
from hybridcon.realtime.command import Capability, Request, Topic, command
from hybridcon.realtime.context import Context


class PresenceHeartbeat(Request):
    """Every 30 s while watching: what the player is doing."""

    type: Literal["presence.heartbeat"]
    topic: Topic
    playing: bool
    visible: bool
    muted: bool | None = None
    quality: (
        Annotated[str, StringConstraints(max_length=16, pattern=r"^[A-Za-z0-9_.-]*$")] | None
    ) = None


class Presence(Capability):
    """Heartbeats; the count pushes are declared here, sent by the node's topics."""

    pushes: ClassVar[Mapping[str, str]] = {
        "presence.count": "the topic's number of distinct viewers changed (at most 1/s)"
    }

    @command(PresenceHeartbeat)
    async def heartbeat(self, ctx: Context, request: PresenceHeartbeat) -> dict[str, Any]:
        """Log a heartbeat for a topic the connection watches; the reply carries the count."""
        if request.topic not in ctx.topics:
            raise Invalid(f"subscribe to {request.topic} before sending heartbeats for it")
        payload = Heartbeat(
            playing=request.playing,
            visible=request.visible,
            muted=request.muted,
            quality=request.quality or None,
        )
        ctx.engage(payload, request.topic)
        return {"viewers": self._node.audience(request.topic)}
