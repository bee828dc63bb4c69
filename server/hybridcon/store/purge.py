"""``hybridcon purge``: keep each whole day's report aggregates, then delete its raw rows
(``docs/report-definitions.md``, R20).

A day is a calendar day in the event's time zone. Only days that end at or before the
cut-off are purged, each in one transaction: the aggregates are computed and stored,
then the rows are deleted, so there is never a moment with neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

import asyncpg

from hybridcon.core.programme import Programme
from hybridcon.core.report.aggregates import VERSION, Aggregates
from hybridcon.core.report.units import units
from hybridcon.store.db import Executor
from hybridcon.store.report import gather_in


@dataclass(frozen=True, slots=True)
class KeptDay:
    """A purged day: its range and what was kept."""

    day: date
    range_from: datetime
    range_to: datetime
    rows_purged: int


def day_range(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """``[day 00:00, next day 00:00)`` in ``tz``."""
    return (
        datetime.combine(day, time(0), tzinfo=tz),
        datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz),
    )


async def purge_before(
    pool: asyncpg.Pool, programme: Programme, before: datetime, tz: tzinfo
) -> list[KeptDay]:
    """Purge every whole day (in ``tz``) that ends at or before ``before``.

    Returns:
        The days purged now, oldest first (a day with no rows is not listed).

    Raises:
        asyncpg.PostgresError, OSError: the database failed (the day being purged is
            left as it was).
    """
    tz_name = str(getattr(tz, "key", "UTC"))
    days = [
        r["d"]
        for r in await pool.fetch(
            "SELECT DISTINCT (ts AT TIME ZONE $2)::date AS d FROM engagement_events"
            " WHERE ts < $1 ORDER BY 1",
            before,
            tz_name,
        )
    ]
    # A day purged before keeps its first aggregates: rows logged for it since are left
    # in the log (the report names them), never deleted without being counted.
    kept = {d.day for d in await kept_days(pool)}
    done: list[KeptDay] = []
    for day in days:
        start, end = day_range(day, tz)
        if end > before or day in kept:
            continue
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            agg = await gather_in(conn, units(programme, start, end), start, end)
            await conn.execute("SET LOCAL hybridcon.purge = 'on'")
            status = await conn.execute(
                "DELETE FROM engagement_events WHERE ts >= $1 AND ts < $2", start, end
            )
            purged = int(status.split()[-1])
            await conn.execute(
                """INSERT INTO report_aggregates
                       (day, range_from, range_to, version, aggregates, rows_purged)
                   VALUES ($1, $2, $3, $4, $5::jsonb, $6)
                   ON CONFLICT (day) DO NOTHING""",
                day,
                start,
                end,
                VERSION,
                agg.model_dump_json(),
                purged,
            )
        done.append(KeptDay(day, start, end, purged))
    return done


async def kept_days(conn: Executor) -> list[KeptDay]:
    """Every purged day, oldest first."""
    return [
        KeptDay(r["day"], r["range_from"], r["range_to"], r["rows_purged"])
        for r in await conn.fetch(
            "SELECT day, range_from, range_to, rows_purged FROM report_aggregates ORDER BY day"
        )
    ]


async def load_kept(conn: Executor, day: date) -> Aggregates | None:
    """The aggregates kept for ``day``, or None (also for another shape's version)."""
    row = await conn.fetchrow(
        "SELECT version, aggregates FROM report_aggregates WHERE day = $1", day
    )
    if row is None or row["version"] != VERSION:
        return None
    return Aggregates.model_validate_json(row["aggregates"])
