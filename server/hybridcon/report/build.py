"""From the database to figures: choose the range, read the log or the kept aggregates.

The report never reads mutable state for its counts: the figures come from the
append-only log, or, for a purged day, from the aggregates kept for it (R20).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

import asyncpg

from hybridcon.core.programme import Programme
from hybridcon.core.report.figures import DEFAULT_K, Figures, compute
from hybridcon.core.report.units import units
from hybridcon.report.files import ReportError
from hybridcon.store import purge as purge_store
from hybridcon.store import report as report_store
from hybridcon.store.report import Progress

MINUTE = timedelta(minutes=1)


def floor_minute(when: datetime) -> datetime:
    """``when`` rounded down to its minute (R2)."""
    return when.replace(second=0, microsecond=0)


def ceil_minute(when: datetime) -> datetime:
    """``when`` rounded up to a whole minute."""
    floored = floor_minute(when)
    return floored if floored == when else floored + MINUTE


def parse_when(text: str, tz: tzinfo, *, end: bool) -> datetime:
    """A ``--from``/``--to`` value: an ISO date (a whole day in ``tz``: its start, or for
    ``end`` the next day's start) or an ISO date and time (naive: in ``tz``).

    Raises:
        ReportError: not a date or time.
    """
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            when = datetime.combine(day + timedelta(days=1) if end else day, time(0), tzinfo=tz)
        else:
            when = datetime.fromisoformat(text)
            when = when if when.tzinfo else when.replace(tzinfo=tz)
    except ValueError:
        raise ReportError(
            f"{text!r} is not a date or a date and time (e.g. 2022-05-05 or 2022-05-05T14:00)"
        ) from None
    return when


async def build(
    pool: asyncpg.Pool,
    programme: Programme,
    *,
    start: datetime | None,
    end: datetime | None,
    k: int = DEFAULT_K,
    progress: Progress = report_store.no_progress,
) -> Figures:
    """The figures for ``[start, end)`` (None: from the log's first to its last event).

    Raises:
        ReportError: nothing to report (an empty log, an empty range), a range that
            mixes purged days with raw rows or cuts a purged day.
        asyncpg.PostgresError, OSError: the database failed or went away.
    """
    kept = await purge_store.kept_days(pool)
    span = await report_store.log_span(pool)
    if span is None and not kept:
        raise ReportError("the engagement log is empty: there is nothing to report yet")
    if start is None or end is None:
        candidates = [d.range_from for d in kept] + ([span[0]] if span else [])
        ends = [d.range_to for d in kept] + ([span[1] + timedelta(microseconds=1)] if span else [])
        start = start or min(candidates)
        end = end or max(ends)
    start, end = floor_minute(start.astimezone(UTC)), ceil_minute(end.astimezone(UTC))
    if start >= end:
        raise ReportError("--from must be before --to")
    overlapping = [d for d in kept if d.range_from < end and d.range_to > start]
    if overlapping:
        exact = [d for d in overlapping if d.range_from == start and d.range_to == end]
        if len(overlapping) > 1 or not exact:
            days = ", ".join(d.day.isoformat() for d in overlapping)
            raise ReportError(
                f"the range covers purged days ({days}); only whole purged days can be "
                "reported, one at a time: give --from and --to as that one date"
            )
        agg = await purge_store.load_kept(pool, exact[0].day)
        if agg is None:
            raise ReportError(
                f"the aggregates kept for {exact[0].day} are of another version of hybridcon"
            )
        raw = await pool.fetchval(
            "SELECT count(*) FROM engagement_events WHERE ts >= $1 AND ts < $2", start, end
        )
        if raw:
            raise ReportError(
                f"{exact[0].day} was purged, but {raw} rows were logged for it since; "
                "they are not in its kept aggregates, so no report can include both"
            )
        return compute(agg, units(programme, agg.range_from, agg.range_to), k)
    all_units = units(programme, start, end)
    agg = await report_store.gather(pool, all_units, start, end, progress=progress)
    if agg.events == 0:
        where = (
            f"; the log runs from {span[0]:%Y-%m-%d %H:%M} to {span[1]:%Y-%m-%d %H:%M} UTC"
            if span
            else ""
        )
        raise ReportError(
            f"no engagement events between {start:%Y-%m-%d %H:%M} and "
            f"{end:%Y-%m-%d %H:%M} UTC{where}"
        )
    return compute(agg, all_units, k)
