"""``/healthz`` (the process lives), ``/readyz`` (it can serve), ``/metrics``."""

from __future__ import annotations

import asyncio

from aiohttp import web

from hybridcon.services import SERVICES

READY_TIMEOUT = 2.0


async def healthz(_request: web.Request) -> web.Response:
    """200 while the process lives."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when PostgreSQL (and, on several nodes, the Redis bus) answers and the node
    is not draining; 503 otherwise."""
    services = request.app[SERVICES]
    checks: dict[str, str] = {}
    if services.draining:
        checks["node"] = "draining"
    else:
        checks["node"] = "ok"
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await services.db().fetchval("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["postgres"] = f"unavailable: {type(exc).__name__}"
    if services.settings.redis_url:
        # Not ready for new clients while the bus is away (their pushes would not reach
        # the other nodes); the sockets this node serves stay open and resume with it.
        checks["redis"] = "ok" if services.bus.connected else "unavailable: disconnected"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    body = request.app[SERVICES].metrics.render()
    return web.Response(
        body=body,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )
