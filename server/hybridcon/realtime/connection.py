"""One authenticated WebSocket connection: a bounded outbound buffer, flushed by the node.

Nothing awaits a client's socket on the fan-out path. Messages arrive as pre-built
frames (serialised once per fan-out, see :mod:`hybridcon.realtime.wire`) and are
appended to the connection's pending buffer; the node's :class:`Flusher` writes each
connection's pending frames in one ``transport.write`` per tick. A burst that
fills the buffer between ticks is written at once; a client whose transport is paused
(it does not read) keeps its frames pending, and when they pass the limit it is too far
behind and is closed with 4008. It never delays
anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from hybridcon.core.pacing import next_tick
from hybridcon.core.ratelimit import TokenBucket
from hybridcon.core.tokens import Claims
from hybridcon.errors import CLOSE_POLICY
from hybridcon.realtime.wire import RawWriter, close_reason, text_frame

log = structlog.get_logger(__name__)

CLOSE_TIMEOUT = 5.0


class Flusher:
    """Writes the connections' pending frames: pushes coalesced per tick, replies at once.

    Each tick first asks its sources (the hub: every topic's frames of the tick, joined
    once) to queue what they hold, then writes each dirty connection in one write. A
    reply to a client's own request is written on the next loop iteration, for that
    connection only: it must not pull everyone's pushes forward (that would undo the
    coalescing that makes a delivery cheap).

    Ticks are paced by their starts (:func:`hybridcon.core.pacing.next_tick`): a push
    waits at least ``interval``, and while pushes keep coming a tick starts ``period``
    after the previous one started, so the wait after a long tick (a big stage, a busy
    core) is shorter and the wait after a short one longer.

    Args:
        interval: the least seconds a push waits for others; 0: the next loop iteration.
        period: the least seconds between two tick starts; 0: ticks are paced by
            ``interval`` alone (a fixed wait after each tick's first push).
        load_factor: > 0: the period follows the last tick's length times this (at
            most ``period``), so a lightly loaded node writes almost at once
            (:func:`hybridcon.core.pacing.next_tick`); 0: fixed.
    """

    def __init__(self, interval: float, period: float = 0.0, load_factor: float = 0.0) -> None:
        self.interval = interval
        self.period = period
        self.load_factor = load_factor
        self._last_start: float | None = None
        self._last_tick: float | None = None
        self.sources: list[Callable[[], None]] = []
        self._dirty: dict[Connection, None] = {}
        self._urgent: dict[Connection, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._soon: asyncio.Handle | None = None
        self._flushing = False

    def schedule(self) -> None:
        """Make sure a tick is coming (a source has something to queue)."""
        if self._timer is None and not self._flushing:
            loop = asyncio.get_running_loop()
            due = next_tick(
                loop.time(),
                self._last_start,
                interval=self.interval,
                period=self.period,
                last_tick=self._last_tick,
                load_factor=self.load_factor,
            )
            self._timer = loop.call_at(due, self.flush)

    def mark(self, conn: Connection, *, urgent: bool = False) -> None:
        """``conn`` has pending frames: write them at the next tick (a reply: at once)."""
        if urgent:
            self._urgent[conn] = None
            if self._soon is None:
                self._soon = asyncio.get_running_loop().call_soon(self._flush_urgent)
        else:
            self._dirty[conn] = None
            self.schedule()

    def _flush_urgent(self) -> None:
        self._soon = None
        urgent, self._urgent = self._urgent, {}
        for conn in urgent:
            if not conn.flush():
                self._dirty[conn] = None
                self.schedule()

    def flush(self) -> None:
        """A tick: queue the sources' frames, then write every dirty connection.
        Connections whose peer is not reading wait for a later tick."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        self._last_start = start = loop.time()
        self._flushing = True
        try:
            for source in self.sources:
                source()
        finally:
            self._flushing = False
        dirty, self._dirty = self._dirty, {}
        for conn in dirty:
            if not conn.flush():
                self._dirty[conn] = None
        self._last_tick = loop.time() - start
        if self._dirty:
            # Stalled peers: look again later rather than spinning.
            self._timer = asyncio.get_running_loop().call_later(
                max(self.interval, 0.05), self.flush
            )

    def forget(self, conn: Connection) -> None:
        """Drop a closed connection."""
        self._dirty.pop(conn, None)
        self._urgent.pop(conn, None)


class Connection:
    """A client's connection after ``auth.ok``.

    A node holds thousands of these for hours, so it keeps only what it needs (slots, no
    event until someone waits for the close) and records when the client last sent a
    frame (``last_received``, for the gateway's idle sweep) instead of a timer each.
    """

    __slots__ = (
        "_close",
        "_closed",
        "_closer",
        "_flusher",
        "_max_pending",
        "_pending",
        "_pending_bytes",
        "_writer",
        "bucket",
        "claims",
        "id",
        "last_received",
        "rejected_in_a_row",
        "topics",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        claims: Claims,
        *,
        flusher: Flusher,
        max_pending_bytes: int,
        bucket: TokenBucket,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.ws = ws
        self.claims = claims
        # A tuple, not a set: most connections follow one or two topics (48 bytes for one,
        # a set is 216 however few it holds); the hub replaces it on (un)subscribe.
        self.topics: tuple[str, ...] = ()
        self.bucket = bucket
        self.rejected_in_a_row = 0
        self._writer = RawWriter(request)
        self._flusher = flusher
        self._max_pending = max_pending_bytes
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._close: tuple[int, str] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._closed: asyncio.Event | None = None
        self.last_received = time.monotonic()

    def send_frame(self, frame: bytes, *, urgent: bool = False) -> bool:
        """Queue pre-built frames; close the connection (4008) if it is too far behind.

        Returns:
            Whether the frames were queued.
        """
        if self._close is not None:
            return False
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        if self._pending_bytes > self._max_pending and not self.flush():
            return False  # closed: the peer is not reading and too much is waiting
        self._flusher.mark(self, urgent=urgent)
        return True

    def write_now(self, data: bytes) -> bool:
        """Write frames straight to the socket if nothing is waiting before them and the
        peer is reading (the tick's common case: no queue, no second pass).

        Returns:
            Whether it was written; if not, the caller queues it with :meth:`send_frame`.
        """
        if self._close is not None or self._pending or not self._writer.open:
            return False
        if self._writer.paused:
            return False
        self._writer.write(data)
        return True

    def send(self, message: dict[str, Any]) -> bool:
        """Encode and queue one message for this connection only (a reply), flushed at once."""
        return self.send_frame(text_frame(orjson.dumps(message)), urgent=True)

    def send_raw(self, payload: bytes) -> bool:
        """Queue an already encoded JSON message for this connection only, flushed at once."""
        return self.send_frame(text_frame(payload), urgent=True)

    def flush(self) -> bool:
        """Write the pending frames in one write.

        Returns:
            False while the peer is not reading (the frames stay pending), unless more
            than the limit is waiting: then the connection is closed with 4008 (and the
            result is False too). True once written (or nothing to write).
        """
        if not self._pending:
            return True
        if not self._writer.open:
            self._pending.clear()
            self._pending_bytes = 0
            return True
        if self._writer.paused:
            if self._pending_bytes > self._max_pending:
                self.close(CLOSE_POLICY, "too slow: messages were not read in time")
            return False
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._writer.write(data)
        return True

    def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code``: what is pending is written first if the peer is
        reading (replies before a policy close), and dropped if it is not."""
        if self._close is not None:
            return
        if not self._writer.paused:  # replies before a policy close still go out
            self.flush()
        self._close = (code, reason)
        self._pending.clear()
        self._pending_bytes = 0
        self._flusher.forget(self)
        self._closer = asyncio.get_running_loop().create_task(
            self._do_close(code, reason), name=f"ws-close-{self.id}"
        )

    async def _do_close(self, code: int, reason: str) -> None:
        try:
            # A peer that reads nothing can keep aiohttp's close waiting on drain; do not
            # let it hold the connection open.
            await asyncio.wait_for(
                self.ws.close(code=code, message=close_reason(reason)), CLOSE_TIMEOUT
            )
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            log.debug("ws_close_forced", connection_id=self.id, error=str(exc))
            with contextlib.suppress(Exception):
                self._writer.abort()
        finally:
            if self._closed is not None:
                self._closed.set()

    @property
    def closed(self) -> asyncio.Event:
        """Set once a close asked for with :meth:`close` has finished (made on first use:
        most connections never have anyone waiting for it)."""
        if self._closed is None:
            self._closed = asyncio.Event()
            if self._closer is not None and self._closer.done():
                self._closed.set()
        return self._closed

    @property
    def close_code(self) -> int | None:
        """The close code asked for, if any."""
        return self._close[0] if self._close else None

    async def wait_closed(self) -> None:
        """Wait until a close asked for with :meth:`close` has finished."""
        if self._closer is not None:
            await asyncio.shield(self._closer)
