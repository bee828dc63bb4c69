"""Signals between nodes: "this state changed, read it again", over the node's bus.

State that must agree across nodes (poll ballots, Q&A upvotes, held chat lines,
sanctions) is durable in PostgreSQL; each node keeps a copy in memory to answer and push
from. When a node changes such state it stores it first, then sends a signal naming
what changed; every *other* node reads that part again from PostgreSQL and pushes what
follows to its own subscribers. A signal never carries the state itself, only where to
look, so two signals about the same thing in either order leave every node with what
PostgreSQL holds last.

Signals travel on one internal topic of the bus (:data:`SIGNALS`, never a client's
topic), unsequenced. Pub/sub loses nothing on a live connection; what is lost while
Redis is away is made good by the resync handlers, which run after each reconnect of
the bus (everything is read again). On the local bus a signal only comes back to its
own node, which ignores it: one node behaves exactly as without signals.

Handlers run in the order the signals arrive, one at a time: a handler may do part of
its work at once (a state it can set without reading) and return a coroutine for the
rest, which a worker awaits in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import orjson
import structlog

from hybridcon.bus.protocol import Bus

log = structlog.get_logger(__name__)

SIGNALS = "~nodes"
"""The bus topic of node-to-node signals (a name no client topic can have)."""

SignalHandler = Callable[[dict[str, Any]], Coroutine[Any, Any, None] | None]
"""Called with a signal's data; may return a coroutine to be awaited in arrival order."""

Resync = Callable[[], Awaitable[None]]
"""Reads a capability's shared state again from storage (after the bus reconnected)."""


class Signals:
    """Send and receive node-to-node signals over ``bus``.

    Args:
        bus: the node's bus (its messages on :data:`SIGNALS` come to :meth:`received`).
    """

    def __init__(self, bus: Bus) -> None:
        self.node_id = secrets.token_hex(8)
        self._bus = bus
        self._handlers: dict[str, SignalHandler] = {}
        self._resync: list[Resync] = []
        self._work: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.resyncs = 0
        bus.on_reconnect(self._reconnected)

    def on(self, kind: str, handler: SignalHandler) -> None:
        """Handle the signals of ``kind`` sent by other nodes."""
        self._handlers[kind] = handler

    def on_resync(self, resync: Resync) -> None:
        """Run ``resync`` after every reconnect of the bus."""
        self._resync.append(resync)

    def send(self, kind: str, data: Mapping[str, Any]) -> None:
        """Tell the other nodes that what ``data`` names changed (queued, never awaited)."""
        self._bus.publish(SIGNALS, orjson.dumps({"node": self.node_id, "kind": kind, "data": data}))

    def received(self, payload: bytes) -> None:
        """A signal from the bus (this node's own are ignored)."""
        try:
            message = orjson.loads(payload)
            if message["node"] == self.node_id:
                return
            handler = self._handlers.get(message["kind"])
            if handler is None:
                return
            pending = handler(message["data"])
        except Exception:
            log.exception("signal_not_handled", payload=payload[:200])
            return
        if pending is not None:
            work = pending
            self._work.put_nowait(lambda: work)

    def _reconnected(self) -> None:
        self._work.put_nowait(self._resync_all)

    async def _resync_all(self) -> None:
        for resync in self._resync:
            await resync()
        self.resyncs += 1
        log.info("shared_state_reloaded", handlers=len(self._resync))

    async def start(self) -> None:
        """Listen to the signals topic and start the worker."""
        await self._bus.watch(SIGNALS)
        self._worker = asyncio.create_task(self._run(), name="node-signals")

    async def stop(self) -> None:
        """Stop the worker (signals still queued are dropped: the node is stopping)."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def _run(self) -> None:
        while True:
            work = await self._work.get()
            try:
                await work()
            except Exception:
                # PostgreSQL away: the state stays as it was until the next signal about
                # it or the next resync; the node keeps serving.
                log.exception("signal_work_failed")
