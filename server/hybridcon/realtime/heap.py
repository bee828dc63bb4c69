"""Keeping Python's full garbage collections short while an audience joins.

A full (generation 2) collection walks every container object the process holds and
stops the event loop while it does: about 0.7 µs per object here. With 5,000 viewers
connected the server holds ~620,000 objects, of which ~90,000 exist from start-up and
~75 per connection (aiohttp's request, protocol, reader and writer, ours). CPython
starts a full collection whenever the objects that survived since the last one exceed
a quarter of the rest, so while thousands of people connect it runs again and again,
each time longer: 0.1 to 0.33 s pauses, 5 times in 4.5 s, at the benchmark's 5,000
joins (docs/benchmarks.md). Every pause holds up all fan-out: with 2,000 people joining
a stage of 5,000 while its chat runs, p99 delivery latency was 439 ms, and 178 ms with
the heap frozen.

``gc.freeze()`` moves every object alive into a permanent generation that collections
skip, in constant time. Freezing after start-up and after every ``every`` joins keeps the
generations a collection walks to at most a few hundred connections' worth. The cost:
an object frozen and later dropped in a reference cycle is only freed after
``gc.unfreeze()``, and a closed connection leaves ~45 such objects. So when a quarter of
what was frozen (at least ``every`` connections) has left, the heap is thawed, collected
once (the pause a departure wave causes anyway) and frozen again, a little later.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

# Seconds between the departure that makes a thaw due and the thaw.
THAW_DELAY = 2.0


class HeapFreezer:
    """Freezes the objects alive after start-up and after bursts of joins; thaws them
    after departures.

    Args:
        every: joins between two freezes; 0 turns all of it off.
        freeze: ``gc.freeze`` (replaceable so that the policy can be tested without
            freezing the test process's heap).
        unfreeze: ``gc.unfreeze``.
        collect: ``gc.collect``.
        call_later: schedules the thaw (``loop.call_later`` of the running loop).
    """

    def __init__(
        self,
        every: int,
        *,
        freeze: Callable[[], None] = gc.freeze,
        unfreeze: Callable[[], None] = gc.unfreeze,
        collect: Callable[[], int] = gc.collect,
        call_later: Callable[[float, Callable[[], None]], asyncio.TimerHandle | None] | None = None,
    ) -> None:
        self.every = every
        self._freeze = freeze
        self._unfreeze = unfreeze
        self._collect = collect
        self._call_later = call_later
        self._joined = 0  # joins since the last freeze
        self._frozen = 0  # connections frozen since the last thaw
        self._left = 0  # connections closed since the last thaw
        self._open = 0  # connections open after the last departure
        self._thaw_due: asyncio.TimerHandle | bool = False

    def started(self) -> None:
        """The node has started: freeze what start-up built. Without a collection first:
        it would walk the whole heap (in tests, every earlier test's too), and the little
        start-up garbage it would free is freed at the first thaw."""
        if self.every:
            self._freeze()

    def stopped(self) -> None:
        """The node is stopping: thaw, so that what it built can be freed (tests start and
        stop many nodes in one process)."""
        if not self.every:
            return
        if isinstance(self._thaw_due, asyncio.TimerHandle):
            self._thaw_due.cancel()
        self._thaw_due = False
        self._unfreeze()

    def joined(self) -> None:
        """A connection was authenticated; after ``every`` of them, freeze."""
        if not self.every:
            return
        self._joined += 1
        if self._joined >= self.every:
            self._freeze()
            self._frozen += self._joined
            self._joined = 0

    def left(self, still_open: int) -> None:
        """A connection closed (``still_open`` remain). Once a quarter of the frozen ones
        (at least ``every``) have, a thaw is due ``THAW_DELAY`` seconds later: people leave
        in waves (a session ends), and a connection's objects only become garbage once its
        handler has finished, so collecting at once would walk the whole heap for little."""
        if not self.every:
            return
        self._left += 1
        self._open = still_open
        if self._thaw_due or self._left < max(self.every, self._frozen // 4):
            return
        call_later = self._call_later or asyncio.get_running_loop().call_later
        self._thaw_due = call_later(THAW_DELAY, self.thaw) or True

    def thaw(self) -> None:
        """Thaw, collect what the departed left (one full collection), freeze again."""
        self._unfreeze()
        found = self._collect()
        self._freeze()
        log.info("heap_thawed", departed=self._left, still_open=self._open, collected=found)
        self._frozen = self._open
        self._joined = 0
        self._left = 0
        self._thaw_due = False
