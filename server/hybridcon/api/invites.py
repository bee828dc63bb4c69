"""``POST /api/v1/invites/redeem``: swap an invite code for an access token."""

from __future__ import annotations

import time
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from hybridcon.api.bodies import read_json
from hybridcon.core.invites import device_hash, new_device_id, normalise_code
from hybridcon.core.tokens import TokenRequest
from hybridcon.errors import HybridconError, RateLimited
from hybridcon.services import SERVICES
from hybridcon.store import invites


class RedeemBody(BaseModel):
    """The code, and the device identifier the client keeps (absent on first use)."""

    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    device: Annotated[str, StringConstraints(min_length=8, max_length=200)] | None = None


async def redeem(request: web.Request) -> web.Response:
    """Redeem a code: the first device binds it; only that device may redeem it again.

    The response carries ``device``: a client that sent none gets one and must send it
    when it redeems again (for a fresh token after the old one expired).
    """
    services = request.app[SERVICES]
    metrics = services.metrics
    wait = services.redeem_limiter.take(services.client_address(request), time.monotonic())
    if wait:
        metrics.invite_redeems.labels(outcome="rate_limited").inc()
        raise RateLimited("too many redeem attempts; try again shortly", retry_after=wait)
    try:
        body = await read_json(request, RedeemBody)
        code = normalise_code(body.code)
        device = body.device or new_device_id()
        now = services.clock()
        async with services.db().acquire() as conn:
            invite = await invites.redeem(conn, code=code, device=device_hash(device), now=now)
        ttl = min(services.settings.token_ttl, invite.valid_until - now)
        token, claims = services.auth().issue(
            TokenRequest(
                role=invite.role, scopes=invite.scopes, name=invite.name, sub=invite.sub, ttl=ttl
            ),
            via="invite",
        )
    except HybridconError as exc:
        metrics.invite_redeems.labels(outcome=exc.code).inc()
        raise
    metrics.invite_redeems.labels(outcome="ok").inc()
    return web.json_response(
        {
            "token": token,
            "expires_at": claims.exp.isoformat(),
            "device": device,
            "user": claims.to_user(),
        }
    )
