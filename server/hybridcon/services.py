"""What the drivers share on one node, kept on the application under one typed key."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from aiohttp import web

from hybridcon.access import AccessControl
from hybridcon.bus.protocol import Bus
from hybridcon.clock import Clock
from hybridcon.core.admission import Network, client_address
from hybridcon.core.programme import Programme
from hybridcon.core.ratelimit import KeyedLimiter
from hybridcon.metrics import Metrics
from hybridcon.settings import Settings
from hybridcon.store.engagement import EngagementWriter
from hybridcon.store.revocations import RevocationMirror


@dataclass
class Services:
    """The node's live parts, filled in by the application's start-up contexts."""

    settings: Settings
    clock: Clock
    metrics: Metrics
    programme: Programme
    redeem_limiter: KeyedLimiter
    hall_limiter: KeyedLimiter
    hall_guess_limiter: KeyedLimiter
    bus: Bus
    pool: asyncpg.Pool | None = None
    access: AccessControl | None = None
    revocations: RevocationMirror | None = None
    invite_secret: bytes = b""
    actor_key: bytes = b""
    # The secret shared with coturn (use-auth-secret); None while no TURN URLs are set.
    turn_secret: bytes | None = None
    engagement: EngagementWriter | None = None
    draining: bool = False
    ready_checks: list[str] = field(default_factory=list)
    proxies: tuple[Network, ...] = ()

    def client_address(self, request: web.Request) -> str:
        """The client's address: ``X-Forwarded-For`` when a trusted proxy sent the
        request (``reverse_proxies``), else the peer (see :func:`core.admission.client_address`)."""
        return client_address(
            request.remote or "unknown",
            request.headers.get("X-Forwarded-For"),
            self.proxies,
        )

    def db(self) -> asyncpg.Pool:
        """The connection pool (present once the database context has run)."""
        assert self.pool is not None, "database context has not started"
        return self.pool

    def auth(self) -> AccessControl:
        """Token verification (present once the keys context has run)."""
        assert self.access is not None, "keys context has not started"
        return self.access


SERVICES = web.AppKey("services", Services)
