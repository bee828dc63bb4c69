"""hybridcon's own HTTP listener: the port, admission, a header-read timeout, JSON errors.

``hybridcon serve`` listens through this module rather than ``web.TCPSite`` because
the node may face the internet without nginx in front, and aiohttp alone lets a
client hold a descriptor for an hour (its keep-alive default) with a request head it
never finishes, and answers a malformed request (a header over 8,190 bytes, a bad
request line) with plain text while logging a traceback that quotes the offending
line, ``Authorization`` included. Here:

- **The port is bound first**, before the database, the keys and the spool lock are
  touched, so a second server on the same port says that the port is taken.
- **Admission**: a connection over ``http_max_connections`` (all addresses) or
  ``http_max_connections_per_address`` (one client address; reverse proxies exempt)
  gets a JSON 503 and is closed before aiohttp sees it
  (:class:`hybridcon.core.admission.ConnectionCaps`).
- **Header-read timeout**: a connection must deliver a complete request head within
  ``http_header_timeout`` seconds of opening, and of the first byte of each later
  request on it; otherwise it gets a JSON 408 (or, if it sent nothing, is closed).
  Idle kept-alive connections are closed after :data:`KEEPALIVE_SECONDS`.
- **Errors the parser raises** get the JSON error contract
  (``{"error": {"code", "message"}}``, an ``X-Request-Id``) and one log line that names
  the error's kind, never the bytes that caused it.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong

from hybridcon.app import create_app
from hybridcon.core.admission import ConnectionCaps, parse_networks
from hybridcon.core.ratelimit import TokenBucket
from hybridcon.metrics import Metrics
from hybridcon.services import SERVICES
from hybridcon.settings import Settings

log = structlog.get_logger(__name__)

# Idle kept-alive connections close after this. Above nginx's upstream keepalive_timeout
# (60 s), so nginx, not hybridcon, closes an idle upstream connection and never sends a
# request on one that hybridcon is closing at that moment.
KEEPALIVE_SECONDS = 75.0
# Descriptors left for everything but client connections when the connection cap is
# fitted to the open-file limit: the PostgreSQL pool and LISTEN connection, the spool,
# HLS and recording files, WebRTC's UDP sockets.
FD_RESERVE = 256
BACKLOG = 4096
# http_bad_request log lines: at most this many a second on average, this many at once.
BAD_REQUEST_LOG_RATE = 5.0
BAD_REQUEST_LOG_BURST = 50.0
REQUEST_ID_HEADER = "X-Request-Id"

# RequestHandler internals the header timer and set_parser use (aiohttp is pinned by the
# lock files; tests/integration/test_listener.py and test_gateway_idle.py fail if their
# meaning changes). Checked at import so an aiohttp without them stops the server at
# start, not at the first slow client.
for _slot in ("_waiter", "_request_count", "_parser", "_upgraded", "_messages"):
    if not any(_slot in getattr(c, "__slots__", ()) for c in web.RequestHandler.__mro__):
        raise ImportError(f"aiohttp's RequestHandler has no {_slot}; hybridcon.listener needs it")


def raise_open_file_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit; return the soft limit.

    Many systems start services with a soft limit of 1024, far below what a node with
    thousands of WebSockets needs, and a hard limit far above it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # keep the soft limit; the connection cap is fitted to it below
    return soft


def fitted_connection_cap(wanted: int) -> int:
    """``wanted``, lowered so client connections leave :data:`FD_RESERVE` descriptors free."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - FD_RESERVE))


def _raw_json_response(status: int, code: str, message: str, **headers: str) -> bytes:
    """A complete HTTP/1.1 response with the JSON error body, for a connection aiohttp
    does not (or no longer) handle; it says ``Connection: close`` and is the last thing
    written before the connection closes."""
    body = orjson.dumps({"error": {"code": code, "message": message}})
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        f"{REQUEST_ID_HEADER}: {uuid.uuid4().hex}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


# What an upgraded connection's request queue becomes (see _Handler.set_parser): it keeps
# nothing appended to it, so one serves every WebSocket.
_NO_MESSAGES: deque[Any] = deque(maxlen=0)


class _Handler(web.RequestHandler):
    """aiohttp's request handler with admission, the header timer and JSON parse errors."""

    # One per open connection, WebSockets included: slots as aiohttp's own class has, not
    # a dict of these five per connection.
    __slots__ = ("_address", "_head_armed_at", "_head_started", "_head_timer", "_listener")

    def __init__(self, manager: Any, *, listener: Listener, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._listener = listener
        self._address: str | None = None  # set once admitted; None: refused
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_armed_at = -1  # the request count when the timer was armed
        self._head_started = False  # bytes of the awaited head have arrived

    # --- admission ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        listener = self._listener
        refusal = listener.caps.admit(address)
        if refusal is not None:
            listener.metrics.http_connections_closed.labels(refusal.reason).inc()
            # Before aiohttp sees it: no task, no parser state, one write, closed.
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(
                _raw_json_response(503, "unavailable", refusal.message, **{"Retry-After": "5"})
            )
            transport.close()
            return
        self._address = address
        listener.metrics.http_connections.set(listener.caps.open)
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._address is None:
            return  # refused in connection_made: aiohttp never took it
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._listener.caps.release(self._address)
        self._listener.metrics.http_connections.set(self._listener.caps.open)
        super().connection_lost(exc)

    def set_parser(self, parser: Any, data_received_cb: Callable[[], None] | None = None) -> None:
        super().set_parser(parser, data_received_cb)
        # The connection is a WebSocket now (aiohttp sets its frame parser here, after
        # the upgrade): the HTTP parser, ~760 bytes with its buffers, only parses
        # requests before an upgrade (aiohttp never touches it once upgraded), so it is
        # not kept for the socket's lifetime.
        if self._upgraded:
            self._parser = None
            # Likewise its queue of parsed requests (a deque: 624 bytes even empty), only
            # filled before an upgrade: one shared queue that holds nothing replaces it.
            self._messages = _NO_MESSAGES

    # --- header-read timeout --------------------------------------------------------

    def _awaiting_head(self) -> bool:
        # start() waits on _waiter between requests: no request is being handled and no
        # complete head is queued. (During a request or a WebSocket it is None.)
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_armed_at = self._request_count
        self._head_started = False
        self._head_timer = asyncio.get_running_loop().call_later(
            self._listener.settings.http_header_timeout, self._head_timeout
        )

    def data_received(self, data: bytes) -> None:
        if self._address is None:
            return
        if self._awaiting_head() and (
            self._head_timer is None or self._head_armed_at != self._request_count
        ):
            # The first bytes of a new request on a kept-alive connection: its head has
            # the same time to arrive as the first one had.
            self._arm_head_timer()
        if self._request_count == self._head_armed_at:
            self._head_started = True  # part of the awaited head is in
        super().data_received(data)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._request_count != self._head_armed_at or not self._awaiting_head():
            return  # a complete head came in time (or a request is running)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        listener = self._listener
        listener.metrics.http_connections_closed.labels("header_timeout").inc()
        if self._head_started:
            timeout = listener.settings.http_header_timeout
            transport.write(
                _raw_json_response(
                    408,
                    "invalid",
                    f"the request line and headers did not arrive within {timeout:g} s",
                )
            )
        self.force_close()

    # --- errors from the HTTP parser --------------------------------------------------

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The JSON error contract for what aiohttp answers itself: a request it cannot
        parse (400, or 431 for a line over the limit) or a failure outside the middleware
        (500). Logged on one line with the error's kind only: aiohttp's own message
        quotes the first 100 bytes of the offending line, which can be a credential."""
        request_id = uuid.uuid4().hex
        remote = request.remote
        if status >= 500 or not isinstance(exc, HttpProcessingError):
            log.error("unhandled_error", request_id=request_id, remote=remote, exc_info=exc)
            status, code = 500, "internal"
            text = f"internal error (request {request_id})"
        elif isinstance(exc, LineTooLong):
            status, code = 431, "too_large"
            text = f"the request line or a header is longer than {self.max_field_size} bytes"
        else:
            status, code = 400, "invalid"
            text = f"the request is not valid HTTP/1.1 ({type(exc).__name__})"
        if status < 500:
            self._listener.metrics.http_connections_closed.labels("bad_request").inc()
            # Non-HTTP bytes on the port (a TLS handshake, a scanner) are routine noise.
            quiet = isinstance(exc, BadHttpMethod) and self._request_count == 1
            suppressed = self._listener.bad_request_log_allowed()
            if suppressed is not None:
                (log.debug if quiet else log.info)(
                    "http_bad_request",
                    request_id=request_id,
                    remote=remote,
                    status=status,
                    error=type(exc).__name__,
                    suppressed=suppressed,
                )
        if request.writer.output_size > 0:
            # Part of a response went out already: nothing more can be said on it.
            raise ConnectionError("the response had started; the connection is closed")
        response = web.json_response(
            {"error": {"code": code, "message": text}},
            status=status,
            headers={REQUEST_ID_HEADER: request_id},
        )
        response.force_close()
        return response


class _BoundSite(web.BaseSite):
    """A site over a listener bound before the runner was set up."""

    __slots__ = ("_listener",)

    def __init__(self, runner: web.AppRunner, listener: Listener) -> None:
        super().__init__(runner, backlog=BACKLOG)
        self._listener = listener

    @property
    def name(self) -> str:
        return f"http://{self._listener.settings.host}:{self._listener.port}"

    async def start(self) -> None:
        await super().start()  # registers the site, so runner.cleanup() stops it
        self._server = self._listener.server
        await self._listener.server.start_serving()


class Listener:
    """hybridcon's HTTP listening socket(s): bound by :meth:`bind`, serving after :meth:`start`.

    Attributes:
        settings: the node's settings (host, port, timeouts and caps).
        caps: the admission counts.
        server: the asyncio server (not accepting until :meth:`start`).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.caps = ConnectionCaps(
            total=fitted_connection_cap(settings.http_max_connections),
            per_address=settings.http_max_connections_per_address,
            proxies=parse_networks(settings.reverse_proxies),
        )
        self.server: asyncio.Server
        self._runner: web.AppRunner | None = None
        self.metrics = Metrics()  # replaced by the application's at start
        # A client can send bad requests as fast as it can connect: the log gets a steady
        # few a second, the metric counts every one.
        self.bad_request_log = TokenBucket.full(
            BAD_REQUEST_LOG_RATE, BAD_REQUEST_LOG_BURST, time.monotonic()
        )
        self._bad_requests_unlogged = 0

    @classmethod
    async def bind(cls, settings: Settings) -> Listener:
        """Bind ``settings.host``/``settings.port`` now; accept nothing until :meth:`start`.

        Raises:
            OSError: the address cannot be bound; when the port is taken, the message says
                so and names the address.
        """
        listener = cls(settings)
        loop = asyncio.get_running_loop()
        try:
            listener.server = await loop.create_server(
                listener._protocol,
                settings.host,
                settings.port,
                backlog=BACKLOG,
                start_serving=False,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(
                    exc.errno,
                    f"cannot listen on {settings.host}:{settings.port}: the port is already "
                    "in use (another hybridcon serve, or another program); stop it or choose "
                    "another port with --port or HYBRIDCON_PORT",
                ) from None
            raise
        if listener.caps.total < settings.http_max_connections:
            log.warning(
                "http_connections_capped",
                limit=listener.caps.total,
                wanted=settings.http_max_connections,
                reason="the open-file limit (ulimit -n) leaves room for no more",
            )
        return listener

    def bad_request_log_allowed(self) -> int | None:
        """Whether an ``http_bad_request`` line may be written now: the number of lines
        left out since the last one written, or None to leave this one out too."""
        if not self.bad_request_log.take(time.monotonic()):
            self._bad_requests_unlogged += 1
            return None
        unlogged, self._bad_requests_unlogged = self._bad_requests_unlogged, 0
        return unlogged

    @property
    def port(self) -> int:
        """The bound port (the one chosen by the system when ``settings.port`` is 0)."""
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def _protocol(self) -> _Handler:
        # Only called once start() has set the runner up: the socket accepts nothing before.
        assert self._runner is not None
        server = self._runner.server
        assert server is not None
        return _Handler(
            server,
            listener=self,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=KEEPALIVE_SECONDS,
            access_log=None,  # hybridcon writes its own (api/middleware.py)
        )

    async def start(self, runner: web.AppRunner) -> None:
        """Start accepting, for ``runner`` (after ``runner.setup()``)."""
        self._runner = runner
        self.metrics = runner.app[SERVICES].metrics
        await _BoundSite(runner, self).start()

    def close(self) -> None:
        """Stop listening (for a start that failed; ``runner.cleanup()`` does it otherwise)."""
        self.server.close()


@dataclass(frozen=True, slots=True)
class Serving:
    """A running node: its runner (``cleanup()`` stops it), listener and settings.

    ``settings.port`` is the bound port, also when 0 was asked for.
    """

    runner: web.AppRunner
    listener: Listener
    settings: Settings

    @property
    def app(self) -> web.Application:
        """The application being served."""
        return self.runner.app


async def serve(settings: Settings) -> Serving:
    """Bind the port, build and start the application, then accept connections.

    The port comes first: a second server on the same port fails on the port, before it
    touches the database, the keys or the spool lock the first one holds.

    Raises:
        OSError: the port cannot be bound (taken: the message says so).
        ConfigError: the programme is missing or invalid.
    """
    listener = await Listener.bind(settings)
    try:
        if settings.port == 0:  # the system chose one: links and the banner name it
            settings = settings.model_copy(update={"port": listener.port})
        app = create_app(settings)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=10)
        await runner.setup()
    except BaseException:
        listener.close()
        raise
    try:
        await listener.start(runner)
    except BaseException:
        await runner.cleanup()
        raise
    return Serving(runner=runner, listener=listener, settings=settings)
