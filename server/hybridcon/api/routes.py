"""The HTTP routes, in one place."""

from __future__ import annotations

from aiohttp import web

from hybridcon.api import halls, health, invites, programme, tokens


def setup(app: web.Application) -> None:
    """Add every REST route to ``app``."""
    r = app.router
    r.add_get("/healthz", health.healthz)
    r.add_get("/readyz", health.readyz)
    r.add_get("/metrics", health.metrics)
    r.add_get("/.well-known/jwks.json", tokens.jwks)
    r.add_get("/api/v1/programme", programme.programme)
    r.add_post("/api/v1/tokens", tokens.issue)
    r.add_post("/api/v1/revocations", tokens.revoke)
    r.add_get("/api/v1/revocations", tokens.list_revocations)
    r.add_get("/api/v1/audit", tokens.audit_log)
    r.add_post("/api/v1/invites/redeem", invites.redeem)
    r.add_get("/api/v1/halls", halls.list_links)
    r.add_post("/api/v1/halls/{stage}/links", halls.create_link)
    r.add_post("/api/v1/halls/join", halls.join)
    r.add_delete("/api/v1/halls/links/{link_id}", halls.revoke_link)
