"""The Flusher paces its ticks by their starts (hybridcon.core.pacing), on a real loop."""

from __future__ import annotations

import asyncio
import itertools

from hybridcon.realtime.connection import Flusher


async def ticks_of(flusher: Flusher, count: int, *, busy: float = 0.0) -> list[float]:
    """Start times of ``count`` ticks when a push arrives right after each tick (a stage
    that never goes quiet); each tick blocks the loop ``busy`` seconds, as writing a
    big stage does."""
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    done = asyncio.Event()

    def source() -> None:
        starts.append(loop.time())
        end = loop.time() + busy
        while loop.time() < end:  # the tick's own work: the loop is blocked meanwhile
            pass
        if len(starts) < count:
            loop.call_soon(flusher.schedule)  # the next push, right after the tick
        else:
            done.set()

    flusher.sources.append(source)
    flusher.schedule()
    await asyncio.wait_for(done.wait(), 10)
    return starts


async def test_ticks_start_a_period_apart_while_pushes_keep_coming() -> None:
    loop = asyncio.get_running_loop()
    asked = loop.time()
    starts = await ticks_of(Flusher(0.0, 0.1), 4)
    assert starts[0] - asked < 0.05  # the first push waits only the interval (0)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.1 - 1e-3 for gap in gaps), gaps


async def test_a_long_tick_is_followed_by_a_shorter_wait() -> None:
    # Ticks of 60 ms in a 100 ms period: the next starts 100 ms after, not 60 + 100.
    starts = await ticks_of(Flusher(0.0, 0.1), 4, busy=0.06)
    gaps = sorted(b - a for a, b in itertools.pairwise(starts))
    assert gaps[0] >= 0.1 - 1e-3, gaps
    assert gaps[len(gaps) // 2] < 0.15, gaps  # a fixed wait after the tick would be 0.16


async def test_without_a_period_each_tick_waits_the_interval_after_its_first_push() -> None:
    starts = await ticks_of(Flusher(0.05, 0.0), 3, busy=0.06)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.06 + 0.05 - 1e-3 for gap in gaps), gaps
