"""``presence.heartbeat``: what a viewer's player is doing, every 30 s, for the report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hybridcon.core.engagement import EventKind
from hybridcon.errors import Invalid
from hybridcon.realtime.protocol import PresenceHeartbeat, handles

if TYPE_CHECKING:
    from hybridcon.realtime.connection import Connection
    from hybridcon.realtime.gateway import Gateway


@handles("presence.heartbeat")
async def heartbeat(
    gateway: Gateway, conn: Connection, request: PresenceHeartbeat
) -> dict[str, Any]:
    """Log a heartbeat for a topic the connection watches; the reply carries the count."""
    if request.topic not in conn.topics:
        raise Invalid(f"subscribe to {request.topic} before sending heartbeats for it")
    data: dict[str, Any] = {"playing": request.playing, "visible": request.visible}
    if request.muted is not None:
        data["muted"] = request.muted
    if request.quality:
        data["quality"] = request.quality
    gateway.engage(EventKind.HEARTBEAT, conn, request.topic, data)
    return {"viewers": gateway.hub.viewers(request.topic)}
