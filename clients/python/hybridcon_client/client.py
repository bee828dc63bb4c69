"""The asyncio client: one WebSocket, one reader task, requests by id, a stream of pushes.

How it works:

* One *supervisor* task owns the connection. It reads every frame; replies
  (``result``/``error``) resolve the future of the request with that ``id``; everything
  else is a push and goes, in arrival order, into the event queue read by
  :meth:`HybridconClient.events`.
* Pushes on a topic carry ``seq``. The client remembers the last ``seq`` it queued per
  topic and drops a push whose ``seq`` is not above it (a duplicate, typically between
  the ``missed`` list of a subscribe reply and live pushes). Pushes without ``seq``
  (``presence.count``, ``reactions`` ...) always pass.
* While a ``subscribe`` is in flight, pushes on its topic are held back; when its reply
  comes, the reply's ``missed`` events are queued first, then the held-back pushes, so
  the stream stays in ``seq`` order whichever the server sends first.
* When the connection drops for a reason worth retrying, the supervisor reconnects
  with exponential backoff and full jitter, authenticates with the same token
  (:attr:`HybridconClient.token`, which may be replaced meanwhile) and subscribes again
  to each topic with ``since`` = the last ``seq`` queued, so the missed events arrive
  in the same stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self, TypeGuard

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from hybridcon_client.errors import (
    CLOSE_ABNORMAL,
    ConnectionClosedByServer,
    ConnectionLost,
    HybridconError,
    RequestTimeout,
    should_reconnect,
)

log = logging.getLogger("hybridcon_client")

#: A message as received: a JSON object.
Event = dict[str, Any]

#: Types of the events the client itself adds to the stream (never sent by the server).
RECONNECTED: Final = "client.reconnected"
RESYNC: Final = "client.resync"
SUBSCRIBE_FAILED: Final = "client.subscribe_failed"

_END: Final[Event] = {"type": "client.end"}  # the queue's end marker, compared by identity
_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
_CLOSE_TIMEOUT: Final = 2.0


@dataclass(slots=True)
class _Pending:
    """A request waiting for its reply."""

    future: asyncio.Future[Event]
    kind: str
    topic: str | None = None  # subscribe only
    since: int | None = None  # subscribe only
    again: bool = False  # a subscribe sent by the client itself after a reconnect


class _Overflow(Exception):
    """The event queue is full: drop the connection and come back later with ``since``."""


def _is_seq(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class HybridconClient:
    """A connection to a hybridcon server's ``/ws`` endpoint.

    Use it as an async context manager (or call :meth:`connect` and :meth:`close`)::

        async with HybridconClient("wss://conf.example/ws", token) as client:
            await client.subscribe("stage:plenary")
            await client.send_chat("stage:plenary", "Hello!")
            async for event in client.events():
                print(event["type"], event)

    Args:
        url: ``ws://host/ws`` or ``wss://host/ws`` (``http(s)://`` is accepted too).
        token: the JWT sent in the first frame; read again on each reconnect, so it may
            be replaced through :attr:`token`.
        reconnect: reconnect after a drop worth retrying (see
            :func:`~hybridcon_client.errors.should_reconnect`). Off: any drop ends the
            session.
        backoff_initial: upper bound of the first reconnect delay, in seconds; the
            bound doubles with each failed attempt up to ``backoff_max``, and each delay
            is drawn uniformly below it ("full jitter").
        backoff_max: the largest reconnect delay bound, in seconds.
        request_timeout: seconds to wait for a reply (including for the connection to
            come back), and for connecting and authenticating.
        max_queue: events kept for :meth:`events`. When the queue is full the client
            closes the connection and, once the consumer has read half of the queue,
            reconnects with ``since``: sequenced events are recovered from the server,
            unsequenced ones (viewer counts, reaction counts) in between are lost.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        reconnect: bool = True,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        request_timeout: float = 10.0,
        max_queue: int = 10_000,
    ) -> None:
        if backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        if request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if url.startswith(("http://", "https://")):
            url = "ws" + url.removeprefix("http")
        self.url = url
        self.token = token
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.request_timeout = request_timeout
        self.max_queue = max_queue
        #: The ``user`` object of the last ``auth.ok`` (id, name, role, scopes).
        self.user: dict[str, Any] | None = None
        #: The ``session_id`` of the last ``auth.ok``; changes on each reconnect.
        self.session_id: str | None = None
        #: How many times the client has reconnected.
        self.reconnects = 0

        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()  # set: connected, or finished for good
        # Clear from a reconnect until its subscribe frames are sent: requests wait for it,
        # or one sent in that moment (a heartbeat) would reach the server before the
        # topic is subscribed again and be refused.
        self._resubscribed = asyncio.Event()
        self._resubscribed.set()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._topics: dict[str, None] = {}  # subscribed topics, in subscription order
        self._unsubscribed: set[str] = set()
        self._last_seq: dict[str, int] = {}
        self._held: dict[str, list[Event]] = {}  # pushes waiting for a subscribe reply
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._overflowed = False
        self._room = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._finished = False
        self._terminal: ConnectionLost | None = None
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not security

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> Self:
        """Open the connection and authenticate.

        The first connection is not retried: a wrong address or token fails here.

        Raises:
            ConnectionClosedByServer: the server refused the token (4001, 4003).
            ConnectionLost: the server could not be reached or did not answer in time.
        """
        if self._task is not None or self._closing:
            raise RuntimeError("already connected (or closed)")
        ws = await self._open()
        self._attach(ws)
        self._task = asyncio.create_task(self._supervise(ws), name="hybridcon-client")
        return self

    async def close(self) -> None:
        """Close the connection; :meth:`events` ends after the events already queued."""
        if self._closing:
            if self._task is not None:
                await asyncio.wait({self._task})
            return
        self._closing = True
        self._room.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        if task is None:
            self._finish()

    @property
    def connected(self) -> bool:
        """Whether a connection is open and authenticated right now."""
        return self._ws is not None and not self._finished

    @property
    def closed(self) -> bool:
        """Whether the session has ended (closed by the caller or the server)."""
        return self._finished

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics this client is subscribed to (re-subscribed after reconnects)."""
        return tuple(self._topics)

    @property
    def last_seq(self) -> Mapping[str, int]:
        """The last ``seq`` delivered per topic."""
        return dict(self._last_seq)

    # -- events ----------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """The server's pushes, in arrival order, without duplicates.

        Besides the server's messages, the stream carries a few of the client's own,
        their ``type`` prefixed ``client.``:

        * ``client.reconnected`` ``{session_id, attempt}``: a new connection is up;
        * ``client.resync`` ``{topic, seq, snapshot}``: a subscribe with ``since`` (as
          after every reconnect) came back with ``reset``: the server's history did not
          reach back far enough; replace what you hold for the topic with ``snapshot``;
        * ``client.subscribe_failed`` ``{topic, code, message}``: subscribing again
          after a reconnect failed; the topic is dropped.

        Ends when :meth:`close` is called; ends by raising
        :class:`~hybridcon_client.errors.ConnectionClosedByServer` (or
        :class:`~hybridcon_client.errors.ConnectionLost` with ``reconnect=False``)
        when the server ends the session.
        """
        while True:
            event = await self._queue.get()
            if event is _END:
                self._queue.put_nowait(_END)  # for any other iterator
                if self._terminal is not None:
                    raise self._terminal.copy()
                return
            if self._overflowed and self._queue.qsize() <= self.max_queue // 2:
                self._room.set()
            yield event

    # -- requests --------------------------------------------------------------------

    async def request(self, kind: str, /, **fields: Any) -> Event:
        """Send ``{"id": n, "type": kind, **fields}`` and return the reply's ``data``.

        Waits for the connection to come back if it is reconnecting. Concurrent
        requests are fine.

        Raises:
            HybridconError: the server answered with an ``error`` reply.
            ConnectionLost: the connection dropped before the reply (the request may
                have been carried out), or the session is over.
            RequestTimeout: no reply within ``request_timeout`` seconds.
        """
        if "id" in fields or "type" in fields:
            raise ValueError("'id' and 'type' are set by the client")
        return await self._request(kind, fields)

    async def ping(self) -> Event:
        """Application-level ping; the result holds the server's time ``ts``."""
        return await self._request("ping", {})

    async def subscribe(self, topic: str, *, since: int | None = None) -> Event:
        """Subscribe to ``topic`` and return the result data.

        The data holds ``topic``, ``seq`` (the latest on the topic), ``snapshot``,
        ``missed`` and ``reset``. With ``since``, the ``missed`` events are also put into
        :meth:`events` ahead of later pushes; ``reset: true`` means the server's history
        did not reach back to ``since`` and ``snapshot`` replaces your state.
        The client subscribes again by itself after a reconnect.
        """
        fields: dict[str, Any] = {"topic": topic}
        if since is not None:
            fields["since"] = since
        return await self._request("subscribe", fields, topic=topic, since=since)

    async def unsubscribe(self, topic: str) -> Event:
        """Stop receiving ``topic``; its pushes still in flight are dropped."""
        self._topics.pop(topic, None)
        self._unsubscribed.add(topic)
        return await self._request("unsubscribe", {"topic": topic})

    async def send_chat(self, topic: str, text: str) -> Event:
        """``chat.send``. Not idempotent: retrying after ConnectionLost may post twice."""
        return await self._request("chat.send", {"topic": topic, "text": text})

    async def vote(
        self, poll_id: str | int, choice: str | int | float | Sequence[str | int]
    ) -> Event:
        """``poll.vote``: an option id, a list of ids, a number or a text.

        Safe to retry: the server counts one vote per person per poll.
        """
        value: Any = (
            list(choice) if isinstance(choice, Sequence) and not isinstance(choice, str) else choice
        )
        return await self._request("poll.vote", {"poll_id": poll_id, "choice": value})

    async def ask(self, topic: str, text: str) -> Event:
        """``qa.ask``: put a question to the session. Not idempotent."""
        return await self._request("qa.ask", {"topic": topic, "text": text})

    async def upvote(self, question_id: str | int) -> Event:
        """``qa.upvote``."""
        return await self._request("qa.upvote", {"question_id": question_id})

    async def react(self, topic: str, emoji: str) -> Event:
        """``react``: one emoji reaction (aggregated by the server)."""
        return await self._request("react", {"topic": topic, "emoji": emoji})

    async def heartbeat(
        self,
        topic: str,
        *,
        playing: bool,
        visible: bool,
        muted: bool | None = None,
        quality: str | None = None,
    ) -> Event:
        """``presence.heartbeat``: send every 30 s while watching."""
        fields: dict[str, Any] = {"topic": topic, "playing": playing, "visible": visible}
        if muted is not None:
            fields["muted"] = muted
        if quality is not None:
            fields["quality"] = quality
        return await self._request("presence.heartbeat", fields)

    async def _request(
        self,
        kind: str,
        fields: dict[str, Any],
        *,
        topic: str | None = None,
        since: int | None = None,
    ) -> Event:
        try:
            async with asyncio.timeout(self.request_timeout):
                ws = await self._wait_ready()
                return await self._call(ws, kind, fields, topic=topic, since=since)
        except TimeoutError as exc:
            if isinstance(exc, RequestTimeout):
                raise
            raise RequestTimeout(kind, self.request_timeout) from None

    async def _wait_ready(self) -> ClientConnection:
        while True:
            if self._finished or self._closing:
                if self._terminal is not None:
                    raise self._terminal.copy()
                raise ConnectionLost(None, "the client is closed")
            if self._task is None:
                raise ConnectionLost(None, "not connected: call connect() first")
            ws = self._ws
            if ws is not None and self._resubscribed.is_set():
                return ws
            if ws is not None:
                await self._resubscribed.wait()
                continue
            await self._ready.wait()

    async def _call(
        self,
        ws: ClientConnection,
        kind: str,
        fields: dict[str, Any],
        *,
        topic: str | None = None,
        since: int | None = None,
        again: bool = False,
        sent: asyncio.Event | None = None,
    ) -> Event:
        ident = next(self._ids)
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        subscribing = kind == "subscribe" and topic is not None
        self._pending[ident] = _Pending(future, kind, topic, since, again)
        if subscribing:
            assert topic is not None
            self._held.setdefault(topic, [])
        try:
            try:
                await ws.send(json.dumps({"id": ident, "type": kind, **fields}))
                if sent is not None:
                    sent.set()
            except ConnectionClosed as exc:
                if future.done():  # the reader has already failed it with the close code
                    return future.result()
                code = exc.rcvd.code if exc.rcvd is not None else CLOSE_ABNORMAL
                raise ConnectionLost(code, "connection closed while sending") from None
            return await future
        finally:
            self._pending.pop(ident, None)
            if subscribing and not future.done():
                assert topic is not None
                self._held.pop(topic, None)

    # -- connection ------------------------------------------------------------------

    async def _open(self) -> ClientConnection:
        """Connect and authenticate; set :attr:`user` and :attr:`session_id`."""
        try:
            async with asyncio.timeout(self.request_timeout):
                ws = await ws_connect(
                    self.url,
                    compression=None,
                    max_size=_MAX_FRAME_BYTES,
                    open_timeout=None,
                    close_timeout=_CLOSE_TIMEOUT,
                    user_agent_header="hybridcon-client/0.1",
                )
        except TimeoutError:
            raise ConnectionLost(None, f"could not connect to {self.url} in time") from None
        except InvalidURI:
            raise
        except (OSError, InvalidHandshake) as exc:
            raise ConnectionLost(None, f"could not connect to {self.url}: {exc}") from exc
        try:
            await ws.send(json.dumps({"type": "auth", "token": self.token}))
            async with asyncio.timeout(self.request_timeout):
                raw = await ws.recv()
        except ConnectionClosed as exc:
            if exc.rcvd is None:
                raise ConnectionLost(CLOSE_ABNORMAL, "connection lost during auth") from None
            code, reason = exc.rcvd.code, exc.rcvd.reason
            if not should_reconnect(code, reason):
                raise ConnectionClosedByServer(code, reason) from None
            raise ConnectionLost(code, reason) from None
        except BaseException as exc:
            ws.transport.abort()
            if isinstance(exc, TimeoutError):
                raise ConnectionLost(None, "no auth.ok in time") from None
            raise
        try:
            frame = json.loads(raw)
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or frame.get("type") != "auth.ok":
            ws.transport.abort()
            raise ConnectionLost(None, f"expected auth.ok, got {str(raw)[:200]!r}")
        user = frame.get("user")
        self.user = user if isinstance(user, dict) else None
        session_id = frame.get("session_id")
        self.session_id = str(session_id) if session_id is not None else None
        return ws

    def _attach(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ready.set()

    def _detach(self, error: ConnectionLost) -> None:
        self._ws = None
        self._ready.clear()
        self._held.clear()
        pending, self._pending = self._pending, {}
        for request in pending.values():
            if not request.future.done():
                request.future.set_exception(error.copy())

    def _finish(self) -> None:
        """The session is over: wake everyone and end the event stream."""
        if self._finished:
            return
        self._finished = True
        self._detach(self._terminal or ConnectionLost(None, "the client is closed"))
        self._ready.set()
        self._resubscribed.set()
        self._room.set()
        for task in self._side_tasks:
            task.cancel()
        self._queue.put_nowait(_END)

    async def _supervise(self, ws: ClientConnection) -> None:
        try:
            while True:
                code, reason, by_server = await self._read(ws)
                if self._closing:
                    return
                lost = (
                    ConnectionClosedByServer(code, reason)
                    if by_server and (not self.reconnect or not should_reconnect(code, reason))
                    else ConnectionLost(code, reason)
                )
                if isinstance(lost, ConnectionClosedByServer) or not self.reconnect:
                    self._terminal = lost
                    return
                log.info("connection lost (%s %s); reconnecting", code, reason)
                self._detach(lost)
                next_ws = await self._reconnect()
                if next_ws is None:
                    return
                ws = next_ws
        except ConnectionClosedByServer as exc:
            self._terminal = exc
        except asyncio.CancelledError:
            if not self._closing:
                raise
        except Exception as exc:  # a bug: end the session visibly rather than hang
            log.exception("hybridcon client failed")
            self._terminal = ConnectionLost(None, f"client error: {exc!r}")
        finally:
            self._finish()

    async def _read(self, ws: ClientConnection) -> tuple[int, str, bool]:
        """Read frames until the connection ends; return (code, reason, closed by server)."""
        try:
            async for raw in ws:
                self._on_frame(raw)
        except ConnectionClosed:
            pass
        except _Overflow:
            self._overflowed = True
            self._room.clear()
            log.warning("event queue full (%d); reconnecting when it drains", self.max_queue)
            await ws.close(1000, "client event queue full")
            return CLOSE_ABNORMAL, "event queue full", False
        rcvd = ws.protocol.close_rcvd
        if rcvd is None:
            return CLOSE_ABNORMAL, "", False
        return rcvd.code, rcvd.reason, True

    async def _reconnect(self) -> ClientConnection | None:
        """Open a new connection with backoff; None when the client closes meanwhile."""
        attempt = 0
        while not self._closing:
            if self._overflowed:
                await self._room.wait()
                if self._closing:
                    break
            bound = min(self.backoff_max, self.backoff_initial * 2 ** min(attempt, 32))
            attempt += 1
            await asyncio.sleep(self._rng.uniform(0, bound))
            try:
                ws = await self._open()
            except ConnectionClosedByServer:
                raise
            except ConnectionLost as exc:
                log.info("reconnect attempt %d failed: %s", attempt, exc)
                continue
            self._overflowed = False
            self.reconnects += 1
            if self._topics:
                self._resubscribed.clear()
            self._attach(ws)
            self._queue.put_nowait(
                {"type": RECONNECTED, "session_id": self.session_id, "attempt": attempt}
            )
            if self._topics:
                task = asyncio.create_task(self._resubscribe(ws), name="hybridcon-resubscribe")
                self._side_tasks.add(task)
                task.add_done_callback(self._side_tasks.discard)
            return ws
        return None

    async def _resubscribe(self, ws: ClientConnection) -> None:
        topics = list(self._topics)
        sent = [asyncio.Event() for _ in topics]
        replies = asyncio.gather(
            *(self._resubscribe_one(ws, t, e) for t, e in zip(topics, sent, strict=True))
        )
        try:
            for event in sent:  # each is set once its frame is out, or its attempt over
                await event.wait()
        finally:
            if self._ws is ws or self._ws is None:  # not a newer connection's wait
                self._resubscribed.set()
        await replies

    async def _resubscribe_one(self, ws: ClientConnection, topic: str, sent: asyncio.Event) -> None:
        since = self._last_seq.get(topic)
        fields: dict[str, Any] = {"topic": topic}
        if since is not None:
            fields["since"] = since
        try:
            async with asyncio.timeout(self.request_timeout):
                await self._call(
                    ws, "subscribe", fields, topic=topic, since=since, again=True, sent=sent
                )
        except (ConnectionLost, HybridconError):
            return  # lost: the next connection tries again; refused: see _on_reply
        except TimeoutError:
            self._subscribe_failed(topic, "timeout", f"no reply in {self.request_timeout:g} s")
        finally:
            sent.set()

    def _subscribe_failed(self, topic: str, code: str, message: str) -> None:
        log.warning("could not subscribe again to %s: %s %s", topic, code, message)
        self._topics.pop(topic, None)
        self._queue.put_nowait(
            {"type": SUBSCRIBE_FAILED, "topic": topic, "code": code, "message": message}
        )

    # -- the reader's routing (synchronous: runs between two frames) ---------------------

    def _on_frame(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            log.warning("ignoring a binary frame")
            return
        try:
            frame = json.loads(raw)
        except ValueError:
            log.warning("ignoring a frame that is not JSON: %.200s", raw)
            return
        if not isinstance(frame, dict):
            log.warning("ignoring a frame that is not an object: %.200s", raw)
            return
        kind = frame.get("type")
        if kind in ("result", "error"):
            self._on_reply(frame)
        else:
            self._on_push(frame)

    def _on_reply(self, frame: Event) -> None:
        ident = frame.get("id")
        request = self._pending.pop(ident, None) if _is_seq(ident) else None
        if request is None:
            if frame.get("type") == "error":
                log.warning(
                    "server error without a pending request: %s %s",
                    frame.get("code"),
                    frame.get("message"),
                )
            return
        if frame.get("type") == "error":
            if request.topic is not None:
                self._held.pop(request.topic, None)
            error = HybridconError(str(frame.get("code", "internal")), str(frame.get("message")))
            if request.again and request.topic is not None:
                self._subscribe_failed(request.topic, error.code, error.message)
            if not request.future.done():
                request.future.set_exception(error)
            return
        data = frame.get("data")
        if not isinstance(data, dict):
            data = {}
        if not request.future.done():
            request.future.set_result(data)
        if request.kind == "subscribe" and request.topic is not None:
            self._on_subscribed(request.topic, request.since, data)

    def _on_subscribed(self, topic: str, since: int | None, data: Event) -> None:
        held = self._held.pop(topic, [])
        self._topics[topic] = None
        self._unsubscribed.discard(topic)
        seq = data.get("seq")
        reset = bool(data.get("reset"))
        if since is None or reset:
            # The snapshot is the state at ``seq``: start counting from there.
            if _is_seq(seq):
                self._last_seq[topic] = seq
            else:
                self._last_seq.pop(topic, None)
        if reset and since is not None:
            self._queue.put_nowait(
                {"type": RESYNC, "topic": topic, "seq": seq, "snapshot": data.get("snapshot")}
            )
        missed = data.get("missed")
        if isinstance(missed, list):
            for event in missed:
                if isinstance(event, dict):
                    event.setdefault("topic", topic)
                    self._deliver(event)
        for event in held:
            self._deliver(event)

    def _on_push(self, event: Event) -> None:
        topic = event.get("topic")
        if isinstance(topic, str):
            held = self._held.get(topic)
            if held is not None:
                held.append(event)
                return
            if topic in self._unsubscribed:
                return
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        """Queue ``event`` unless it repeats a ``seq``; raise _Overflow when full."""
        topic = event.get("topic")
        seq = event.get("seq")
        if not (isinstance(topic, str) and _is_seq(seq)):
            topic = seq = None  # not sequenced: always passes
        elif seq <= self._last_seq.get(topic, seq - 1):
            return
        if self._queue.qsize() >= self.max_queue:
            raise _Overflow
        self._queue.put_nowait(event)
        if topic is not None and seq is not None:
            self._last_seq[topic] = seq
