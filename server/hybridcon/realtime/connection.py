"""One authenticated WebSocket connection: a bounded outbound queue and one writer task.

Nothing awaits a client's socket except its own writer task, so a slow client never
delays anyone else. Frames are enqueued already encoded (serialised once per fan-out
by the sender); when the queue is full the client is too far behind and is closed
with 4008.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import structlog
from aiohttp import web

from hybridcon.core.tokens import Claims
from hybridcon.errors import CLOSE_POLICY

log = structlog.get_logger(__name__)

_CLOSE = object()


class Connection:
    """A client's connection after ``auth.ok``."""

    def __init__(self, ws: web.WebSocketResponse, claims: Claims, *, queue_size: int) -> None:
        self.id = uuid.uuid4().hex
        self.ws = ws
        self.claims = claims
        self._queue: asyncio.Queue[str | object] = asyncio.Queue(maxsize=queue_size)
        self._close: tuple[int, str] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    def start(self) -> None:
        """Start the writer task."""
        self._writer = asyncio.create_task(self._write(), name=f"ws-writer-{self.id}")

    def send_frame(self, frame: str) -> bool:
        """Queue an encoded frame; close the connection (4008) if it is too far behind.

        Returns:
            Whether the frame was queued.
        """
        if self._close is not None:
            return False
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.close(CLOSE_POLICY, "too slow: messages were not read in time")
            return False
        return True

    def send(self, message: dict[str, Any]) -> bool:
        """Encode and queue one message for this connection only (replies)."""
        return self.send_frame(orjson.dumps(message).decode())

    def close(self, code: int, reason: str) -> None:
        """Ask the writer to close the socket with ``code`` after nothing more is sent."""
        if self._close is not None:
            return
        self._close = (code, reason)
        # Drop what is queued: a closing connection needs none of it, and the close
        # must not wait behind a backlog.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_CLOSE)

    @property
    def close_code(self) -> int | None:
        """The close code asked for, if any."""
        return self._close[0] if self._close else None

    async def _write(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if item is _CLOSE:
                    break
                assert isinstance(item, str)
                await self.ws.send_str(item)
        except (ConnectionResetError, RuntimeError) as exc:
            log.debug("ws_write_failed", connection_id=self.id, error=str(exc))
        finally:
            code, reason = self._close or (1000, "")
            if not self.ws.closed:
                await self.ws.close(code=code, message=reason.encode()[:120])
            self.closed.set()

    async def wait_closed(self) -> None:
        """Wait until the writer has finished (after :meth:`close`)."""
        if self._writer is not None:
            await asyncio.shield(self._writer)
