"""Polls and votes in PostgreSQL. Votes are written in batches, one row per person."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from hybridcon.core.polls import Answer, Option, PollKind, PollSpec, PollState, Visibility
from hybridcon.store.db import Executor


@dataclass(frozen=True, slots=True)
class StoredPoll:
    """A poll row."""

    poll_id: uuid.UUID
    spec: PollSpec
    state: PollState
    created_by: str


def _spec(row: Any) -> PollSpec:
    return PollSpec(
        question=row["question"],
        kind=PollKind(row["kind"]),
        topics=tuple(row["topics"]),
        options=tuple(Option(id=o["id"], label=o["label"]) for o in orjson.loads(row["options"])),
        scale_max=row["scale_max"],
        visibility=Visibility(row["results_visibility"]),
        allow_change=row["allow_change"],
        opens_at=row["opens_at"],
    )


async def create(conn: Executor, poll_id: uuid.UUID, spec: PollSpec, *, by: str) -> None:
    """Store a new (draft) poll."""
    await conn.execute(
        """INSERT INTO polls (poll_id, topics, question, kind, options, results_visibility,
                              allow_change, opens_at, scale_max, created_by)
           VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10)""",
        poll_id,
        list(spec.topics),
        spec.question,
        spec.kind.value,
        orjson.dumps([{"id": o.id, "label": o.label} for o in spec.options]).decode(),
        spec.visibility.value,
        spec.allow_change,
        spec.opens_at,
        spec.scale_max,
        by,
    )


async def set_state(conn: Executor, poll_id: uuid.UUID, state: PollState, now: datetime) -> bool:
    """Record that a poll opened (from draft) or closed (from open).

    Returns:
        False when the poll was not in the state before that one (another node, or
        another moderator, got there first): nothing changed.
    """
    column, before = {
        PollState.OPEN: ("opened_at", PollState.DRAFT),
        PollState.CLOSED: ("closed_at", PollState.OPEN),
    }[state]
    done = await conn.fetchval(
        f"""UPDATE polls SET state = $2, {column} = $3
            WHERE poll_id = $1 AND state = $4 RETURNING true""",  # noqa: S608
        poll_id,
        state.value,
        now,
        before.value,
    )
    return bool(done)


async def load(conn: Executor, *, states: Sequence[PollState]) -> list[StoredPoll]:
    """The polls in ``states``."""
    rows = await conn.fetch(
        "SELECT * FROM polls WHERE state = ANY($1::text[]) ORDER BY created_at",
        [s.value for s in states],
    )
    return [
        StoredPoll(
            poll_id=r["poll_id"],
            spec=_spec(r),
            state=PollState(r["state"]),
            created_by=r["created_by"],
        )
        for r in rows
    ]


async def get(conn: Executor, poll_id: uuid.UUID) -> StoredPoll | None:
    """One poll."""
    row = await conn.fetchrow("SELECT * FROM polls WHERE poll_id = $1", poll_id)
    if row is None:
        return None
    return StoredPoll(
        poll_id=row["poll_id"],
        spec=_spec(row),
        state=PollState(row["state"]),
        created_by=row["created_by"],
    )


def _answer_json(answer: Answer) -> str:
    return orjson.dumps(list(answer) if isinstance(answer, tuple) else answer).decode()


def answer_from_json(kind: PollKind, text: str) -> Answer:
    """A stored answer in its canonical Python form."""
    value = orjson.loads(text)
    if kind in {PollKind.MULTI, PollKind.WORDCLOUD}:
        return tuple(value)
    return value  # type: ignore[no-any-return]


async def save_ballots(
    pool: asyncpg.Pool,
    poll_id: uuid.UUID,
    ballots: Sequence[tuple[str, Answer, str]],
    now: datetime,
    *,
    allow_change: bool,
) -> list[str] | None:
    """Write each person's current ballot, if the poll is open (one transaction).

    Several nodes take votes for one poll; PostgreSQL decides between them. The poll's
    row is read ``FOR SHARE``, so a close waits for the votes being written and a vote
    written after a close is refused. Where the poll allows no change, a person who
    already has a stored ballot (cast through another node) keeps it.

    Returns:
        The voters whose ballot was written (the others already had one and the poll
        allows no change), or None when the poll is not open in storage.
    """
    async with pool.acquire() as conn, conn.transaction():
        state = await conn.fetchval("SELECT state FROM polls WHERE poll_id = $1 FOR SHARE", poll_id)
        if state != PollState.OPEN.value:
            return None
        rows = await conn.fetch(
            """INSERT INTO votes (poll_id, voter, choice, origin, cast_at)
               SELECT $1, v, c::jsonb, o, $5
               FROM unnest($2::text[], $3::text[], $4::text[]) AS x(v, c, o)
               ON CONFLICT (poll_id, voter) DO UPDATE
               SET choice = EXCLUDED.choice, cast_at = EXCLUDED.cast_at, shown_at = NULL
               WHERE $6::boolean
               RETURNING voter""",
            poll_id,
            [voter for voter, _, _ in ballots],
            [_answer_json(answer) for _, answer, _ in ballots],
            [origin for _, _, origin in ballots],
            now,
            allow_change,
        )
    return [r["voter"] for r in rows]


async def ballots_of(
    conn: Executor, poll_id: uuid.UUID, kind: PollKind, voters: Sequence[str]
) -> dict[str, tuple[Answer, str, bool]]:
    """The stored ballots of some voters: ``voter -> (answer, origin, shown)``."""
    rows = await conn.fetch(
        """SELECT voter, choice, origin, shown_at IS NOT NULL AS shown FROM votes
           WHERE poll_id = $1 AND voter = ANY($2::text[])""",
        poll_id,
        list(voters),
    )
    return {
        r["voter"]: (answer_from_json(kind, r["choice"]), r["origin"], r["shown"]) for r in rows
    }


async def ballots(
    conn: Executor, poll_id: uuid.UUID, kind: PollKind
) -> list[tuple[str, Answer, str]]:
    """Every stored ballot of a poll."""
    rows = await conn.fetch(
        "SELECT voter, choice, origin FROM votes WHERE poll_id = $1 ORDER BY cast_at", poll_id
    )
    return [(r["voter"], answer_from_json(kind, r["choice"]), r["origin"]) for r in rows]


async def shown(conn: Executor, poll_id: uuid.UUID) -> list[str]:
    """The voters whose open answers are on the wall, in the order they were shown."""
    rows = await conn.fetch(
        "SELECT voter FROM votes WHERE poll_id = $1 AND shown_at IS NOT NULL ORDER BY shown_at",
        poll_id,
    )
    return [r["voter"] for r in rows]


async def show(conn: Executor, poll_id: uuid.UUID, voter: str, now: datetime) -> None:
    """Record that a moderator put this person's answer on the wall."""
    await conn.execute(
        "UPDATE votes SET shown_at = coalesce(shown_at, $3) WHERE poll_id = $1 AND voter = $2",
        poll_id,
        voter,
        now,
    )
