"""The organisers' live view: the ``org`` topic and ``GET /api/v1/live`` (R21).

About once a second, while an organiser follows ``org``, the view is counted from the
engagement log (the same definitions as the report, over the last minute) and pushed as
``live``. The peaks per stage are kept in memory from the node's start. The HTTP route
asks :meth:`Live.current`, which answers from a view at most a second old, so polling
clients cannot multiply the queries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Final

from hybridcon.core.report.live import live_view
from hybridcon.realtime.command import Capability
from hybridcon.realtime.context import Context, Node
from hybridcon.store.live import live_counts

TOPIC: Final = "org"
INTERVAL: Final = 1.0


class Live(Capability):
    """The live view's state: the last view, when it was made, the peaks so far."""

    pushes: ClassVar[Mapping[str, str]] = {
        "live": "org: the organisers' live view, about once a second while followed"
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self._peaks: dict[str, tuple[int, datetime]] = {}
        self._view: dict[str, Any] | None = None
        self._made = -INTERVAL
        self._lock = asyncio.Lock()
        self._stages = tuple(s.id for s in node.programme.stages if s.streamed)

    async def start(self) -> None:
        """Start the once-a-second push."""
        self._node.every(INTERVAL, self.tick, "live")

    async def tick(self) -> None:
        """Count and push the view, if an organiser follows ``org``."""
        if self._node.viewers(TOPIC) == 0:
            return
        # Each node pushes the view (read from PostgreSQL) to its own organisers.
        self._node.broadcast_here(TOPIC, "live", await self.current())

    async def current(self) -> dict[str, Any]:
        """The live view, made now unless the last one is under a second old.

        Raises:
            asyncpg.PostgresError, OSError, Unavailable: the database failed.
        """
        async with self._lock:  # one count at a time; a waiting caller takes its result
            if self._view is not None and time.monotonic() - self._made < INTERVAL:
                return self._view
            counts = await live_counts(self._node.db(), self._node.clock())
            self._view, self._peaks = live_view(counts, self._stages, self._peaks)
            self._made = time.monotonic()
            return self._view

    def snapshot(self, ctx: Context, topic: str, moderator: bool) -> dict[str, Any]:
        """``org``'s snapshot: the last view (None before the first)."""
        return {"live": self._view} if topic == TOPIC else {}
