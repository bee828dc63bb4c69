"""The identified attendance export (certificates of attendance, for accreditation).

The engagement log holds keyed hashes only. For each invite, the hash its person would
have (``actor_hash(key, "i:<invite id>")``) is computed here and joined to the log in
PostgreSQL, so names meet figures only in this export, which only organisers get and
which is audited by its callers. Hall guests (``h:`` subjects) have no name and never
appear. After a purge the raw rows are gone, and with them this export.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from hybridcon.core.engagement import actor_hash
from hybridcon.store.engagement import attentive


@dataclass(frozen=True, slots=True)
class Attendance:
    """One invited person's attendance: attentive minutes (R6, R9) and check-ins (R16)."""

    ticket_id: str
    name: str
    email: str | None
    attentive_minutes: int
    checkins: int


async def attendance(
    pool: asyncpg.Pool, key: bytes, start: datetime, end: datetime
) -> list[Attendance]:
    """Every invite with its person's attendance in ``[start, end)`` (zero when absent).

    Raises:
        asyncpg.PostgresError, OSError: the database failed.
    """
    invites = await pool.fetch("SELECT id, ticket_id, name, email FROM invites ORDER BY ticket_id")
    hashes = [actor_hash(key, f"i:{r['id'].hex}") for r in invites]
    rows = await pool.fetch(
        f"""
        WITH people AS (SELECT * FROM unnest($1::text[], $2::int[]) AS p(actor, idx))
        SELECT p.idx,
               count(DISTINCT date_trunc('minute', e.ts)) FILTER (
                   WHERE {attentive("e")}) AS minutes,
               count(*) FILTER (WHERE e.kind = 'checkin') AS checkins
        FROM people p JOIN engagement_events e ON e.actor = p.actor
        WHERE e.ts >= $3 AND e.ts < $4 AND e.kind IN ('heartbeat', 'checkin')
        GROUP BY p.idx
        """,  # noqa: S608 (the attentive condition is a constant)
        hashes,
        list(range(len(hashes))),
        start,
        end,
    )
    found = {r["idx"]: (r["minutes"], r["checkins"]) for r in rows}
    return [
        Attendance(
            ticket_id=r["ticket_id"],
            name=r["name"],
            email=r["email"],
            attentive_minutes=found.get(i, (0, 0))[0],
            checkins=found.get(i, (0, 0))[1],
        )
        for i, r in enumerate(invites)
    ]
