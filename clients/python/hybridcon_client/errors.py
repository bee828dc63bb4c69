"""What the client raises, and which close codes end a session for good."""

from __future__ import annotations

from typing import Final

CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_ABNORMAL: Final = 1006
CLOSE_TOO_BIG: Final = 1009
CLOSE_INTERNAL: Final = 1011
CLOSE_UNAUTHORIZED: Final = 4001
CLOSE_FORBIDDEN: Final = 4003
CLOSE_POLICY: Final = 4008

#: Error codes of ``error`` replies, as the server documents them.
ERROR_CODES: Final = frozenset(
    {
        "unauthorized",
        "forbidden",
        "invalid",
        "not_found",
        "rate_limited",
        "muted",
        "banned",
        "closed",
        "conflict",
        "too_large",
        "unavailable",
        "internal",
    }
)


def should_reconnect(code: int, reason: str) -> bool:
    """Whether a connection the server closed with ``code`` may be opened again.

    4001 (bad or expired token) and 4003 (revoked, forbidden) would fail again with the
    same token; 4008 "too many connections for this person" would evict this person's
    other connection in turn. 4008 "too slow" and everything else (1012 a draining node:
    another takes over; 1001 going away, 1006, 1011, 1009 ...) is worth another try.
    """
    if code in (CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN):
        return False
    if code == CLOSE_POLICY:
        return reason.startswith("too slow")
    return True


class HybridconClientError(Exception):
    """Base class of everything this package raises."""


class HybridconError(HybridconClientError):
    """The server answered a request with an ``error`` reply.

    Attributes:
        code: one of :data:`ERROR_CODES` (``invalid``, ``rate_limited``, ``muted`` ...).
        message: the server's human-readable explanation.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConnectionLost(HybridconClientError):
    """The connection ended before a reply came, or there is no connection to use.

    A request that fails with this may or may not have reached the server: retry only
    what is safe to repeat (``poll.vote`` counts once per person; ``chat.send`` would
    post twice).

    Attributes:
        code: the WebSocket close code (1006 when the socket just vanished), or None.
        reason: the close reason or a description of what happened.
    """

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        detail = f"code {code}" if code is not None else "no close code"
        super().__init__(f"connection lost ({detail}){': ' + reason if reason else ''}")
        self.code = code
        self.reason = reason

    def copy(self) -> ConnectionLost:
        """A fresh exception of the same kind (one instance per waiting caller)."""
        return type(self)(self.code, self.reason)


class ConnectionClosedByServer(ConnectionLost):
    """The server ended the session for good: 4001, 4003 or 4008 "too many connections".

    Raised from :meth:`HybridconClient.connect` and at the end of
    :meth:`HybridconClient.events`; the client does not reconnect after it. With
    ``reconnect=False`` any close frame from the server ends the session this way.
    """

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(code, reason)
        self.args = (f"server closed the connection with {code}: {reason or '(no reason)'}",)


class RequestTimeout(HybridconClientError, TimeoutError):
    """No reply within ``request_timeout`` seconds (also a :class:`TimeoutError`).

    As with :class:`ConnectionLost`, the request may have been carried out.
    """

    def __init__(self, request_type: str, timeout: float) -> None:
        super().__init__(f"no reply to {request_type!r} within {timeout:g} s")
        self.request_type = request_type
        self.timeout = timeout
