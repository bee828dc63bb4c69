"""The ICE servers hybridcon's peers and its participants' peers use: the configured STUN
(and static TURN) servers, and the TURN URLs with credentials minted per peer
(:mod:`hybridcon.core.turn`) when a secret is shared with coturn."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiortc import RTCIceServer

from hybridcon.core.turn import ice_servers, turn_credentials
from hybridcon.settings import Settings

# The TURN user hybridcon's own peer connections use (coturn logs it, counts its quota).
SERVER_TURN_USER = "hybridcon"


def peer_ice_servers(
    settings: Settings, turn_secret: bytes | None, now: datetime, user: str
) -> list[dict[str, Any]]:
    """The ICE servers for one peer as RTCIceServer dictionaries: the configured ones,
    and the TURN URLs with credentials minted for ``user`` (when a secret is given)."""
    credentials = (
        turn_credentials(turn_secret, user, now, settings.turn_ttl)
        if settings.turn_urls and turn_secret
        else None
    )
    return ice_servers(
        [server.model_dump() for server in settings.ice_servers], settings.turn_urls, credentials
    )


def server_ice_servers(
    settings: Settings, turn_secret: bytes | None, clock: Callable[[], datetime]
) -> Callable[[], list[RTCIceServer]]:
    """A function giving hybridcon's own peers their ICE servers, as aiortc wants them;
    called per connection, so minted TURN credentials are always fresh."""

    def make() -> list[RTCIceServer]:
        return [
            RTCIceServer(
                urls=list(s["urls"]), username=s.get("username"), credential=s.get("credential")
            )
            for s in peer_ice_servers(settings, turn_secret, clock(), SERVER_TURN_USER)
        ]

    return make
