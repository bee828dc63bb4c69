"""When the next fan-out tick is due: coalescing paced by tick starts, not by tick ends.

A tick writes every subscriber of a busy stage once; at 5,000 viewers that takes
~80 ms (more when the core is shared). A line that arrives while a tick is writing
waits for the rest of it, then for the gap before the next tick, then for its place in
that tick. With a fixed gap after each tick (``interval``) that is up to
``interval + 2 × tick``, so every millisecond a tick grows counts twice, and a stage
with short ticks (few viewers) writes more often and coalesces less.

Pacing the ticks by their *starts* bounds it by ``period + tick``: while pushes keep
coming a tick starts ``period`` after the previous one started, so the wait after a
tick shrinks as the tick grows, and grows on small stages, which keeps lines per write
(and so the cost of a delivery) about the same whatever the tick length.

**Adapting to the load.** A fixed period buys CPU on a busy node but costs latency on a
quiet one: at 500 viewers a tick takes a few milliseconds, and a line still waits up to
the whole period. With a ``load_factor``, the period is that many times the last tick's
length (at most ``period``), and a push waits at most that long: a node whose ticks are
short writes almost at once, and coalesces more as its ticks grow, reaching the full
period when a tick takes ``period / load_factor`` (about 80 ms: some 5,000 viewers).
"""

from __future__ import annotations


def next_tick(
    now: float,
    last_start: float | None,
    *,
    interval: float,
    period: float,
    last_tick: float | None = None,
    load_factor: float = 0.0,
) -> float:
    """The time the next tick is due, asked when a push arrives and none is scheduled.

    Args:
        now: the current time (seconds, any monotonic clock).
        last_start: when the previous tick started, or None if there has been none.
        interval: the least a push waits to be coalesced with others (≥ 0).
        period: the least time between two tick starts (≥ 0; 0: only ``interval`` counts,
            a fixed wait after the first push of each tick); with ``load_factor``, the
            most.
        last_tick: how long the previous tick took (seconds), if known.
        load_factor: > 0: the period is ``load_factor × last_tick`` (at most ``period``)
            and ``interval`` at most that; 0: the fixed ``interval`` and ``period``.

    Returns:
        ``max(now + interval, last_start + period)``: never before ``now + interval``,
        and never sooner than ``period`` after the previous tick started.

    Raises:
        ValueError: ``interval``, ``period`` or ``load_factor`` is negative.
    """
    if interval < 0 or period < 0 or load_factor < 0:
        raise ValueError(
            f"interval, period and load_factor must be >= 0, not {interval!r}, {period!r}"
            f" and {load_factor!r}"
        )
    if load_factor > 0 and last_tick is not None:
        period = min(period, load_factor * max(0.0, last_tick))
        interval = min(interval, period)
    due = now + interval
    if last_start is not None and last_start + period > due:
        return last_start + period
    return due
