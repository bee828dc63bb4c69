"""The live view's counts (R21): a few indexed queries over the last minute of the log.

Each query reads only the newest rows of one or two kinds through the
``(kind, ts)`` index, so its cost follows the audience of the last minute, not the day.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hybridcon.core.report.live import (
    ALERT_SECONDS,
    WINDOW_SECONDS,
    Alert,
    LiveCounts,
    PollNow,
    StageNow,
)
from hybridcon.store.db import Executor
from hybridcon.store.engagement import attentive

_STAGES = f"""
SELECT topic,
       count(DISTINCT actor) FILTER (WHERE kind = 'heartbeat') AS present,
       count(DISTINCT actor) FILTER (WHERE {attentive()}) AS attentive,
       count(*) FILTER (WHERE kind = 'chat') AS lines
FROM engagement_events
WHERE kind IN ('heartbeat', 'chat') AND ts > $1 AND ts <= $2 AND topic LIKE 'stage:%'
  AND data->>'role' = 'viewer'
GROUP BY topic
"""  # noqa: S608 (the attentive condition is a constant)

_POLLS = f"""
SELECT replace(p.poll_id::text, '-', '') AS poll_id, p.question, p.topics, p.opened_at,
       (SELECT count(DISTINCT actor) FROM engagement_events e
        WHERE e.kind = 'poll_vote' AND e.ts >= coalesce(p.opened_at, '-infinity')
          AND e.data->>'poll_id' = replace(p.poll_id::text, '-', '')
          AND e.data->>'role' = 'viewer' AND e.data->>'origin' NOT LIKE 'hall:%') AS online,
       (SELECT count(DISTINCT actor) FROM engagement_events e
        WHERE e.kind = 'poll_vote' AND e.ts >= coalesce(p.opened_at, '-infinity')
          AND e.data->>'poll_id' = replace(p.poll_id::text, '-', '')
          AND e.data->>'role' = 'viewer' AND e.data->>'origin' LIKE 'hall:%') AS hall,
       (SELECT count(DISTINCT actor) FROM engagement_events e
        WHERE e.kind = 'heartbeat' AND e.topic = ANY(p.topics)
          AND e.ts >= date_trunc('minute', p.opened_at)
          AND e.ts < date_trunc('minute', p.opened_at) + interval '1 minute'
          AND e.data->>'role' = 'viewer' AND {attentive("e")}) AS attentive
FROM polls p WHERE p.state = 'open'
ORDER BY p.opened_at NULLS LAST, p.poll_id
"""  # noqa: S608 (the attentive condition is a constant)

_BACKLOG = """
SELECT (SELECT count(*) FROM chat_messages WHERE held AND deleted_at IS NULL) AS held,
       (SELECT count(*) FROM questions WHERE state = 'pending') AS pending
"""

# The newest stream change per stage (an interruption alerts until the next start) and
# the newest health check of the last ALERT_SECONDS.
_ALERTS = """
WITH changes AS (
    SELECT DISTINCT ON (topic) topic, ts, data->>'state' AS state FROM engagement_events
    WHERE kind IN ('stream_started', 'stream_ended') AND topic LIKE 'stage:%' AND ts <= $2
    ORDER BY topic, ts DESC
), health AS (
    SELECT DISTINCT ON (topic) topic, ts, data->'problems' AS problems FROM engagement_events
    WHERE kind = 'stream_health' AND ts > $1 AND ts <= $2 AND topic LIKE 'stage:%'
    ORDER BY topic, ts DESC
)
SELECT topic, ts, ARRAY['interrupted'] AS problems FROM changes WHERE state = 'interrupted'
UNION ALL
SELECT topic, ts, ARRAY(SELECT jsonb_array_elements_text(problems)) FROM health
WHERE jsonb_typeof(problems) = 'array' AND jsonb_array_length(problems) > 0
"""


async def live_counts(conn: Executor, now: datetime) -> LiveCounts:
    """The counts behind the live view at ``now`` (R21).

    Raises:
        asyncpg.PostgresError, OSError: the database failed.
    """
    since = now - timedelta(seconds=WINDOW_SECONDS)
    stages = [
        StageNow(r["topic"].removeprefix("stage:"), r["present"], r["attentive"], r["lines"])
        for r in await conn.fetch(_STAGES, since, now)
    ]
    polls = [
        PollNow(
            poll_id=r["poll_id"],
            question=r["question"],
            topics=tuple(r["topics"]),
            opened_at=r["opened_at"],
            voters_online=r["online"],
            voters_hall=r["hall"],
            attentive_at_open=r["attentive"] if r["opened_at"] else 0,
        )
        for r in await conn.fetch(_POLLS)
    ]
    backlog = await conn.fetchrow(_BACKLOG)
    assert backlog is not None
    alerts = [
        Alert(r["topic"].removeprefix("stage:"), tuple(r["problems"]), r["ts"])
        for r in await conn.fetch(_ALERTS, now - timedelta(seconds=ALERT_SECONDS), now)
    ]
    return LiveCounts(
        now=now,
        stages=stages,
        polls=polls,
        held_lines=backlog["held"],
        pending_questions=backlog["pending"],
        alerts=sorted(alerts, key=lambda a: (a.stage, a.problems)),
    )
