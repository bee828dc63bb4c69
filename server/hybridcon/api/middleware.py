"""Request ids, structured access logs, metrics, and the one error mapping for HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from hybridcon.errors import HybridconError, RateLimited, Unavailable
from hybridcon.services import SERVICES

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"


def json_error(error: HybridconError, request_id: str) -> web.Response:
    """The JSON response for ``error``."""
    response = web.json_response(error.to_body(), status=error.status)
    response.headers[REQUEST_ID_HEADER] = request_id
    if isinstance(error, RateLimited | Unavailable) and error.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(error.retry_after)))
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="hybridcon"'
    return response


WEBSOCKET_ROUTE = "/ws"


@web.middleware
def request_context(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Give each request an id, log it, count it, and turn errors into JSON.

    A WebSocket upgrade is handed straight to its handler, with nothing awaited here: its
    request lasts as long as the socket (hours), and the gateway logs, counts and answers
    its connections itself (``ws_open``/``ws_closed``, ``hybridcon_ws_connections``,
    close codes). Awaiting it here would hold this frame, ~400 bytes, for every open
    socket, and time a whole connection as if it were one request. A request to the
    route that is not an upgrade goes the ordinary way (its 400 gets the JSON contract).
    """
    resource = request.match_info.route.resource
    if (
        resource is not None
        and resource.canonical == WEBSOCKET_ROUTE
        and request.headers.get("Upgrade", "").lower() == "websocket"
    ):
        structlog.contextvars.clear_contextvars()
        return handler(request)
    return _request_context(request, handler)


async def _request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if 8 <= len(incoming) <= 64 and incoming.isascii() else uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    metrics = request.app[SERVICES].metrics
    route = request.match_info.route.resource
    route_name = route.canonical if route is not None else "unmatched"
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
        except HybridconError as exc:
            response = json_error(exc, request_id)
        except web.HTTPException as exc:
            if exc.status >= 400 and exc.content_type != "application/json":
                code = {404: "not_found", 405: "invalid", 413: "too_large"}.get(
                    exc.status, "invalid"
                )
                body = {"error": {"code": code, "message": exc.reason}}
                # Keep what the exception says beyond its body (Allow on a 405).
                headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
                response = web.json_response(body, status=exc.status, headers=headers)
            else:
                raise
        except Exception:
            log.exception("unhandled_error", path=request.path)
            body = {
                "error": {"code": "internal", "message": f"internal error (request {request_id})"}
            }
            response = web.json_response(body, status=500)
        status = response.status
        if not response.prepared:
            response.headers.setdefault(REQUEST_ID_HEADER, request_id)
        return response
    finally:
        elapsed = time.perf_counter() - started
        metrics.http_requests.labels(
            method=request.method, route=route_name, status=str(status)
        ).inc()
        metrics.http_seconds.labels(route=route_name).observe(elapsed)
        if route_name not in {"/healthz", "/metrics"}:
            log.info(
                "http_request",
                method=request.method,
                path=request.path,
                status=status,
                ms=round(elapsed * 1000, 2),
            )
