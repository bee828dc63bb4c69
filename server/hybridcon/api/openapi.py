"""``GET /api/v1/openapi.json``: an OpenAPI 3.1 description generated from the route table.

It lists every method and path of :data:`hybridcon.api.routes.ROUTES` with its summary,
its path parameters and the credential it takes, so it cannot drift from the router.
Request and response bodies are described in ``docs/protocol.md``, which the description
links to; the WebSocket protocol is not an OpenAPI thing and is only named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

from aiohttp import web

from hybridcon import __version__

# aiohttp's `{name}` and `{name:regex}` path parameters.
_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")

_SECURITY = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
}


class RouteLike(Protocol):
    """What the generator needs of a route."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def auth(self) -> str: ...


def openapi_path(path: str) -> tuple[str, list[str]]:
    """An aiohttp path in OpenAPI form (``{name:.*}`` becomes ``{name}``), and its params."""
    names = _PARAM.findall(path)
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path), names


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    return f"{method.lower()}_{words}"


def document(routes: Iterable[RouteLike], *, server_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``routes``.

    Args:
        routes: the route table, in order (order is kept within each path).
        server_url: the node's public base URL, listed under ``servers``.

    Returns:
        A JSON-ready dict.
    """
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path, params = openapi_path(route.path)
        operation: dict[str, Any] = {
            "operationId": _operation_id(route.method, route.path),
            "summary": route.summary,
            "responses": {
                "default": {
                    "description": 'see docs/protocol.md; errors are {"error": {"code", "message"}}'
                }
            },
        }
        if params:
            operation["parameters"] = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in params
            ]
        if route.auth != "none":
            operation["x-hybridcon-auth"] = route.auth
            if route.auth not in {"signed URL"}:
                operation["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hybridcon",
            "version": __version__,
            "description": "The HTTP side of hybridcon. Bodies, errors and the WebSocket "
            "protocol (`GET /ws`) are described in docs/protocol.md.",
        },
        "servers": [{"url": server_url}],
        "components": {"securitySchemes": _SECURITY},
        "paths": paths,
    }


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this node's routes."""
    # Imported here: the route table imports this handler.
    from hybridcon.api.routes import ROUTES
    from hybridcon.services import SERVICES

    settings = request.app[SERVICES].settings
    return web.json_response(
        document(ROUTES, server_url=settings.base_url()),
        headers={"Cache-Control": "public, max-age=300"},
    )
