"""Choosing the room provider from the settings."""

from __future__ import annotations

from collections.abc import Callable

from aiortc import RTCIceServer

from hybridcon.core.rooms import RoomProvider
from hybridcon.errors import ConfigError
from hybridcon.rooms.builtin import BuiltinRooms
from hybridcon.rooms.janus import JanusRooms
from hybridcon.settings import Settings


def make_provider(
    settings: Settings,
    *,
    ice_servers: Callable[[], list[RTCIceServer]],
) -> RoomProvider:
    """The room provider ``settings.rooms_provider`` names, not started yet (the janus
    provider reads its key files here: call it in a thread).

    Args:
        settings: the node's settings (``rooms_provider``, caps, ICE).
        ice_servers: STUN/TURN servers for the provider's own peer connections (see
            :func:`hybridcon.media.ice.server_ice_servers`).

    Raises:
        ConfigError: the provider cannot be made (janus: a key file is missing or too
            short).
    """
    if settings.rooms_provider == "builtin":
        return BuiltinRooms(
            max_peers=settings.room_max_peers,
            ice_servers=ice_servers,
            ice_addresses=settings.ice_addresses,
        )
    if settings.rooms_provider == "janus":
        # Janus gathers its own candidates and has its own STUN/TURN configuration
        # (deploy/janus); hybridcon's ICE servers are not its.
        return JanusRooms.from_settings(settings)
    raise ConfigError(f"unknown room provider {settings.rooms_provider!r}")
