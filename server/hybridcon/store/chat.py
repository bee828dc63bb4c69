"""Chat lines and moderation state in PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hybridcon.core.chat import ChatRoom
from hybridcon.store.db import Conn, Executor


@dataclass(frozen=True, slots=True)
class ChatLine:
    """One stored chat line."""

    msg_id: str
    topic: str
    seq: int | None
    author_id: str
    author_name: str
    author_role: str
    text: str
    ts: datetime
    held: bool = False
    hold_reason: str | None = None

    def message(self) -> dict[str, Any]:
        """The wire fields of ``chat.message`` (without type, topic and seq)."""
        return {
            "msg_id": self.msg_id,
            "author": {"id": self.author_id, "name": self.author_name, "role": self.author_role},
            "text": self.text,
            "ts": self.ts.isoformat(),
        }


# A constant column list spliced into the queries below (no input reaches it: S608 noqa).
_COLUMNS = "msg_id, topic, seq, author_id, author_name, author_role, text, ts, held"


def _line(row: Any) -> ChatLine:
    return ChatLine(
        msg_id=row["msg_id"],
        topic=row["topic"],
        seq=row["seq"],
        author_id=row["author_id"],
        author_name=row["author_name"],
        author_role=row["author_role"],
        text=row["text"],
        ts=row["ts"],
        held=row["held"],
    )


async def insert(conn: Executor, line: ChatLine) -> None:
    """Store a line."""
    await conn.execute(
        f"INSERT INTO chat_messages ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",  # noqa: S608
        line.msg_id,
        line.topic,
        line.seq,
        line.author_id,
        line.author_name,
        line.author_role,
        line.text,
        line.ts,
        line.held,
    )


async def recent(conn: Executor, topic: str, limit: int) -> list[ChatLine]:
    """The newest visible (not held, not deleted) lines of ``topic``, oldest first."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM chat_messages
            WHERE topic = $1 AND NOT held AND deleted_at IS NULL
            ORDER BY ts DESC, seq DESC NULLS LAST LIMIT $2""",  # noqa: S608
        topic,
        limit,
    )
    return [_line(r) for r in reversed(rows)]


async def held(conn: Executor, topic: str, limit: int = 200) -> list[ChatLine]:
    """Lines of ``topic`` waiting for a moderator, oldest first."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM chat_messages
            WHERE topic = $1 AND held AND deleted_at IS NULL
            ORDER BY ts LIMIT $2""",  # noqa: S608
        topic,
        limit,
    )
    return [_line(r) for r in rows]


async def get(conn: Executor, topic: str, msg_id: str) -> ChatLine | None:
    """A line of ``topic`` that is not deleted."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM chat_messages WHERE topic = $1 AND msg_id = $2 "  # noqa: S608
        "AND deleted_at IS NULL",
        topic,
        msg_id,
    )
    return _line(row) if row else None


async def delete(conn: Executor, topic: str, msg_id: str, *, by: str, now: datetime) -> bool:
    """Mark a line deleted; returns whether it existed and was not deleted yet."""
    result = await conn.execute(
        """UPDATE chat_messages SET deleted_at = $3, deleted_by = $4
           WHERE topic = $1 AND msg_id = $2 AND deleted_at IS NULL""",
        topic,
        msg_id,
        now,
        by,
    )
    return result.endswith(" 1")


async def release(conn: Executor, topic: str, msg_id: str) -> bool:
    """A held line is no longer held (it is about to be published)."""
    result = await conn.execute(
        """UPDATE chat_messages SET held = false
           WHERE topic = $1 AND msg_id = $2 AND held AND deleted_at IS NULL""",
        topic,
        msg_id,
    )
    return result.endswith(" 1")


async def hold_again(conn: Executor, topic: str, msg_id: str) -> None:
    """A released line is held again (its publish failed: the approval did not happen)."""
    await conn.execute(
        "UPDATE chat_messages SET held = true "
        "WHERE topic = $1 AND msg_id = $2 AND deleted_at IS NULL",
        topic,
        msg_id,
    )


async def set_seq(conn: Executor, topic: str, msg_id: str, seq: int) -> None:
    """Record the sequence number a line was published with."""
    await conn.execute(
        "UPDATE chat_messages SET seq = $3 WHERE topic = $1 AND msg_id = $2", topic, msg_id, seq
    )


async def load_room(conn: Executor, topic: str, now: datetime) -> ChatRoom:
    """A topic's settings and current sanctions."""
    room = ChatRoom(topic=topic)
    settings = await conn.fetchrow(
        "SELECT slowmode, hold_first FROM chat_rooms WHERE topic = $1", topic
    )
    if settings is not None:
        room.slowmode_seconds = settings["slowmode"]
        room.hold_first = settings["hold_first"]
    rows = await conn.fetch(
        """SELECT user_id, kind, until FROM chat_sanctions
           WHERE topic = $1 AND (until IS NULL OR until > $2)""",
        topic,
        now,
    )
    for row in rows:
        if row["kind"] == "ban":
            room.banned.add(row["user_id"])
        else:
            room.muted_until[row["user_id"]] = row["until"]
    return room


async def save_settings(conn: Executor, room: ChatRoom, *, by: str) -> None:
    """Store a topic's chat settings."""
    await conn.execute(
        """INSERT INTO chat_rooms (topic, slowmode, hold_first, updated_by)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (topic) DO UPDATE SET slowmode = EXCLUDED.slowmode,
               hold_first = EXCLUDED.hold_first, updated_by = EXCLUDED.updated_by,
               updated_at = now()""",
        room.topic,
        room.slowmode_seconds,
        room.hold_first,
        by,
    )


async def sanction(
    conn: Executor, topic: str, user_id: str, kind: str, until: datetime | None, *, by: str
) -> None:
    """Store a ban (``until`` None) or a timeout."""
    await conn.execute(
        """INSERT INTO chat_sanctions (topic, user_id, kind, until, created_by)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (topic, user_id, kind) DO UPDATE SET until = EXCLUDED.until,
               created_by = EXCLUDED.created_by, created_at = now()""",
        topic,
        user_id,
        kind,
        until,
        by,
    )


async def lift(conn: Executor, topic: str, user_id: str) -> None:
    """Remove every sanction of ``user_id`` in ``topic``."""
    await conn.execute(
        "DELETE FROM chat_sanctions WHERE topic = $1 AND user_id = $2", topic, user_id
    )


async def report(
    conn: Conn, topic: str, msg_id: str, *, reporter: str, reason: str, now: datetime
) -> bool:
    """Record a report; returns False when this person already reported this line."""
    row = await conn.fetchval(
        """INSERT INTO chat_reports (topic, msg_id, reporter, reason, ts)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (msg_id, reporter) DO NOTHING RETURNING id""",
        topic,
        msg_id,
        reporter,
        reason,
        now,
    )
    return row is not None
