"""Questions, upvotes and Q&A settings in PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from hybridcon.core.qa import QaSettings, Question, QuestionState
from hybridcon.store.db import Conn, Executor


async def insert(conn: Executor, question: Question) -> None:
    """Store a new question."""
    await conn.execute(
        """INSERT INTO questions (question_id, topic, author_id, author_name, anonymous, text,
                                  state, upvotes, created_at, origin)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9)""",
        uuid.UUID(question.question_id),
        question.topic,
        question.author_id,
        question.author_name,
        question.author_name is None,
        question.text,
        question.state.value,
        question.created_at,
        question.origin,
    )


async def add_upvote(conn: Executor, question_id: str, voter: str, now: datetime) -> bool:
    """Record an upvote; False when this person already upvoted."""
    row = await conn.fetchval(
        """WITH ins AS (
               INSERT INTO question_upvotes (question_id, voter, ts) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING question_id)
           UPDATE questions SET upvotes = upvotes + 1
           WHERE question_id = (SELECT question_id FROM ins) RETURNING 1""",
        uuid.UUID(question_id),
        voter,
        now,
    )
    return row is not None


async def set_state(conn: Executor, question: Question) -> None:
    """Store a question's state (and what it was merged into)."""
    await conn.execute(
        "UPDATE questions SET state = $2, merged_into = $3 WHERE question_id = $1",
        uuid.UUID(question.question_id),
        question.state.value,
        uuid.UUID(question.merged_into) if question.merged_into else None,
    )


async def merge_upvotes(conn: Conn, duplicate: Question, into: Question) -> None:
    """Move the duplicate's upvoters to the question it was merged into (a union)."""
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO question_upvotes (question_id, voter, ts)
               SELECT $2, voter, ts FROM question_upvotes WHERE question_id = $1
               ON CONFLICT DO NOTHING""",
            uuid.UUID(duplicate.question_id),
            uuid.UUID(into.question_id),
        )
        await conn.execute(
            """UPDATE questions SET upvotes = (SELECT count(*) FROM question_upvotes
                                               WHERE question_id = $1)
               WHERE question_id = $1""",
            uuid.UUID(into.question_id),
        )
        await set_state(conn, duplicate)


_WITH_UPVOTERS = """
    SELECT q.*, coalesce(array_agg(u.voter) FILTER (WHERE u.voter IS NOT NULL), '{}')
           AS upvoters
    FROM questions q LEFT JOIN question_upvotes u USING (question_id)"""


def _question(r: Any) -> Question:
    return Question(
        question_id=r["question_id"].hex,
        topic=r["topic"],
        author_id=r["author_id"],
        author_name=r["author_name"],
        text=r["text"],
        origin=r["origin"],
        created_at=r["created_at"],
        state=QuestionState(r["state"]),
        upvoters=set(r["upvoters"]),
        merged_into=r["merged_into"].hex if r["merged_into"] else None,
    )


async def load_topic(conn: Executor, topic: str) -> list[Question]:
    """The topic's questions with their upvoters."""
    rows = await conn.fetch(
        _WITH_UPVOTERS + " WHERE q.topic = $1 GROUP BY q.question_id ORDER BY q.created_at",
        topic,
    )
    return [_question(r) for r in rows]


async def load_question(conn: Executor, question_id: str) -> Question | None:
    """One question with its upvoters, as stored now."""
    row = await conn.fetchrow(
        _WITH_UPVOTERS + " WHERE q.question_id = $1 GROUP BY q.question_id",
        uuid.UUID(question_id),
    )
    return _question(row) if row is not None else None


async def upvoters(conn: Executor, question_id: str) -> set[str]:
    """Who upvoted a question, as stored now."""
    rows = await conn.fetch(
        "SELECT voter FROM question_upvotes WHERE question_id = $1", uuid.UUID(question_id)
    )
    return {r["voter"] for r in rows}


async def load_settings(conn: Executor, topic: str) -> QaSettings:
    """A topic's Q&A settings (defaults when never set)."""
    row = await conn.fetchrow(
        "SELECT moderated, anonymous FROM qa_settings WHERE topic = $1", topic
    )
    return (
        QaSettings(moderated=row["moderated"], anonymous=row["anonymous"]) if row else QaSettings()
    )


async def save_settings(conn: Executor, topic: str, settings: QaSettings, *, by: str) -> None:
    """Store a topic's Q&A settings."""
    await conn.execute(
        """INSERT INTO qa_settings (topic, moderated, anonymous, updated_by)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (topic) DO UPDATE SET moderated = EXCLUDED.moderated,
               anonymous = EXCLUDED.anonymous, updated_by = EXCLUDED.updated_by,
               updated_at = now()""",
        topic,
        settings.moderated,
        settings.anonymous,
        by,
    )
