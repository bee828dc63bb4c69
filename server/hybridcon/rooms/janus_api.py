"""A small client of Janus's APIs over WebSocket: the Janus API and the admin API.

The Janus API (subprotocol ``janus-protocol``): a *session* (``create``, kept alive with
``keepalive`` more often than Janus's ``session_timeout``, ended with ``destroy``) holds
*handles* attached to a plugin (``attach``, ``detach``); a plugin is driven with
``message`` (``body``, optionally ``jsep``). Every request carries a ``transaction``:
synchronous requests are answered with ``success`` or ``error``; asynchronous ones
(the VideoRoom's join, publish, start, ...) first with ``ack``, then with an ``event``
carrying the same transaction. Everything else Janus sends (``webrtcup``, ``media``,
``hangup``, ``detached``, a plugin's own ``event`` s) names the handle in ``sender`` and is
handed to that handle's listener. Closing the WebSocket ends its sessions in Janus.

The admin API (subprotocol ``janus-admin-protocol``, every request with the
``admin_secret``) is used for Janus's stored tokens (``add_token``, ``remove_token``):
with ``token_auth`` on, every Janus API request must carry one.

Errors become hybridcon's (:mod:`hybridcon.errors`) here, with Janus's code named in the
message: :class:`~hybridcon.errors.Unavailable` when Janus cannot be reached or stops
answering, :class:`~hybridcon.errors.Invalid` for SDP Janus cannot use,
:class:`~hybridcon.errors.Forbidden` for a refused token or key, and so on
(:func:`janus_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from hybridcon.errors import (
    Conflict,
    Forbidden,
    HybridconError,
    Invalid,
    NotFound,
    Unavailable,
)

log = structlog.get_logger(__name__)

UNREACHABLE = "the video server (Janus) is not reachable"
VIDEOROOM = "janus.plugin.videoroom"
API_PROTOCOL = "janus-protocol"
ADMIN_PROTOCOL = "janus-admin-protocol"

Json = dict[str, Any]
EventListener = Callable[[Json], None]

# Janus's error codes (janus/apierror.h and the VideoRoom plugin's), by name, for messages.
CORE_ERRORS: dict[int, str] = {
    403: "UNAUTHORIZED",
    405: "UNAUTHORIZED_PLUGIN",
    450: "TRANSPORT_SPECIFIC",
    452: "MISSING_REQUEST",
    453: "UNKNOWN_REQUEST",
    454: "INVALID_JSON",
    455: "INVALID_JSON_OBJECT",
    456: "MISSING_MANDATORY_ELEMENT",
    457: "INVALID_REQUEST_PATH",
    458: "SESSION_NOT_FOUND",
    459: "HANDLE_NOT_FOUND",
    460: "PLUGIN_NOT_FOUND",
    461: "PLUGIN_ATTACH",
    462: "PLUGIN_MESSAGE",
    463: "PLUGIN_DETACH",
    464: "JSEP_UNKNOWN_TYPE",
    465: "JSEP_INVALID_SDP",
    466: "TRICKLE_INVALID_STREAM",
    467: "INVALID_ELEMENT_TYPE",
    468: "SESSION_CONFLICT",
    469: "UNEXPECTED_ANSWER",
    470: "TOKEN_NOT_FOUND",
    471: "WEBRTC_STATE",
    472: "NOT_ACCEPTING_SESSIONS",
    490: "UNKNOWN",
}
VIDEOROOM_ERRORS: dict[int, str] = {
    421: "NO_MESSAGE",
    422: "INVALID_JSON",
    423: "INVALID_REQUEST",
    424: "JOIN_FIRST",
    425: "ALREADY_JOINED",
    426: "NO_SUCH_ROOM",
    427: "ROOM_EXISTS",
    428: "NO_SUCH_FEED",
    429: "MISSING_ELEMENT",
    430: "INVALID_ELEMENT",
    431: "INVALID_SDP_TYPE",
    432: "PUBLISHERS_FULL",
    433: "UNAUTHORIZED",
    434: "ALREADY_PUBLISHED",
    435: "NOT_PUBLISHED",
    436: "ID_EXISTS",
    437: "INVALID_SDP",
    499: "UNKNOWN_ERROR",
}
ROOM_EXISTS = 427
NO_SUCH_ROOM = 426


class JanusError(HybridconError):
    """An error Janus answered with. Each subclass is also the hybridcon error it maps to
    (:class:`JanusForbidden` is a :class:`~hybridcon.errors.Forbidden`, ...); this base
    class itself is an internal error (a request of ours Janus found wrong: a bug).

    Attributes:
        source: ``"janus"`` (the core) or ``"videoroom"`` (the plugin).
        janus_code: Janus's numeric code.
        reason: Janus's own text.
    """

    def __init__(self, message: str, *, source: str, janus_code: int, reason: str) -> None:
        super().__init__(message)
        self.source = source
        self.janus_code = janus_code
        self.reason = reason


class JanusForbidden(JanusError, Forbidden):
    """A token, key or secret Janus refused."""


class JanusInvalid(JanusError, Invalid):
    """An offer or answer Janus cannot use."""


class JanusNotFound(JanusError, NotFound):
    """A room, feed or handle Janus does not know."""


class JanusConflict(JanusError, Conflict):
    """A clash with the room's state (full, already joined, already publishing)."""


class JanusUnavailable(JanusError, Unavailable):
    """Janus lost our session or takes no sessions now."""


_KINDS: dict[tuple[str, int], type[JanusError]] = {
    ("janus", 403): JanusForbidden,
    ("janus", 405): JanusForbidden,
    ("janus", 470): JanusForbidden,
    ("janus", 458): JanusUnavailable,  # the session ended under us (a restart, a timeout)
    ("janus", 459): JanusNotFound,
    ("janus", 472): JanusUnavailable,
    ("janus", 464): JanusInvalid,
    ("janus", 465): JanusInvalid,
    ("janus", 469): JanusInvalid,
    ("janus", 471): JanusConflict,
    ("videoroom", 426): JanusNotFound,
    ("videoroom", 428): JanusNotFound,
    ("videoroom", 425): JanusConflict,
    ("videoroom", 427): JanusConflict,
    ("videoroom", 432): JanusConflict,
    ("videoroom", 434): JanusConflict,
    ("videoroom", 435): JanusConflict,
    ("videoroom", 436): JanusConflict,
    ("videoroom", 433): JanusForbidden,
    ("videoroom", 431): JanusInvalid,
    ("videoroom", 437): JanusInvalid,
}


def janus_error(source: str, code: int, reason: str, what: str) -> JanusError:
    """The hybridcon error for Janus's ``code`` answering ``what``.

    The message names the request, Janus's code and its name, and Janus's reason, e.g.
    ``Janus refused join: 433 UNAUTHORIZED (Unauthorized (not in the allowed list))``;
    for SDP it starts ``the video server (Janus) cannot use this SDP``.
    """
    names = CORE_ERRORS if source == "janus" else VIDEOROOM_ERRORS
    kind = _KINDS.get((source, code), JanusError)
    named = f"{code} {names.get(code, 'UNKNOWN')} ({reason})"
    if kind is JanusInvalid:
        message = f"the video server (Janus) cannot use this SDP in {what}: {named}"
    else:
        message = f"Janus refused {what}: {named}"
    return kind(message, source=source, janus_code=code, reason=reason)


@dataclass(frozen=True, slots=True)
class PluginReply:
    """A plugin's answer to a ``message``: its data, and an SDP when it sent one."""

    data: Json
    jsep: Json | None = None


class JanusConnection:
    """One WebSocket to Janus's API (or admin API) with transactions over it.

    Args:
        url: ``ws://host:port`` of the API.
        protocol: :data:`API_PROTOCOL` or :data:`ADMIN_PROTOCOL`.
        timeout: seconds a request (or its event, for asynchronous ones) may take.
        on_close: called once when the socket ends for any reason but :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        *,
        protocol: str = API_PROTOCOL,
        timeout: float = 10.0,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.protocol = protocol
        self.timeout = timeout
        self._on_close = on_close
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[Json]] = {}
        self._ack_answers: set[str] = set()
        self._listeners: dict[int, EventListener] = {}
        self._session_listener: EventListener | None = None
        self._counter = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self._closing = False

    @property
    def open(self) -> bool:
        """Whether the socket is connected."""
        return self._ws is not None and not self._ws.closed

    async def connect(self) -> None:
        """Open the WebSocket.

        Raises:
            Unavailable: Janus does not answer at ``url``.
        """
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            self._ws = await self._http.ws_connect(
                self.url, protocols=(self.protocol,), heartbeat=None, max_msg_size=0
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._http.close()
            self._http = None
            raise Unavailable(f"{UNREACHABLE} at {self.url}: {exc}") from None
        self._reader = asyncio.create_task(self._read(), name=f"janus-read {self.url}")

    async def close(self) -> None:
        """Close the socket (Janus ends this socket's sessions); fail what is pending."""
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        self._fail_pending()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def abort(self) -> None:
        """Drop the socket as if Janus had: pending requests fail, ``on_close`` is called."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()

    def on_handle_event(self, handle: int, listener: EventListener | None) -> None:
        """Send Janus's messages about ``handle`` (``sender``) to ``listener`` (None: stop)."""
        if listener is None:
            self._listeners.pop(handle, None)
        else:
            self._listeners[handle] = listener

    def on_session_event(self, listener: EventListener | None) -> None:
        """Send Janus's messages that name no handle (``timeout``) to ``listener``."""
        self._session_listener = listener

    async def request(self, payload: Json, *, what: str, ack_answers: bool = False) -> Json:
        """Send ``payload`` with a new transaction; its answer (after an ``ack``: the event).

        Args:
            payload: the request without ``transaction``.
            what: the request in words, for error messages.
            ack_answers: the ``ack`` is the whole answer (``keepalive``).

        Returns:
            Janus's ``success`` or ``event`` message.

        Raises:
            Unavailable: the socket is closed or closes, or no answer within ``timeout``.
            JanusError: Janus answered ``error`` (mapped by :func:`janus_error`).
        """
        ws = self._ws
        if ws is None or ws.closed:
            raise Unavailable(UNREACHABLE)
        transaction = f"{self._prefix}-{next(self._counter)}"
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future
        if ack_answers:
            self._ack_answers.add(transaction)
        try:
            await ws.send_json({**payload, "transaction": transaction})
            reply = await asyncio.wait_for(future, self.timeout)
        except (ConnectionError, aiohttp.ClientError, RuntimeError):
            raise Unavailable(UNREACHABLE) from None
        except TimeoutError:
            raise Unavailable(f"{UNREACHABLE}: no answer to {what} in {self.timeout:g} s") from None
        finally:
            self._pending.pop(transaction, None)
            self._ack_answers.discard(transaction)
        if reply.get("janus") == "error":
            error = reply.get("error") or {}
            raise janus_error("janus", int(error.get("code", 490)), str(error.get("reason")), what)
        return reply

    async def _read(self) -> None:
        ws = self._ws
        assert ws is not None
        try:
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    message = frame.json()
                except ValueError:
                    log.warning("janus_bad_frame", url=self.url)
                    continue
                if isinstance(message, dict):
                    self._dispatch(message)
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.info("janus_socket_error", url=self.url, error=str(exc))
        finally:
            self._fail_pending()
            if not self._closing and self._on_close is not None:
                self._on_close()

    def _dispatch(self, message: Json) -> None:
        kind = message.get("janus")
        transaction = message.get("transaction")
        if kind == "ack" and transaction not in self._ack_answers:
            return  # the event with the same transaction follows
        if isinstance(transaction, str):
            future = self._pending.get(transaction)
            if future is not None and not future.done():
                future.set_result(message)
                return
        sender = message.get("sender")
        if isinstance(sender, int):
            listener = self._listeners.get(sender)
            if listener is not None:
                listener(message)
            return
        if self._session_listener is not None:
            self._session_listener(message)

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Unavailable(UNREACHABLE))
        self._pending.clear()


class JanusSession:
    """A Janus session over a :class:`JanusConnection`, kept alive while it is open.

    Args:
        connection: the connected socket.
        token: the stored token every request carries (Janus's ``token_auth``), if any.
        keepalive: seconds between keepalives; below Janus's ``session_timeout``.
    """

    def __init__(
        self, connection: JanusConnection, *, token: str | None = None, keepalive: float = 15.0
    ) -> None:
        self.connection = connection
        self.token = token
        self.keepalive = keepalive
        self.id = 0
        self._keeper: asyncio.Task[None] | None = None

    def auth(self, payload: Json) -> Json:
        """``payload`` with the session's token, when it has one."""
        if self.token is not None:
            payload["token"] = self.token
        return payload

    async def create(self) -> None:
        """Create the session and start its keepalives.

        Raises:
            Unavailable: Janus cannot be reached.
            JanusError: Janus refused (a wrong token: Forbidden).
        """
        reply = await self.connection.request(
            self.auth({"janus": "create"}), what="creating a session"
        )
        self.id = int(reply["data"]["id"])
        self._keeper = asyncio.create_task(self._keep_alive(), name=f"janus-keepalive {self.id}")

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive)
            try:
                await self.connection.request(
                    self.auth({"janus": "keepalive", "session_id": self.id}),
                    what="keepalive",
                    ack_answers=True,
                )
            except HybridconError as exc:
                # The connection's own close handling reports Janus down; a refused
                # keepalive (the session expired) ends the socket so it is noticed.
                log.warning("janus_keepalive_failed", session=self.id, error=exc.message)
                await self.connection.abort()
                return

    async def attach(self, plugin: str = VIDEOROOM) -> JanusHandle:
        """Attach a handle to ``plugin``.

        Raises:
            Unavailable: Janus cannot be reached.
            JanusError: Janus refused.
        """
        reply = await self.connection.request(
            self.auth({"janus": "attach", "plugin": plugin, "session_id": self.id}),
            what=f"attaching to {plugin}",
        )
        return JanusHandle(self, int(reply["data"]["id"]))

    async def destroy(self) -> None:
        """Stop the keepalives and end the session in Janus (quietly if it is gone)."""
        if self._keeper is not None and self._keeper is not asyncio.current_task():
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self.connection.open and self.id:
            with contextlib.suppress(HybridconError):
                await self.connection.request(
                    self.auth({"janus": "destroy", "session_id": self.id}),
                    what="destroying the session",
                )


class JanusHandle:
    """A handle attached to a plugin; its events go to the listener set with :meth:`listen`."""

    def __init__(self, session: JanusSession, handle_id: int) -> None:
        self.session = session
        self.id = handle_id
        self.detached = False

    def listen(self, listener: EventListener | None) -> None:
        """Receive Janus's messages about this handle (``event``, ``webrtcup``, ``hangup``...)."""
        self.session.connection.on_handle_event(self.id, listener)

    async def message(self, body: Json, jsep: Json | None = None) -> PluginReply:
        """Send the plugin a request; its answer (synchronous or after ``ack``).

        Raises:
            Unavailable: Janus cannot be reached.
            JanusError: the core or the plugin refused; the plugin's ``error_code`` is
                mapped as the core's codes are.
        """
        what = str(body.get("request", "a request"))
        payload: Json = {
            "janus": "message",
            "session_id": self.session.id,
            "handle_id": self.id,
            "body": body,
        }
        if jsep is not None:
            payload["jsep"] = jsep
        reply = await self.session.connection.request(self.session.auth(payload), what=what)
        data = (reply.get("plugindata") or {}).get("data") or {}
        if "error_code" in data:
            raise janus_error("videoroom", int(data["error_code"]), str(data.get("error")), what)
        jsep_out = reply.get("jsep")
        return PluginReply(data, jsep_out if isinstance(jsep_out, dict) else None)

    async def detach(self) -> None:
        """Detach (ends its peer connection, and a VideoRoom participant leaves); idempotent,
        quiet when Janus or the handle is already gone."""
        if self.detached:
            return
        self.detached = True
        connection = self.session.connection
        if connection.open:
            with contextlib.suppress(HybridconError):
                await connection.request(
                    self.session.auth(
                        {"janus": "detach", "session_id": self.session.id, "handle_id": self.id}
                    ),
                    what="detaching a handle",
                )
        self.listen(None)


class JanusAdmin:
    """Janus's admin API, for its stored tokens.

    Args:
        url: ``ws://host:port`` of the admin WebSocket (``admin_ws``).
        secret: Janus's ``admin_secret``.
        timeout: seconds a request may take.
    """

    def __init__(self, url: str, secret: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout

    async def _call(self, payload: Json, what: str) -> Json:
        # One short-lived socket per call: token changes are rare (a connect, a stop).
        connection = JanusConnection(self.url, protocol=ADMIN_PROTOCOL, timeout=self.timeout)
        await connection.connect()
        try:
            return await connection.request({**payload, "admin_secret": self.secret}, what=what)
        finally:
            await connection.close()

    async def add_token(self, token: str, plugins: tuple[str, ...] = (VIDEOROOM,)) -> None:
        """Store ``token``, allowed to attach to ``plugins``.

        Raises:
            Unavailable: the admin API cannot be reached.
            JanusError: refused (a wrong admin secret: Forbidden).
        """
        await self._call(
            {"janus": "add_token", "token": token, "plugins": list(plugins)}, "add_token"
        )

    async def remove_token(self, token: str) -> None:
        """Forget ``token``: every request with it is refused from now on.

        Raises:
            Unavailable: the admin API cannot be reached.
            JanusError: refused (an unknown token: Forbidden, 470 TOKEN_NOT_FOUND).
        """
        await self._call({"janus": "remove_token", "token": token}, "remove_token")

    async def list_tokens(self) -> list[str]:
        """The stored tokens.

        Raises:
            Unavailable: the admin API cannot be reached.
            JanusError: refused.
        """
        reply = await self._call({"janus": "list_tokens"}, "list_tokens")
        return [str(t["token"]) for t in reply.get("data", {}).get("tokens", [])]
