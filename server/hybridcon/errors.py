"""One exception tree, and one place that maps it to HTTP status, wire codes and close codes.

Anything raised inside a handler that is not a :class:`HybridconError` is a bug: the
client sees ``internal`` and a request id; the log sees the traceback. Internals never
reach a client.
"""

from __future__ import annotations

from typing import ClassVar

# WebSocket close codes (docs/protocol.md, "Close codes").
CLOSE_UNAUTHORIZED = 4001
CLOSE_FORBIDDEN = 4003
CLOSE_POLICY = 4008
CLOSE_GOING_AWAY = 1001  # the node cannot serve this connection now (Unavailable)
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013  # too many sockets waiting to sign in (IANA: Try Again Later)
# The node is draining (shutdown, a rolling restart): reconnect, another node takes over
# (RFC 6455 §7.4.1 leaves 1012 to the IANA registry: "Service Restart").
CLOSE_SERVICE_RESTART = 1012
DRAINING_REASON = "draining: reconnect, another node takes over"


class HybridconError(Exception):
    """Base of every error a client may be told about.

    Attributes:
        code: the stable wire code (``error.code`` in HTTP bodies and WebSocket replies).
        status: the HTTP status that carries it.
        message: a sentence for people naming what is wrong.
    """

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, detail: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}

    def to_body(self) -> dict[str, object]:
        """The JSON error body: ``{"error": {"code": ..., "message": ...}}``."""
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.detail:
            error["detail"] = self.detail
        return {"error": error}


class Unauthorized(HybridconError):
    """No credentials, or credentials that do not verify (bad, expired, revoked token)."""

    code = "unauthorized"
    status = 401


class Forbidden(HybridconError):
    """Valid credentials that do not allow this action."""

    code = "forbidden"
    status = 403


class Invalid(HybridconError):
    """Malformed or out-of-range input."""

    code = "invalid"
    status = 400


class NotFound(HybridconError):
    """The thing named does not exist."""

    code = "not_found"
    status = 404


class Conflict(HybridconError):
    """The request clashes with current state (already used, already exists)."""

    code = "conflict"
    status = 409


class TooLarge(HybridconError):
    """A payload over its limit."""

    code = "too_large"
    status = 413


class RateLimited(HybridconError):
    """Too many requests; try again later."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Closed(HybridconError):
    """The thing acted on is closed (a poll, a session)."""

    code = "closed"
    status = 409


class Muted(HybridconError):
    """The sender is timed out in this topic."""

    code = "muted"
    status = 403


class Banned(HybridconError):
    """The sender is banned from this topic."""

    code = "banned"
    status = 403


class Unavailable(HybridconError):
    """A dependency is down, the node is full or draining; retry later."""

    code = "unavailable"
    status = 503

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigError(HybridconError):
    """A configuration or programme file is wrong. Raised at start, never to a client."""

    code = "invalid"
    status = 500


class TokenError(Unauthorized):
    """A token failed verification; the message says why."""


class Revoked(TokenError):
    """The token's ``jti`` has been revoked."""


ERROR_CODES: tuple[str, ...] = (
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
)


def close_code_for(error: HybridconError) -> int:
    """The WebSocket close code for an error that ends a connection."""
    if isinstance(error, Revoked | Forbidden):
        return CLOSE_FORBIDDEN
    if isinstance(error, Unauthorized):
        return CLOSE_UNAUTHORIZED
    if isinstance(error, TooLarge):
        return CLOSE_TOO_BIG
    if isinstance(error, Unavailable):
        return CLOSE_GOING_AWAY
    return CLOSE_POLICY
