"""``GET /api/v1/programme``: the public programme."""

from __future__ import annotations

from aiohttp import web

from hybridcon.services import SERVICES


async def programme(request: web.Request) -> web.Response:
    """The event, themes, stages and sessions, times as ISO 8601 with offset."""
    return web.json_response(
        request.app[SERVICES].programme.public(),
        headers={"Cache-Control": "public, max-age=60"},
    )
