"""A synthetic conference day with known truth, written straight into the engagement log.

:func:`make_day` draws people (online viewers with watch intervals on six streamed
stages and the radio, some with a second device; people on site who check in and vote
in the hall; staff), their chat lines, votes, questions, upvotes and reactions, a poll,
moderation actions, a stream interruption and a frozen-picture incident. Every event is
kept in :attr:`Day.events`; :func:`truth` evaluates the definitions of
``docs/report-definitions.md`` on those events with plain Python loops (a second,
independent implementation), so the report's figures can be compared with it exactly.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from hybridcon.core.report.units import Unit

DAY = datetime(2022, 5, 5, tzinfo=UTC)  # 5 May 2022; Brussels is UTC+2 that day
STAGES = ("plenary", "diversiteit", "impact", "nabijheid", "eerstelijn", "identiteit")
# When each stage is streamed, in UTC minutes of the day (programme: local time - 2 h).
WINDOWS: dict[str, list[tuple[int, int]]] = {
    "plenary": [(7 * 60 + 20, 8 * 60 + 50), (13 * 60 + 55, 15 * 60 + 5)],
    **{s: [(9 * 60 + 10, 10 * 60 + 35)] for s in STAGES[1:]},
    "radio": [(6 * 60 + 30, 15 * 60)],
}
POLL_ID = "a" * 32
POLL_OPEN = DAY + timedelta(hours=8)  # 10:00 local, during the opening show
INTERRUPT = (DAY + timedelta(hours=9, minutes=40), DAY + timedelta(hours=9, minutes=43, seconds=20))
FROZEN = (DAY + timedelta(hours=9, minutes=50), DAY + timedelta(hours=9, minutes=52))
ONSITE_TOPICS = ("stage:plenary", "session:ws-impact-1", "session:wandeling-03")


@dataclass
class Ev:
    """One event as written (the truth reads these)."""

    ts: datetime
    kind: str
    actor: str | None
    topic: str | None
    data: dict[str, Any]


@dataclass
class Day:
    """The synthetic day: its events and what else was stored."""

    events: list[Ev] = field(default_factory=list)
    questions: list[tuple[str, str, str, str]] = field(
        default_factory=list
    )  # id, topic, text, state
    ballots: list[tuple[str, str, str]] = field(default_factory=list)  # voter, choice, origin


def _actor(i: int, kind: str = "p", prefix: str = "") -> str:
    return f"{prefix}{kind}{i:07d}"[:22]


def make_day(
    people: int = 1500, *, seed: int = 10, onsite: int = 200, unknown: int = 0, prefix: str = ""
) -> Day:
    """Draw a day: ``people`` online viewers, ``onsite`` people in the hall, a few staff.

    Args:
        people: online viewers.
        seed: the random seed (the same seed gives the same day).
        onsite: people on site (check-ins, hall votes; a quarter also watch online).
        unknown: rows of an unknown kind to add (the report must ignore them).
        prefix: put in front of every person's id (several draws, other people).
    """
    rng = random.Random(seed)
    day = Day()
    ev = day.events

    def add(ts: datetime, kind: str, actor: str | None, topic: str | None, **data: Any) -> None:
        ev.append(Ev(ts, kind, actor, topic, data))

    def viewer(ts: datetime, kind: str, actor: str, topic: str, **data: Any) -> None:
        add(ts, kind, actor, topic, role="viewer", **data)

    def watch(actor: str, topic: str, a: int, b: int, second_device: bool) -> None:
        viewer(DAY + timedelta(minutes=a, seconds=1), "join", actor, topic)
        for minute in range(a, b):
            t = DAY + timedelta(minutes=minute)
            attentive = rng.random() < 0.8
            viewer(
                t + timedelta(seconds=5), "heartbeat", actor, topic, playing=attentive, visible=True
            )
            viewer(
                t + timedelta(seconds=35),
                "heartbeat",
                actor,
                topic,
                playing=True,
                visible=attentive and rng.random() < 0.5,
            )
            if second_device:  # a background tab: never attentive, counted once anyway
                viewer(
                    t + timedelta(seconds=20),
                    "heartbeat",
                    actor,
                    topic,
                    playing=True,
                    visible=False,
                )
        if rng.random() < 0.15:
            minute = rng.randrange(a, b)
            for _ in range(rng.randint(1, 3)):
                viewer(
                    DAY + timedelta(minutes=minute, seconds=rng.randint(0, 59)),
                    "chat",
                    actor,
                    topic,
                    msg_id=uuid.uuid4().hex[:12],
                    length=20,
                    held=False,
                )
        if rng.random() < 0.1:
            viewer(
                DAY + timedelta(minutes=rng.randrange(a, b), seconds=10),
                "reaction",
                actor,
                topic,
                emoji="👏",
            )

    for i in range(people):
        actor = _actor(i, prefix=prefix)
        second = rng.random() < 0.1
        stages = rng.sample([*STAGES, "radio"], k=rng.choice((1, 1, 2, 3)))
        for stage in stages:
            lo, hi = rng.choice(WINDOWS[stage])
            a = rng.randrange(lo, hi - 1)
            b = min(hi, a + rng.choice((1, 3, 6, 12, 25, 45, 80)))
            watch(actor, f"stage:{stage}", a, b, second)
        if "plenary" in stages and rng.random() < 0.3:
            voted_at = POLL_OPEN + timedelta(seconds=rng.randint(30, 200))
            viewer(
                voted_at,
                "poll_vote",
                actor,
                "stage:plenary",
                poll_id=POLL_ID,
                origin="stage:plenary",
                changed=False,
            )
            day.ballots.append((actor, rng.choice(('"ja"', '"nee"')), "stage:plenary"))

    # A small online workshop: three people, a cell the report must hide (R19).
    for i in range(min(3, people)):
        watch(_actor(i, prefix=prefix), "session:online-1", 11 * 60 + 30, 11 * 60 + 50, False)

    for j in range(onsite):
        actor = _actor(j, "h", prefix)
        topic = rng.choice(ONSITE_TOPICS)
        viewer(
            DAY + timedelta(hours=7, minutes=rng.randint(0, 90)),
            "checkin",
            actor,
            topic,
            link_id=uuid.UUID(int=j).hex,
        )
        if topic == "stage:plenary" and rng.random() < 0.6:
            viewer(
                POLL_OPEN + timedelta(seconds=rng.randint(10, 100)),
                "poll_vote",
                actor,
                "stage:plenary",
                poll_id=POLL_ID,
                origin="hall:plenary",
                changed=False,
            )
            day.ballots.append((actor, rng.choice(('"ja"', '"nee"')), "hall:plenary"))
        if j % 4 == 0:  # also watches a theme stage online later: still on site (R3)
            watch(actor, "stage:nabijheid", 9 * 60 + 20, 9 * 60 + 20 + rng.randint(2, 30), False)

    add(POLL_OPEN, "poll_opened", None, None, poll_id=POLL_ID, topics=["stage:plenary"])
    add(
        POLL_OPEN + timedelta(minutes=5),
        "poll_closed",
        None,
        None,
        poll_id=POLL_ID,
        voters=len(day.ballots),
    )

    # Questions and upvotes on the diversity stage.
    for q in range(6):
        qid = uuid.UUID(int=q + 1).hex
        asker = _actor(q * 7, prefix=prefix)
        state = "approved" if q % 3 else "dismissed"
        text = f'=HYPERLINK("x") vraag {q}' if q % 2 else f"Vraag {q}: wat nu?"
        day.questions.append((qid, "stage:diversiteit", text, state))
        viewer(
            DAY + timedelta(hours=9, minutes=20 + q),
            "question",
            asker,
            "stage:diversiteit",
            question_id=qid,
            anonymous=False,
        )
        for u in range(q * 3):
            voter = _actor(100 + u, prefix=prefix)
            viewer(
                DAY + timedelta(hours=9, minutes=30 + q, seconds=u),
                "upvote",
                voter,
                "stage:diversiteit",
                question_id=qid,
            )
            if u % 5 == 0:  # a second upvote by the same person (a retry) counts once
                viewer(
                    DAY + timedelta(hours=9, minutes=31 + q, seconds=u),
                    "upvote",
                    voter,
                    "stage:diversiteit",
                    question_id=qid,
                )

    # Staff: a moderator who watches (never counted as audience) and moderates.
    for minute in range(9 * 60 + 10, 10 * 60 + 35):
        add(
            DAY + timedelta(minutes=minute, seconds=7),
            "heartbeat",
            "staff-moderator",
            "stage:impact",
            role="moderator",
            playing=True,
            visible=True,
        )
    for n, action in enumerate(("delete", "delete", "timeout", "slowmode")):
        add(
            DAY + timedelta(hours=9, minutes=30 + n),
            "chat_moderated",
            "staff-moderator",
            "stage:impact",
            role="moderator",
            action=action,
        )

    # The impact stage: live, interrupted, live again; frozen picture for two minutes.
    add(
        DAY + timedelta(hours=9, minutes=10),
        "stream_started",
        None,
        "stage:impact",
        state="live",
        was="idle",
    )
    add(INTERRUPT[0], "stream_ended", None, "stage:impact", state="interrupted", was="live")
    add(INTERRUPT[1], "stream_started", None, "stage:impact", state="live", was="interrupted")
    t = DAY + timedelta(hours=9, minutes=44)
    while t < DAY + timedelta(hours=10, minutes=30):
        problems = ["frozen"] if FROZEN[0] <= t <= FROZEN[1] else []
        add(t, "stream_health", None, "stage:impact", problems=problems, loss=0.0)
        t += timedelta(seconds=5)
    for u in range(unknown):
        add(
            DAY + timedelta(hours=8, seconds=u),
            "teleport",
            _actor(u, prefix=prefix),
            "stage:plenary",
            role="viewer",
        )
    ev.sort(key=lambda e: e.ts)
    return day


async def write_day(conn: asyncpg.Connection, day: Day) -> None:
    """Write the day's events (COPY), its poll with ballots and its questions."""
    await write_events(conn, day)
    await write_extras(conn, day)


async def write_events(conn: asyncpg.Connection, day: Day, *, chunk: int = 200_000) -> None:
    """Write the day's events only (COPY, in chunks)."""
    records = [
        (uuid.uuid4(), e.ts, e.kind, e.actor, e.topic, orjson.dumps(e.data).decode())
        for e in day.events
    ]
    for i in range(0, len(records), chunk):
        await conn.copy_records_to_table(
            "engagement_events",
            records=records[i : i + chunk],
            columns=("event_id", "ts", "kind", "actor", "topic", "data"),
        )


async def write_extras(conn: asyncpg.Connection, day: Day) -> None:
    """Write the day's poll with its ballots and its questions (once per database)."""
    await conn.execute(
        """INSERT INTO polls (poll_id, topics, question, kind, options, state, created_by,
                              opened_at, closed_at)
           VALUES ($1, ARRAY['stage:plenary'], 'Doet sociaal werk ertoe?', 'single',
                   '["ja", "nee"]', 'closed', 'mod', $2, $3)""",
        uuid.UUID(POLL_ID),
        POLL_OPEN,
        POLL_OPEN + timedelta(minutes=5),
    )
    await conn.executemany(
        "INSERT INTO votes (poll_id, voter, choice, origin, cast_at) VALUES ($1, $2, $3::jsonb, $4, $5)",
        [(uuid.UUID(POLL_ID), v, c, o, POLL_OPEN) for v, c, o in day.ballots],
    )
    await conn.executemany(
        """INSERT INTO questions (question_id, topic, author_id, text, state, created_at, origin)
           VALUES ($1, $2, 'x', $3, $4, $5, $2)""",
        [(uuid.UUID(q), topic, text, state, DAY) for q, topic, text, state in day.questions],
    )


# --- the truth: the definitions, evaluated naively on the events -------------------------

AUDIENCE_KINDS = {
    "join",
    "heartbeat",
    "chat",
    "poll_vote",
    "question",
    "upvote",
    "reaction",
    "checkin",
    "session_join",
}
PART_KINDS = {"chat", "poll_vote", "question", "upvote", "reaction"}


def _minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def _in_unit(unit: Unit, topic: str | None, ts: datetime) -> bool:
    if topic is None:
        return False
    m = _minute(ts)
    for t, a, b in unit.windows:
        if t == "*":
            if topic.startswith(("stage:", "session:")) and a <= m < b:
                return True
        elif t == topic and a <= m < b:
            return True
    return False


def truth(day: Day, all_units: tuple[Unit, ...]) -> dict[str, dict[str, Any]]:
    """Per unit id: reached (online/onsite), peak and when, attentive minutes, median,
    stayed, took part, chat lines and chatters (unsuppressed; R7-R13)."""
    audience = [e for e in day.events if e.data.get("role") == "viewer" and e.actor]
    onsite = {e.actor for e in audience if e.kind == "checkin"}
    out: dict[str, dict[str, Any]] = {}
    for unit in all_units:
        mine = [e for e in audience if e.kind in AUDIENCE_KINDS and _in_unit(unit, e.topic, e.ts)]
        reached = {e.actor for e in mine}
        present: dict[datetime, set[str]] = defaultdict(set)
        attentive: dict[str, set[datetime]] = defaultdict(set)
        took: set[str] = set()
        for e in mine:
            if e.kind == "heartbeat":
                present[_minute(e.ts)].add(e.actor or "")
                if e.data["playing"] and e.data["visible"]:
                    attentive[e.actor or ""].add(_minute(e.ts))
            if e.kind in PART_KINDS:
                took.add(e.actor or "")
        peak, peak_at = 0, None
        for m in sorted(present):
            if len(present[m]) > peak:
                peak, peak_at = len(present[m]), m
        watch = sorted(len(v) for v in attentive.values() if v)
        stayed = {a for a in reached if len(attentive.get(a, ())) >= 5}
        lines = [e for e in mine if e.kind == "chat"]
        out[unit.id] = {
            "reached": len(reached),
            "online": len(reached - onsite),
            "onsite": len(reached & onsite),
            "peak": peak,
            "peak_at": peak_at,
            "attentive_minutes": sum(len(v) for v in attentive.values()),
            "median_minutes": watch[(len(watch) + 1) // 2 - 1] if watch else None,
            "stayed": len(stayed),
            "took_part": len(stayed & took),
            "chat_lines": len(lines),
            "chatters": len({e.actor for e in lines}),
            "watch": watch,
        }
    return out


def poll_truth(day: Day) -> dict[str, int]:
    """R14 for the day's poll: voters online/hall and attentive viewers when it opened."""
    votes = [e for e in day.events if e.kind == "poll_vote" and e.data.get("role") == "viewer"]
    opened = _minute(POLL_OPEN)
    att = {
        e.actor
        for e in day.events
        if e.kind == "heartbeat"
        and e.data.get("role") == "viewer"
        and e.topic == "stage:plenary"
        and _minute(e.ts) == opened
        and e.data["playing"]
        and e.data["visible"]
    }
    return {
        "voters_online": len({e.actor for e in votes if not e.data["origin"].startswith("hall:")}),
        "voters_hall": len({e.actor for e in votes if e.data["origin"].startswith("hall:")}),
        "attentive_at_open": len(att),
    }


def touched(day: Day, topic: str, start: datetime, end: datetime) -> int:
    """R18: people present on ``topic`` in a minute from ``start``'s to ``end``."""
    return len(
        {
            e.actor
            for e in day.events
            if e.kind == "heartbeat"
            and e.data.get("role") == "viewer"
            and e.topic == topic
            and _minute(start) <= _minute(e.ts) <= end
        }
    )


def retention_truth(day: Day, unit: Unit) -> dict[int, int]:
    """R11 for an item on a stage: minute offset -> people of the cohort attentive then."""
    attentive: dict[str, set[datetime]] = defaultdict(set)
    for e in day.events:
        if (
            e.kind == "heartbeat"
            and e.data.get("role") == "viewer"
            and e.actor
            and e.data["playing"]
            and e.data["visible"]
            and _in_unit(unit, e.topic, e.ts)
        ):
            attentive[e.actor].add(_minute(e.ts))
    first = [unit.starts_at + timedelta(minutes=i) for i in range(5)]
    cohort = {a for a, ms in attentive.items() if any(m in ms for m in first)}
    out: dict[int, int] = {}
    for actor in cohort:
        for m in attentive[actor]:
            if m >= unit.starts_at:
                offset = int((m - unit.starts_at).total_seconds() // 60)
                out[offset] = out.get(offset, 0) + 1
    return out


def concurrency_truth(day: Day, topic: str) -> dict[datetime, int]:
    """R5/R8 for a stage: minute -> people present."""
    present: dict[datetime, set[str]] = defaultdict(set)
    for e in day.events:
        if e.kind == "heartbeat" and e.data.get("role") == "viewer" and e.topic == topic:
            present[_minute(e.ts)].add(e.actor or "")
    return {m: len(a) for m, a in present.items()}
