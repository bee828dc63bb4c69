"""``GET /ws``: first-frame authentication, the per-person cap, limits, the read loop.

The first frame must be ``{"type": "auth", "token": ...}`` within ``auth_timeout``
seconds (tokens never travel in URLs); anything else closes with 4001. After
``auth.ok`` each frame is a request ``{"id": n, "type": ...}`` answered by a
``result`` or an ``error`` reply. The request types, their handlers and access rules
come from the capabilities (:mod:`hybridcon.realtime.capabilities`), each made with the
node's narrow side (:class:`~hybridcon.realtime.node.GatewayNode`), never the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import structlog
from aiohttp import WSMsgType, web

from hybridcon.bus.protocol import Bus
from hybridcon.core.admission import ConnectionCaps
from hybridcon.core.payloads import Leave
from hybridcon.core.ratelimit import TokenBucket
from hybridcon.core.tokens import Claims
from hybridcon.core.wordfilter import WordFilter
from hybridcon.errors import (
    CLOSE_POLICY,
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    DRAINING_REASON,
    ConfigError,
    HybridconError,
    Invalid,
    RateLimited,
    Revoked,
    TokenError,
    Unavailable,
    close_code_for,
)
from hybridcon.realtime.capabilities import CAPABILITIES
from hybridcon.realtime.command import Capability, Registry, error_reply
from hybridcon.realtime.connection import CLOSE_TIMEOUT, Connection, Flusher
from hybridcon.realtime.context import Context
from hybridcon.realtime.heap import HeapFreezer
from hybridcon.realtime.hub import COUNT_INTERVAL, Hub
from hybridcon.realtime.node import GatewayNode
from hybridcon.realtime.people import PeopleAcrossNodes
from hybridcon.realtime.registry import ConnectionRegistry
from hybridcon.realtime.topics import Topics
from hybridcon.realtime.wire import close_reason
from hybridcon.services import SERVICES, Services
from hybridcon.store.db import is_outage

log = structlog.get_logger(__name__)

MAX_FRAME_BYTES = 64 * 1024
# The sweep (idle sockets, expired tokens) runs this often: a silent socket is closed within
# idle + this, an expired token within this; at most every IDLE_SWEEP_MAX seconds.
IDLE_SWEEP_SHARE = 0.125
IDLE_SWEEP_MAX = 5.0


def idle_sweep_seconds(idle: float) -> float:
    """How often the gateway looks for sockets that sent nothing for ``idle`` seconds
    (and for expired tokens)."""
    return min(IDLE_SWEEP_MAX, idle * IDLE_SWEEP_SHARE)


# After this many refused requests in a row (rate limit), the client is flooding: close.
FLOOD_LIMIT = 50


def load_word_filter(paths: list[Path]) -> WordFilter:
    """The word filter from list files.

    Raises:
        ConfigError: a file cannot be read.
    """
    lines: list[str] = []
    for path in paths:
        try:
            lines.extend(path.read_text("utf-8").splitlines())
        except OSError as exc:
            raise ConfigError(f"cannot read word list {path}: {exc.strerror or exc}") from None
    return WordFilter.from_lines(lines)


C = TypeVar("C", bound=Capability)

SnapshotHook = Callable[[str, Claims], dict[str, Any]]
"""Parts of a topic's snapshot from outside the capabilities (a stage's ``stream``):
called with the topic as subscribed (``mod:`` included) and the subscriber's claims."""

LoadHook = Callable[[str], Awaitable[None]]
"""Makes a part from outside the capabilities ready for a topic's snapshot (the
livestreams read a stage's shared record on several nodes): called with the topic
without ``mod:``, after the node follows it and before the snapshot."""


class Gateway:
    """The node's WebSocket side: connections, topics, capabilities, how connections end.

    Args:
        services: the node's services.
        bus: what carries the topics' messages (one process, or several nodes).
        capabilities: the capability classes to serve (the default list normally).
    """

    def __init__(
        self,
        services: Services,
        bus: Bus,
        capabilities: tuple[type[Capability], ...] = CAPABILITIES,
    ) -> None:
        settings = services.settings
        self.services = services
        self.connections = ConnectionRegistry(settings.max_connections_per_person)
        self.flusher = Flusher(
            settings.ws_flush_interval, settings.ws_flush_period, settings.ws_flush_load_factor
        )
        self.hub = Hub(bus=bus, flusher=self.flusher)
        self.heap = HeapFreezer(settings.gc_freeze_joins)
        # Sockets that have not signed in yet cost a descriptor and a timer each for up
        # to auth_timeout: capped per address (reverse proxies exempt) and in total.
        self.signing_in = ConnectionCaps(
            total=settings.ws_signing_in_total,
            per_address=settings.ws_signing_in_per_address,
            proxies=services.proxies,
        )
        self.node = GatewayNode(
            services, self.hub, load_word_filter(list(settings.wordfilter_files))
        )
        self.people = PeopleAcrossNodes(
            self.node,
            self.node.redis,
            self.node.signals.node_id,
            settings.max_connections_per_person,
            self.connections.find,
        )
        self.capabilities = [cls(self.node) for cls in capabilities]
        self.registry = Registry([Topics(self.node, self), *self.capabilities])
        # Parts of a topic's snapshot from outside the capabilities (the livestreams add
        # a stage's `stream {state, hls_url, whep_url}`).
        self.snapshot_hooks: list[SnapshotHook] = []
        self.load_hooks: list[LoadHook] = []
        # Handlers whose clean-up (leave events, metrics) is not done yet: shutdown waits
        # for them before the engagement writer and pool stop (one count and one future
        # for all of them, not an event per connection).
        self._running = 0
        self._all_done: asyncio.Future[None] | None = None
        # At most one outage line a second in the log (with bursts of 5), however many
        # requests fail on it.
        self._outage_log = TokenBucket.full(1.0, 5.0, time.monotonic())

    def capability(self, cls: type[C]) -> C:
        """The running instance of a capability class (app.py hands the sessions their
        room provider this way).

        Raises:
            LookupError: the gateway does not serve that capability.
        """
        for capability in self.capabilities:
            if isinstance(capability, cls):
                return capability
        raise LookupError(f"the gateway does not serve {cls.__name__}")

    # --- the topics, as the Topics capability sees them (Subscriptions) ------------------

    def subscribe(self, conn: Connection, topic: str) -> bool:
        """Add ``conn`` to ``topic``."""
        return self.hub.subscribe(conn, topic)

    def unsubscribe(self, conn: Connection, topic: str) -> bool:
        """Remove ``conn`` from ``topic``."""
        return self.hub.unsubscribe(conn, topic)

    def last_seq(self, topic: str) -> int:
        """The newest sequence number of ``topic``."""
        return self.hub.bus.last_seq(topic)

    def since(self, topic: str, seq: int) -> list[bytes] | None:
        """What ``topic`` published after ``seq``, if history reaches back."""
        return self.hub.bus.since(topic, seq)

    async def watch(self, topic: str) -> None:
        """Make sure the bus brings ``topic``'s messages to this node."""
        await self.hub.bus.watch(topic)

    async def load(self, topic: str) -> None:
        """Make every capability's state of ``topic`` ready for a snapshot."""
        for capability in self.capabilities:
            await capability.load(topic)
        for hook in self.load_hooks:
            await hook(topic)

    def snapshot(self, ctx: Context, topic: str, moderator: bool) -> dict[str, Any]:
        """Every capability's part of the snapshot, then the hooks' parts (no await)."""
        snapshot: dict[str, Any] = {}
        for capability in self.capabilities:
            snapshot.update(capability.snapshot(ctx, topic, moderator))
        full = f"mod:{topic}" if moderator else topic
        for hook in self.snapshot_hooks:
            snapshot.update(hook(full, ctx.claims))
        return snapshot

    # --- life cycle ----------------------------------------------------------------------

    def revoked(self, jti: str) -> None:
        """Close every connection that authenticated with token ``jti`` (4003)."""
        for conn in self.connections.with_jti(jti):
            conn.close(close_code_for(Revoked("")), "token revoked")

    async def start(self) -> None:
        """Start the capabilities (polls load, periodic pushes) and the viewer counts."""
        await self.node.start()  # other nodes' signals, before any state is loaded
        for capability in self.capabilities:
            await capability.start()
        self.node.every(COUNT_INTERVAL, self.node.counts.tick, "presence-counts")
        idle = self.services.settings.ws_idle_timeout
        self.node.every(idle_sweep_seconds(idle), self.sweep, "ws-sweep")

    async def shutdown(self) -> None:
        """Close every connection with 1012 (reconnect elsewhere) and wait for them."""
        # Periodic pushes stop first: nothing is pushed to sockets that are closing.
        await self.node.periodic.stop()
        for capability in self.capabilities:
            await capability.stop()
        for conn in list(self.connections):
            conn.close(CLOSE_SERVICE_RESTART, DRAINING_REASON)
        if self._running:
            self._all_done = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._all_done), CLOSE_TIMEOUT + 1)
        await self.node.stop()
        self.heap.stopped()

    # --- one connection ------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The ``GET /ws`` handler."""
        services = self.services
        # Pings are answered in the read loop (autoping off), so that they count as the
        # client's frames for the idle sweep as they did when each receive had a timeout.
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, autoping=False, compress=False)
        await ws.prepare(request)
        if services.draining:
            await ws.close(code=CLOSE_SERVICE_RESTART, message=DRAINING_REASON.encode())
            return ws
        address = services.client_address(request)
        refusal = self.signing_in.admit(address)
        if refusal is not None:
            await ws.close(code=CLOSE_TRY_AGAIN_LATER, message=close_reason(refusal.message))
            return ws
        try:
            conn = await self._authenticate(ws, request)
        finally:
            self.signing_in.release(address)
        if conn is None:
            return ws
        self._running += 1
        structlog.contextvars.bind_contextvars(connection_id=conn.id)
        metrics = services.metrics
        metrics.ws_connections.inc()
        for old in self.connections.add(conn):
            old.close(CLOSE_POLICY, "too many connections for this person")
        self.people.joined(conn)  # and across nodes
        self.heap.joined()
        opened = time.monotonic()
        log.info("ws_open", role=conn.claims.role.value)
        ctx = Context(self.node, conn)
        try:
            # The read loop, here rather than in a coroutine of its own: a waiting socket
            # then holds one frame fewer. No timeout per receive: `sweep` closes silent
            # sockets, so a waiting socket holds no timer. Nothing of the last request is
            # kept while it waits for the next (its frame and reply are names in _answer).
            while conn.close_code is None:
                msg = await ws.receive()
                kind = msg.type
                conn.last_received = time.monotonic()
                if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                    await self._answer(ctx, msg.data)
                elif kind is WSMsgType.PING:
                    with contextlib.suppress(ConnectionError, RuntimeError):  # closing
                        await ws.pong(msg.data)
                elif kind is not WSMsgType.PONG:
                    break  # CLOSE, CLOSING, CLOSED, ERROR (e.g. a frame over the limit: 1009)
                del msg
        finally:
            # Book-keeping first, without awaiting: aiohttp may cancel this handler while
            # the server shuts down, and the leave events must be logged regardless.
            self.connections.remove(conn)
            self.people.left(conn)
            self.heap.left(len(self.connections))
            seconds = round(time.monotonic() - opened)
            for topic in self.hub.drop(conn):
                if not topic.startswith("mod:"):
                    self.node.engage(Leave(seconds=seconds), topic, conn.claims)
            for capability in self.capabilities:
                try:
                    capability.closed(ctx)
                except Exception:
                    log.exception("capability_closed_failed", capability=type(capability).__name__)
            if conn.close_code is None:
                conn.close(1000, "")
            metrics.ws_connections.dec()
            code = conn.close_code or ws.close_code or 1000
            metrics.ws_closed.labels(code=str(code)).inc()
            log.info("ws_closed", code=code)
            self._running -= 1
            if not self._running and self._all_done is not None and not self._all_done.done():
                self._all_done.set_result(None)
            with contextlib.suppress(asyncio.CancelledError):
                await conn.wait_closed()
        return ws

    async def _authenticate(
        self, ws: web.WebSocketResponse, request: web.Request
    ) -> Connection | None:
        services = self.services
        settings = services.settings
        try:
            msg = await ws.receive(timeout=settings.auth_timeout)
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
            await ws.close(code=close_code_for(exc), message=close_reason(exc.message))
            return None
        conn = Connection(
            ws,
            request,
            claims,
            flusher=self.flusher,
            max_pending_bytes=settings.ws_max_pending_bytes,
            bucket=TokenBucket.full(settings.ws_rate, settings.ws_burst, time.monotonic()),
        )
        # The session id is the connection id in the logs, so a client's report of a
        # problem can be matched to the server's lines.
        conn.send({"type": "auth.ok", "user": claims.to_user(), "session_id": conn.id})
        return conn

    async def _answer(self, ctx: Context, data: str | bytes) -> None:
        # Every frame a client sends takes from its bucket, whatever it holds.
        reply = await self._request(ctx, data)
        if reply is not None:
            if isinstance(reply, bytes):
                ctx.conn.send_raw(reply)
            else:
                ctx.conn.send(reply)

    def sweep(self) -> None:
        """Close the sockets that sent nothing for ``ws_idle_timeout`` seconds (4008) and
        those whose token expired (4001); run every :func:`idle_sweep_seconds`, so one
        pass over the connections replaces a timer per socket. A token is closed at most
        that long after its ``exp`` (well within ``token_leeway``, which auth allows)."""
        idle = self.services.settings.ws_idle_timeout
        oldest = time.monotonic() - idle
        now = self.services.clock()
        for conn in self.connections:
            if conn.claims.exp <= now:
                conn.close(CLOSE_UNAUTHORIZED, "token expired")
            elif conn.last_received < oldest:
                conn.close(CLOSE_POLICY, f"idle: nothing received for {idle:.0f} s")

    async def _request(self, ctx: Context, data: str | bytes) -> dict[str, Any] | bytes | None:
        conn = ctx.conn
        if not conn.bucket.take(time.monotonic()):
            conn.rejected_in_a_row += 1
            if conn.rejected_in_a_row >= FLOOD_LIMIT:
                conn.close(CLOSE_POLICY, "flooding: too many requests")
                return None
            wait = conn.bucket.retry_after(time.monotonic())
            error = RateLimited(f"too many requests; wait {wait:.1f} s", retry_after=wait)
            return error_reply(_request_id(data) if isinstance(data, str) else None, error)
        conn.rejected_in_a_row = 0
        if isinstance(data, bytes):
            return error_reply(None, Invalid("binary frames are not accepted; send JSON text"))
        try:
            return await self.registry.dispatch(ctx, data)
        except HybridconError as exc:
            return error_reply(None, exc)
        except Exception as exc:
            request_id = _request_id(data) if isinstance(data, str) else None
            if is_outage(exc):
                # PostgreSQL is away: every request that needs it fails alike, so say so
                # once in a while, not once per request, and tell the client to retry.
                if self._outage_log.take(time.monotonic()):
                    log.warning("ws_request_unavailable", error=f"{type(exc).__name__}: {exc}")
                unavailable = Unavailable("the database is not reachable; please try again")
                return error_reply(request_id, unavailable)
            # A bug, or a dependency failing in a way no handler expected. The client gets
            # `internal` with its connection id to quote; the log has the traceback.
            log.exception("ws_request_failed")
            internal = HybridconError(f"internal error (session {conn.id})")
            return error_reply(request_id, internal)


def _request_id(data: str) -> int | None:
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    request_id = raw.get("id") if isinstance(raw, dict) else None
    return request_id if isinstance(request_id, int) and not isinstance(request_id, bool) else None


GATEWAY = web.AppKey("gateway", Gateway)


async def handle(request: web.Request) -> web.StreamResponse:
    """``GET /ws`` (the route is in :mod:`hybridcon.api.routes`)."""
    return await request.app[GATEWAY].handle(request)


def setup(app: web.Application) -> None:
    """Add the gateway's life cycle to ``app``."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        services = app[SERVICES]
        gateway = Gateway(services, services.bus)
        app[GATEWAY] = gateway
        mirror = services.revocations
        if mirror is not None:
            mirror.on_revoked.append(gateway.revoked)
        await gateway.start()
        yield

    async def on_shutdown(app: web.Application) -> None:
        # aiohttp waits for running handlers after on_shutdown and before cleanup:
        # WebSocket handlers only end once their sockets close, so close them here.
        app[SERVICES].draining = True
        if GATEWAY in app:
            await app[GATEWAY].shutdown()

    app.cleanup_ctx.append(context)
    app.on_shutdown.append(on_shutdown)
