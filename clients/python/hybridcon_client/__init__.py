"""An asyncio client for the hybridcon WebSocket API: chat, polls, Q&A, reactions, presence.

See :class:`HybridconClient`.
"""

from hybridcon_client.client import (
    RECONNECTED,
    RESYNC,
    SUBSCRIBE_FAILED,
    Event,
    HybridconClient,
)
from hybridcon_client.errors import (
    ERROR_CODES,
    ConnectionClosedByServer,
    ConnectionLost,
    HybridconClientError,
    HybridconError,
    RequestTimeout,
    should_reconnect,
)

__version__ = "0.1.0"

__all__ = [
    "ERROR_CODES",
    "RECONNECTED",
    "RESYNC",
    "SUBSCRIBE_FAILED",
    "ConnectionClosedByServer",
    "ConnectionLost",
    "Event",
    "HybridconClient",
    "HybridconClientError",
    "HybridconError",
    "RequestTimeout",
    "__version__",
    "should_reconnect",
]
