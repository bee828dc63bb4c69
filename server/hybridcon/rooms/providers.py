"""Choosing the room provider from the settings, and the ICE servers its peers use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiortc import RTCIceServer

from hybridcon.core.rooms import RoomProvider
from hybridcon.core.turn import ice_servers, turn_credentials
from hybridcon.errors import ConfigError
from hybridcon.rooms.builtin import BuiltinRooms
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


def make_provider(
    settings: Settings,
    *,
    ice_servers: Callable[[], list[RTCIceServer]],
) -> RoomProvider:
    """The room provider ``settings.rooms_provider`` names, not started yet.

    Args:
        settings: the node's settings (``rooms_provider``, caps, ICE).
        ice_servers: STUN/TURN servers for the provider's own peer connections (see
            :func:`server_ice_servers`).

    Raises:
        ConfigError: the provider named cannot be made here.
    """
    if settings.rooms_provider == "builtin":
        return BuiltinRooms(
            max_peers=settings.room_max_peers,
            ice_servers=ice_servers,
            ice_addresses=settings.ice_addresses,
        )
    # The janus provider's branch goes here (rooms/janus.py): it drives a Janus VideoRoom
    # and needs its own settings (URL, admin secret), not the ICE servers above.
    raise ConfigError(
        f"the room provider {settings.rooms_provider!r} is not available in this build"
    )
