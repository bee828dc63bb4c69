"""Keys and tokens over HTTP: JWKS, issuing (organisers), revocation (organisers), audit."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from hybridcon.api.auth import require_role
from hybridcon.api.bodies import read_json
from hybridcon.core.tokens import Role, TokenRequest, parse_scopes
from hybridcon.services import SERVICES
from hybridcon.store import audit, revocations

MAX_TOKENS_PER_REQUEST = 1000


async def jwks(request: web.Request) -> web.Response:
    """The public keys that verify hybridcon tokens (RFC 7517 JWK Set)."""
    access = request.app[SERVICES].auth()
    access.reload_keyset()  # rate-limited: picks up a `keys rotate` done beside us
    return web.json_response(access.keyset.jwks(), headers={"Cache-Control": "public, max-age=300"})


class IssueBody(BaseModel):
    """``POST /api/v1/tokens``."""

    model_config = ConfigDict(extra="forbid")
    role: Role
    scopes: list[str] = Field(default_factory=lambda: ["*"], max_length=100)
    name: Annotated[str, StringConstraints(max_length=80)] = ""
    sub: str | None = None
    ttl_seconds: int | None = Field(default=None, gt=0, le=10 * 365 * 86400)
    count: int = Field(default=1, ge=1, le=MAX_TOKENS_PER_REQUEST)


async def issue(request: web.Request) -> web.Response:
    """Issue ``count`` tokens (each its own person unless ``sub`` is given). Organisers only."""
    claims = require_role(request, Role.ORGANISER)
    body = await read_json(request, IssueBody)
    services = request.app[SERVICES]
    scopes = parse_scopes(body.scopes)
    services.programme.check_scopes(scopes)
    ttl = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else None
    issued = []
    for _ in range(body.count):
        token, new = services.auth().issue(
            TokenRequest(role=body.role, scopes=scopes, name=body.name, sub=body.sub, ttl=ttl),
            via="api",
        )
        issued.append(
            {
                "token": token,
                "jti": new.jti,
                "sub": new.sub,
                "role": new.role.value,
                "scopes": list(new.scopes),
                "expires_at": new.exp.isoformat(),
            }
        )
    await audit.record_by(
        services.db(),
        claims,
        "token.issue",
        target=body.role.value,
        detail={"count": body.count, "scopes": list(scopes), "jtis": [t["jti"] for t in issued]},
    )
    return web.json_response({"tokens": issued}, status=201)


Jti = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


class RevokeBody(BaseModel):
    """``POST /api/v1/revocations``."""

    model_config = ConfigDict(extra="forbid")
    jti: Jti
    reason: Annotated[str, StringConstraints(max_length=500)] = ""
    expires_at: datetime | None = None


async def revoke(request: web.Request) -> web.Response:
    """Revoke a token by ``jti`` on every node; its open connections close with 4003."""
    claims = require_role(request, Role.ORGANISER)
    body = await read_json(request, RevokeBody)
    services = request.app[SERVICES]
    # Without the token's own expiry, keep the revocation for the longest lifetime a
    # token can have: after that nothing it could name is still valid.
    expires_at = body.expires_at or services.clock() + services.settings.token_max_ttl
    async with services.db().acquire() as conn:
        created = await revocations.revoke(
            conn, jti=body.jti, expires_at=expires_at, reason=body.reason, revoked_by=claims.sub
        )
        if created:
            await audit.record_by(
                conn, claims, "token.revoke", target=body.jti, detail={"reason": body.reason}
            )
    if services.revocations is not None:
        services.revocations.add(body.jti)  # this node at once; others by NOTIFY
    return web.json_response(
        {"jti": body.jti, "revoked": True, "new": created}, status=201 if created else 200
    )


async def list_revocations(request: web.Request) -> web.Response:
    """The active revocations. Organisers only."""
    require_role(request, Role.ORGANISER)
    services = request.app[SERVICES]
    rows = await revocations.listing(services.db(), services.clock())
    return web.json_response({"revocations": rows})


async def audit_log(request: web.Request) -> web.Response:
    """The newest audit rows (``?limit=``, at most 1000). Organisers only."""
    require_role(request, Role.ORGANISER)
    try:
        limit = min(1000, max(1, int(request.query.get("limit", "100"))))
    except ValueError:
        limit = 100
    rows = await audit.recent(request.app[SERVICES].db(), limit=limit)
    return web.json_response({"entries": rows})
