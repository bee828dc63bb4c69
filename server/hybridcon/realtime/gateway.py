"""``GET /ws``: first-frame authentication, the per-person cap, revocation, the read loop.

The first frame must be ``{"type": "auth", "token": ...}`` within ``auth_timeout``
seconds (tokens never travel in URLs); anything else closes with 4001. After
``auth.ok`` each frame is a request ``{"id": n, "type": ...}`` answered by a
``result`` or an ``error`` reply; the message types and their handlers are listed in
:mod:`hybridcon.realtime.protocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import orjson
import structlog
from aiohttp import WSMsgType, web

from hybridcon.errors import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_UNAUTHORIZED,
    HybridconError,
    Invalid,
    Revoked,
    TokenError,
    close_code_for,
)
from hybridcon.realtime.connection import Connection
from hybridcon.realtime.protocol import dispatch, error_reply
from hybridcon.realtime.registry import ConnectionRegistry
from hybridcon.services import SERVICES, Services

log = structlog.get_logger(__name__)

MAX_FRAME_BYTES = 64 * 1024
OUTBOUND_QUEUE = 256


class Gateway:
    """The node's WebSocket side: its connections and how they end."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.connections = ConnectionRegistry(services.settings.max_connections_per_person)
        self._handlers: set[asyncio.Task[None]] = set()

    def revoked(self, jti: str) -> None:
        """Close every connection that authenticated with token ``jti`` (4003)."""
        for conn in self.connections.with_jti(jti):
            conn.close(close_code_for(Revoked("")), "token revoked")

    async def shutdown(self) -> None:
        """Close every connection with 1001 and wait for their writers."""
        conns = list(self.connections)
        for conn in conns:
            conn.close(CLOSE_GOING_AWAY, "server going away")
        if conns:
            await asyncio.wait([asyncio.ensure_future(c.wait_closed()) for c in conns], timeout=5)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The ``GET /ws`` handler."""
        services = self.services
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, autoping=True, compress=False)
        await ws.prepare(request)
        if services.draining:
            await ws.close(code=CLOSE_GOING_AWAY, message=b"server going away")
            return ws
        conn = await self._authenticate(ws)
        if conn is None:
            return ws
        structlog.contextvars.bind_contextvars(connection_id=conn.id)
        metrics = services.metrics
        metrics.ws_connections.inc()
        conn.start()
        for old in self.connections.add(conn):
            old.close(CLOSE_POLICY, "too many connections for this person")
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, (conn.claims.exp - services.clock()).total_seconds()),
            conn.close,
            CLOSE_UNAUTHORIZED,
            "token expired",
        )
        log.info("ws_open", sub_role=conn.claims.role.value)
        try:
            await self._read_loop(ws, conn)
        finally:
            expiry.cancel()
            self.connections.remove(conn)
            if conn.close_code is None:
                conn.close(1000, "")
            with contextlib.suppress(asyncio.CancelledError):
                await conn.wait_closed()
            metrics.ws_connections.dec()
            code = conn.close_code or ws.close_code or 1000
            metrics.ws_closed.labels(code=str(code)).inc()
            log.info("ws_closed", code=code)
        return ws

    async def _authenticate(self, ws: web.WebSocketResponse) -> Connection | None:
        services = self.services
        try:
            msg = await ws.receive(timeout=services.settings.auth_timeout)
        except TimeoutError:
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"no auth frame in time")
            return None
        if msg.type is WSMsgType.ERROR and ws.close_code == CLOSE_TOO_BIG:
            return None
        if msg.type is not WSMsgType.TEXT:
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"first frame must be an auth message")
            return None
        try:
            frame = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"first frame is not JSON")
            return None
        if not isinstance(frame, dict) or frame.get("type") != "auth":
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"first frame must be an auth message")
            return None
        token = frame.get("token")
        try:
            if not isinstance(token, str):
                raise TokenError("auth frame has no token")
            claims = services.auth().verify(token)
        except TokenError as exc:
            code = close_code_for(exc)
            await ws.close(code=code, message=exc.message.encode()[:120])
            return None
        conn = Connection(ws, claims, queue_size=OUTBOUND_QUEUE)
        session_id = uuid.uuid4().hex
        await ws.send_str(
            orjson.dumps(
                {"type": "auth.ok", "user": claims.to_user(), "session_id": session_id}
            ).decode()
        )
        return conn

    async def _read_loop(self, ws: web.WebSocketResponse, conn: Connection) -> None:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                try:
                    reply = await dispatch(self, conn, msg.data)
                except HybridconError as exc:
                    reply = error_reply(None, exc)
                if reply is not None:
                    conn.send(reply)
            elif msg.type is WSMsgType.BINARY:
                conn.send(
                    error_reply(None, Invalid("binary frames are not accepted; send JSON text"))
                )
            elif msg.type is WSMsgType.ERROR:
                break
            if conn.close_code is not None:
                break


GATEWAY = web.AppKey("gateway", Gateway)


def setup(app: web.Application) -> None:
    """Add ``/ws`` and the gateway's lifecycle to ``app``."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        gateway = Gateway(app[SERVICES])
        app[GATEWAY] = gateway
        mirror = app[SERVICES].revocations
        if mirror is not None:
            mirror.on_revoked = gateway.revoked
        yield

    async def on_shutdown(app: web.Application) -> None:
        # aiohttp waits for running handlers after on_shutdown and before cleanup:
        # WebSocket handlers only end once their sockets close, so close them here.
        app[SERVICES].draining = True
        if GATEWAY in app:
            await app[GATEWAY].shutdown()

    async def handler(request: web.Request) -> web.StreamResponse:
        return await request.app[GATEWAY].handle(request)

    app.cleanup_ctx.append(context)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/ws", handler)
