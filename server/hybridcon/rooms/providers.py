"""Choosing the room provider from the settings."""

from __future__ import annotations

from collections.abc import Callable

from aiortc import RTCIceServer

from hybridcon.core.rooms import RoomProvider
from hybridcon.errors import ConfigError
from hybridcon.rooms.builtin import BuiltinRooms
from hybridcon.settings import Settings


def make_provider(
    settings: Settings,
    *,
    ice_servers: Callable[[], list[RTCIceServer]],
) -> RoomProvider:
    """The room provider ``settings.rooms_provider`` names, not started yet.

    Args:
        settings: the node's settings (``rooms_provider``, caps, ICE).
        ice_servers: STUN/TURN servers for the provider's own peer connections (see
            :func:`hybridcon.media.ice.server_ice_servers`).

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
