"""The report's aggregation: PostgreSQL sums the engagement log up into
:class:`~hybridcon.core.report.aggregates.Aggregates` (``docs/report-definitions.md``).

The log is never read row by row into Python. One scan of the range groups the
audience's events per (topic, person, minute) into a temporary table (``r_pm``); that is
joined to the units' windows (``r_upm``: per unit, person and minute, so a person's
parallel devices and topics count once); every figure's input is then a ``GROUP BY``
over those two, or over the few system events (polls, streams). Everything runs in one
``REPEATABLE READ`` transaction, so all figures see the same rows, and the temporary
tables go with it. Memory in Python is bounded by the programme's size and the day's
minutes, not by the number of rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

from hybridcon.core.engagement import EventKind
from hybridcon.core.report.aggregates import (
    ActionCount,
    Aggregates,
    Incident,
    MinuteRow,
    PersonGroup,
    PollResult,
    PollRow,
    QuestionRow,
    RetentionRow,
    TimeCount,
    TopicPeople,
    UnitCounts,
)
from hybridcon.core.report.units import Unit, window_arrays
from hybridcon.store.db import Conn, Executor
from hybridcon.store.engagement import attentive

Progress = Callable[[str], None]

# The audience's events that make a person reached (R7) and those that are taking part (R12).
REACH_KINDS = (
    "join",
    "heartbeat",
    "chat",
    "poll_vote",
    "question",
    "upvote",
    "reaction",
    "checkin",
    "session_join",
)
PART_KINDS = ("chat", "poll_vote", "question", "upvote", "reaction")
PROBLEMS = ("black", "frozen", "silent", "loss")  # R18
# Open answers go to the moderators only (operations.md, polls): never into a report.
NO_RESULTS_KINDS = ("open",)

STEPS = (
    "scanning the log",
    "people per unit",
    "minutes",
    "retention",
    "chat and questions",
    "polls",
    "questions, check-ins, hall votes",
    "stream incidents",
)

_PM = f"""
CREATE TEMP TABLE r_pm ON COMMIT DROP AS
SELECT topic, actor, date_trunc('minute', ts) AS m,
       bool_or(kind = 'heartbeat') AS hb,
       bool_or({attentive()}) AS att,
       bool_or(kind = ANY($4::text[])) AS part,
       bool_or(kind = 'checkin') AS checkin
FROM engagement_events
WHERE ts >= $1 AND ts < $2 AND actor IS NOT NULL AND topic IS NOT NULL
  AND kind = ANY($3::text[]) AND data->>'role' = 'viewer'
GROUP BY 1, 2, 3
"""  # noqa: S608 (the attentive condition is a constant)

_UNITS = """
CREATE TEMP TABLE r_units ON COMMIT DROP AS
SELECT unit, topic, t0, t1
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) AS u(unit, topic, t0, t1)
WHERE topic <> '*'
"""

# The day (R4) is every stage and session topic that appears in the range.
_DAY = """
INSERT INTO r_units (unit, topic, t0, t1)
SELECT 'day', topic, $1, $2 FROM (
    SELECT DISTINCT topic FROM r_pm
    UNION
    SELECT DISTINCT topic FROM engagement_events
    WHERE kind = ANY($3::text[]) AND ts >= $1 AND ts < $2 AND topic IS NOT NULL
) t
WHERE topic LIKE 'stage:%' OR topic LIKE 'session:%'
"""

_UPM = """
CREATE TEMP TABLE r_upm ON COMMIT DROP AS
SELECT u.unit, p.actor, p.m, bool_or(p.hb) AS hb, bool_or(p.att) AS att,
       bool_or(p.part) AS part
FROM r_pm p JOIN r_units u ON u.topic = p.topic AND p.m >= u.t0 AND p.m < u.t1
GROUP BY 1, 2, 3
"""

_PEOPLE = """
WITH per AS (
    SELECT unit, actor, count(*) FILTER (WHERE att) AS minutes, bool_or(part) AS took_part
    FROM r_upm GROUP BY unit, actor
), onsite AS (SELECT DISTINCT actor FROM r_pm WHERE checkin)
SELECT per.unit, (onsite.actor IS NOT NULL) AS onsite, per.minutes, per.took_part,
       count(*) AS people
FROM per LEFT JOIN onsite USING (actor)
GROUP BY 1, 2, 3, 4
"""

_MINUTES = """
SELECT unit, m, count(*) FILTER (WHERE hb) AS present, count(*) FILTER (WHERE att) AS attentive
FROM r_upm GROUP BY unit, m HAVING count(*) FILTER (WHERE hb) > 0
"""

_RETENTION = """
WITH items AS (
    SELECT unit, s FROM unnest($1::text[], $2::timestamptz[]) AS i(unit, s)
), cohort AS (
    SELECT DISTINCT p.unit, p.actor FROM r_upm p JOIN items i USING (unit)
    WHERE p.att AND p.m >= i.s AND p.m < i.s + interval '5 minutes'
)
SELECT unit, -1 AS offset_, count(*) AS people FROM cohort GROUP BY unit
UNION ALL
SELECT p.unit, (extract(epoch FROM p.m - i.s) / 60)::int, count(*)
FROM r_upm p JOIN items i USING (unit) JOIN cohort c ON c.unit = p.unit AND c.actor = p.actor
WHERE p.att AND p.m >= i.s
GROUP BY 1, 2
"""

# Event counts: a theme's windows may overlap (a stage and an item on it), so rows are
# counted by id, once per unit.
_COUNTS = """
SELECT u.unit,
       count(DISTINCT e.id) FILTER (WHERE e.kind = 'chat') AS lines,
       count(DISTINCT e.actor) FILTER (WHERE e.kind = 'chat') AS chatters,
       count(DISTINCT e.id) FILTER (WHERE e.kind = 'question') AS questions
FROM engagement_events e
JOIN r_units u ON u.topic = e.topic
     AND date_trunc('minute', e.ts) >= u.t0 AND date_trunc('minute', e.ts) < u.t1
WHERE e.kind IN ('chat', 'question') AND e.ts >= $1 AND e.ts < $2
  AND e.data->>'role' = 'viewer'
GROUP BY u.unit
"""

_MODERATION = """
SELECT u.unit, coalesce(e.data->>'action', '?') AS action, count(DISTINCT e.id) AS n
FROM engagement_events e
JOIN r_units u ON u.topic = e.topic
     AND date_trunc('minute', e.ts) >= u.t0 AND date_trunc('minute', e.ts) < u.t1
WHERE e.kind = 'chat_moderated' AND e.ts >= $1 AND e.ts < $2
GROUP BY 1, 2
"""

_REACTIONS = """
SELECT topic, date_bin('5 minutes', ts, TIMESTAMPTZ '2000-01-01 00:00Z') AS start, count(*) AS n
FROM engagement_events
WHERE kind = 'reaction' AND ts >= $1 AND ts < $2 AND topic LIKE 'stage:%'
GROUP BY 1, 2
"""

_POLLS = """
WITH opened AS (
    SELECT DISTINCT ON (data->>'poll_id') data->>'poll_id' AS poll_id, ts,
           ARRAY(SELECT jsonb_array_elements_text(data->'topics')) AS topics
    FROM engagement_events
    WHERE kind = 'poll_opened' AND ts >= $1 AND ts < $2
    ORDER BY data->>'poll_id', ts
), voters AS (
    SELECT data->>'poll_id' AS poll_id,
           count(DISTINCT actor) FILTER (WHERE data->>'origin' LIKE 'hall:%') AS hall,
           count(DISTINCT actor) FILTER (WHERE data->>'origin' NOT LIKE 'hall:%') AS online
    FROM engagement_events
    WHERE kind = 'poll_vote' AND ts >= $1 AND ts < $2 AND data->>'role' = 'viewer'
    GROUP BY 1
)
SELECT o.poll_id, o.ts, o.topics, p.question, p.kind, p.state,
       (SELECT count(DISTINCT r.actor) FROM r_pm r
        WHERE r.att AND r.topic = ANY(o.topics) AND r.m = date_trunc('minute', o.ts)) AS attentive,
       coalesce(v.online, 0) AS online, coalesce(v.hall, 0) AS hall
FROM opened o
LEFT JOIN voters v USING (poll_id)
LEFT JOIN polls p ON o.poll_id ~ '^[0-9a-f]{32}$' AND p.poll_id = o.poll_id::uuid
ORDER BY o.ts, o.poll_id
"""

_POLL_RESULTS = """
SELECT replace(v.poll_id::text, '-', '') AS poll_id,
       CASE WHEN v.origin LIKE 'hall:%' THEN 'zaal' ELSE 'online' END AS origin,
       v.choice::text AS choice, count(*) AS people
FROM votes v JOIN polls p USING (poll_id)
WHERE replace(v.poll_id::text, '-', '') = ANY($1::text[]) AND NOT p.kind = ANY($2::text[])
GROUP BY 1, 2, 3
"""

_QUESTIONS = """
WITH asked AS (
    SELECT DISTINCT ON (data->>'question_id') data->>'question_id' AS qid, topic
    FROM engagement_events
    WHERE kind = 'question' AND ts >= $1 AND ts < $2
    ORDER BY data->>'question_id', ts
), ups AS (
    SELECT data->>'question_id' AS qid, count(DISTINCT actor) AS n
    FROM engagement_events
    WHERE kind = 'upvote' AND ts >= $1 AND ts < $2 AND data->>'role' = 'viewer'
    GROUP BY 1
)
SELECT a.qid, a.topic, coalesce(ups.n, 0) AS n,
       CASE WHEN q.state IN ('approved', 'answered') THEN q.text END AS text
FROM asked a
LEFT JOIN ups USING (qid)
LEFT JOIN questions q ON a.qid ~ '^[0-9a-f]{32}$' AND q.question_id = a.qid::uuid
ORDER BY n DESC, a.qid
LIMIT $3
"""

_CHECKINS = "SELECT topic, count(DISTINCT actor) AS n FROM r_pm WHERE checkin GROUP BY topic"

_HALL_VOTES = """
SELECT 'stage:' || substr(data->>'origin', 6) AS topic,
       count(DISTINCT (actor, data->>'poll_id')) AS n
FROM engagement_events
WHERE kind = 'poll_vote' AND ts >= $1 AND ts < $2 AND data->>'origin' LIKE 'hall:%'
  AND data->>'role' = 'viewer'
GROUP BY 1
"""

_INCIDENTS = """
WITH changes AS (
    SELECT topic, ts, kind, data->>'state' AS state FROM engagement_events
    WHERE kind IN ('stream_started', 'stream_ended') AND ts >= $1 AND ts < $2
      AND topic LIKE 'stage:%'
), interruptions AS (
    SELECT c.topic, 'interrupted' AS kind, c.ts AS s,
           coalesce((SELECT min(n.ts) FROM changes n WHERE n.topic = c.topic
                     AND n.kind = 'stream_started' AND n.ts > c.ts), $2) AS e
    FROM changes c WHERE c.kind = 'stream_ended' AND c.state = 'interrupted'
), health AS (
    SELECT e.topic, e.ts, p.problem,
           coalesce((e.data->'problems') ? p.problem, false) AS bad
    FROM engagement_events e CROSS JOIN unnest($3::text[]) AS p(problem)
    WHERE e.kind = 'stream_health' AND e.ts >= $1 AND e.ts < $2 AND e.topic LIKE 'stage:%'
), runs AS (
    SELECT topic, ts, problem, bad,
           row_number() OVER (PARTITION BY topic, problem ORDER BY ts)
           - row_number() OVER (PARTITION BY topic, problem, bad ORDER BY ts) AS run
    FROM health
), problems AS (
    SELECT topic, problem AS kind, min(ts) AS s, max(ts) AS e
    FROM runs WHERE bad GROUP BY topic, problem, run
), incidents AS (
    -- UNION, not UNION ALL: the same change logged twice at the same time is one incident.
    SELECT * FROM interruptions UNION SELECT * FROM problems
)
-- Each incident as its minutes, so the join to r_pm is on equality (a hash of the few
-- incident minutes), not a range over every row of the stage.
, minutes AS (
    SELECT i.topic, i.kind, i.s, i.e, m
    FROM incidents i, generate_series(date_trunc('minute', i.s), i.e, interval '1 minute') AS m
)
, touched AS (
    SELECT i.topic, i.kind, i.s, i.e, count(DISTINCT p.actor) AS n
    FROM minutes i JOIN r_pm p ON p.topic = i.topic AND p.m = i.m AND p.hb
    GROUP BY i.topic, i.kind, i.s, i.e
)
SELECT i.topic, i.kind, i.s, i.e, coalesce(t.n, 0) AS touched
FROM incidents i LEFT JOIN touched t USING (topic, kind, s, e)
"""


def no_progress(_step: str) -> None:
    """No progress shown (the server; tests)."""


async def log_span(conn: Executor) -> tuple[datetime, datetime] | None:
    """The first and last event of the whole log, or None when it is empty."""
    row = await conn.fetchrow("SELECT min(ts) AS a, max(ts) AS b FROM engagement_events")
    if row is None or row["a"] is None:
        return None
    return row["a"], row["b"]


async def gather(
    pool: asyncpg.Pool,
    all_units: tuple[Unit, ...],
    start: datetime,
    end: datetime,
    *,
    progress: Progress = no_progress,
) -> Aggregates:
    """Aggregate the log over ``[start, end)`` in a transaction of its own (see :func:`gather_in`).

    Raises:
        asyncpg.PostgresError, OSError: the database failed or went away.
    """
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        return await gather_in(conn, all_units, start, end, progress=progress)


async def gather_in(
    conn: Conn,
    all_units: tuple[Unit, ...],
    start: datetime,
    end: datetime,
    *,
    progress: Progress = no_progress,
) -> Aggregates:
    """Aggregate the log over ``[start, end)`` for ``all_units``, inside the caller's
    transaction (its temporary tables go with it; ``REPEATABLE READ`` keeps every
    figure on the same rows).

    ``start`` and ``end`` should be whole minutes (R2): the CLI rounds them outwards.

    Args:
        conn: a connection inside a transaction.
        all_units: the report's units (their windows lie within the range).
        start: the range's start.
        end: the range's end.
        progress: called with each step's name before it runs.

    Returns:
        The aggregates (R5-R18 inputs).

    Raises:
        asyncpg.PostgresError, OSError: the database failed or went away.
    """
    unit_ids, topics, froms, tos = window_arrays(all_units)
    known = [k.value for k in EventKind]
    # The per-person-minute groupings of a large day do not fit PostgreSQL's default 4 MB
    # and spill to disk: at 2.5 M rows, 64 MB spilled ~200 MB per step; 256 MB keeps a
    # 1 M-row day in memory. Only this transaction's sorts and hashes get it.
    await conn.execute("SET LOCAL work_mem = '256MB'")
    progress(STEPS[0])
    kinds = await conn.fetch(
        "SELECT kind, count(*) AS n, min(ts) AS a, max(ts) AS b FROM engagement_events"
        " WHERE ts >= $1 AND ts < $2 GROUP BY kind",
        start,
        end,
    )
    await conn.execute(_PM, start, end, list(REACH_KINDS), list(PART_KINDS))
    await conn.execute(_UNITS, unit_ids, topics, froms, tos)
    await conn.execute(_DAY, start, end, ["chat_moderated"])
    await conn.execute(_UPM)
    await conn.execute("ANALYZE r_upm")
    progress(STEPS[1])
    people = [
        PersonGroup(
            unit=r["unit"],
            onsite=r["onsite"],
            minutes=r["minutes"],
            took_part=r["took_part"],
            people=r["people"],
        )
        for r in await conn.fetch(_PEOPLE)
    ]
    progress(STEPS[2])
    minutes = [
        MinuteRow(unit=r["unit"], minute=r["m"], present=r["present"], attentive=r["attentive"])
        for r in await conn.fetch(_MINUTES)
    ]
    progress(STEPS[3])
    streamed = [u for u in all_units if u.kind == "item" and _on_stage(u)]
    retention = [
        RetentionRow(unit=r["unit"], offset=r["offset_"], people=r["people"])
        for r in await conn.fetch(
            _RETENTION, [u.id for u in streamed], [u.starts_at for u in streamed]
        )
    ]
    progress(STEPS[4])
    counts = [
        UnitCounts(
            unit=r["unit"], chat_lines=r["lines"], chatters=r["chatters"], questions=r["questions"]
        )
        for r in await conn.fetch(_COUNTS, start, end)
    ]
    moderation = [
        ActionCount(unit=r["unit"], action=r["action"], count=r["n"])
        for r in await conn.fetch(_MODERATION, start, end)
    ]
    reactions = [
        TimeCount(unit=r["topic"], start=r["start"], count=r["n"])
        for r in await conn.fetch(_REACTIONS, start, end)
    ]
    progress(STEPS[5])
    poll_rows = await conn.fetch(_POLLS, start, end)
    results: dict[str, list[PollResult]] = {}
    for r in await conn.fetch(
        _POLL_RESULTS, [p["poll_id"] for p in poll_rows], list(NO_RESULTS_KINDS)
    ):
        results.setdefault(r["poll_id"], []).append(
            PollResult(origin=r["origin"], choice=r["choice"], people=r["people"])
        )
    polls = [_poll(r, results.get(r["poll_id"], [])) for r in poll_rows]
    progress(STEPS[6])
    questions = [
        QuestionRow(question_id=r["qid"], topic=r["topic"], upvoters=r["n"], text=r["text"])
        for r in await conn.fetch(_QUESTIONS, start, end, 50)
    ]
    checkins = [TopicPeople(topic=r["topic"], people=r["n"]) for r in await conn.fetch(_CHECKINS)]
    hall_votes = [
        TopicPeople(topic=r["topic"], people=r["n"])
        for r in await conn.fetch(_HALL_VOTES, start, end)
    ]
    progress(STEPS[7])
    incidents = [
        Incident(unit=r["topic"], kind=r["kind"], start=r["s"], end=r["e"], touched=r["touched"])
        for r in await conn.fetch(_INCIDENTS, start, end, list(PROBLEMS))
    ]
    return Aggregates(
        range_from=start,
        range_to=end,
        events=sum(r["n"] for r in kinds),
        first_event=min((r["a"] for r in kinds), default=None),
        last_event=max((r["b"] for r in kinds), default=None),
        unknown_kinds={r["kind"]: r["n"] for r in kinds if r["kind"] not in known},
        people=tuple(people),
        minutes=tuple(minutes),
        retention=tuple(retention),
        counts=tuple(counts),
        moderation=tuple(moderation),
        reactions=tuple(reactions),
        polls=tuple(polls),
        questions=tuple(questions),
        checkins=tuple(checkins),
        hall_votes=tuple(hall_votes),
        incidents=tuple(incidents),
    )


def _on_stage(unit: Unit) -> bool:
    return any(topic.startswith("stage:") for topic, _a, _b in unit.windows)


def _poll(r: Any, results: list[PollResult]) -> PollRow:
    return PollRow(
        poll_id=r["poll_id"],
        opened_at=r["ts"],
        topics=tuple(r["topics"]),
        question=r["question"],
        kind=r["kind"],
        state=r["state"],
        attentive_at_open=r["attentive"],
        voters_online=r["online"],
        voters_hall=r["hall"],
        results=tuple(results),
    )
