"""The audit log: who did what, when — organiser actions, moderation, identified exports."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from hybridcon.core.tokens import Claims
from hybridcon.store.db import Executor


async def record(
    conn: Executor,
    *,
    actor: str,
    actor_role: str,
    action: str,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one audit row."""
    await conn.execute(
        """INSERT INTO audit_log (actor, actor_role, action, target, detail)
           VALUES ($1, $2, $3, $4, $5::jsonb)""",
        actor,
        actor_role,
        action,
        target,
        orjson.dumps(dict(detail or {})).decode(),
    )


async def record_by(
    conn: Executor,
    claims: Claims,
    action: str,
    *,
    target: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one audit row for what the holder of ``claims`` did."""
    await record(
        conn,
        actor=claims.sub,
        actor_role=claims.role.value,
        action=action,
        target=target,
        detail=detail,
    )


async def recent(
    conn: Executor, *, limit: int = 100, since: datetime | None = None
) -> list[dict[str, Any]]:
    """The newest audit rows first."""
    rows = await conn.fetch(
        """SELECT id, ts, actor, actor_role, action, target, detail FROM audit_log
           WHERE ($2::timestamptz IS NULL OR ts >= $2)
           ORDER BY id DESC LIMIT $1""",
        limit,
        since,
    )
    return [
        {
            "id": r["id"],
            "ts": r["ts"].isoformat(),
            "actor": r["actor"],
            "actor_role": r["actor_role"],
            "action": r["action"],
            "target": r["target"],
            "detail": orjson.loads(r["detail"]),
        }
        for r in rows
    ]
