"""Revoked token ids: stored in PostgreSQL, announced with NOTIFY, mirrored on every node.

Each node keeps the set of revoked, not yet expired ``jti`` values in memory (checked
at every token verification), fills it at start, adds to it on each
``NOTIFY hybridcon_revocations`` and reloads it in full every
``revocation_resync_seconds`` and after its listening connection comes back, so a
notification missed while PostgreSQL was away is caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from hybridcon.store.db import Conn, Executor

CHANNEL = "hybridcon_revocations"

log = structlog.get_logger(__name__)


async def revoke(
    conn: Conn,
    *,
    jti: str,
    expires_at: datetime,
    reason: str,
    revoked_by: str,
) -> bool:
    """Record a revocation and notify every node (the NOTIFY is sent on commit).

    Returns:
        True when the ``jti`` was newly revoked, False when it already was.
    """
    async with conn.transaction():
        inserted = await conn.fetchval(
            """INSERT INTO revocations (jti, expires_at, reason, revoked_by)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (jti) DO NOTHING
               RETURNING jti""",
            jti,
            expires_at,
            reason,
            revoked_by,
        )
        if inserted is not None:
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, jti)
    return inserted is not None


async def active(conn: Executor, now: datetime) -> set[str]:
    """Every revoked ``jti`` whose token could still be valid at ``now``."""
    rows = await conn.fetch("SELECT jti FROM revocations WHERE expires_at > $1", now)
    return {r["jti"] for r in rows}


async def listing(conn: Executor, now: datetime) -> list[dict[str, Any]]:
    """The active revocations, newest first, for organisers."""
    rows = await conn.fetch(
        """SELECT jti, revoked_at, expires_at, reason, revoked_by FROM revocations
           WHERE expires_at > $1 ORDER BY revoked_at DESC""",
        now,
    )
    return [
        {
            "jti": r["jti"],
            "revoked_at": r["revoked_at"].isoformat(),
            "expires_at": r["expires_at"].isoformat(),
            "reason": r["reason"],
            "revoked_by": r["revoked_by"],
        }
        for r in rows
    ]


class RevocationMirror:
    """The in-memory copy of the active revocations on this node.

    Args:
        connect: opens a dedicated connection for LISTEN.
        pool: for full reloads.
        clock: the current time.
        resync_seconds: the period of full reloads.

    Attributes:
        on_revoked: hooks called with each newly seen ``jti`` (the gateway closes its
            connections, the livestreams their publishers).
    """

    def __init__(
        self,
        *,
        connect: Callable[[], Any],
        pool: asyncpg.Pool,
        clock: Callable[[], datetime],
        resync_seconds: float,
    ) -> None:
        self._connect = connect
        self._pool = pool
        self._clock = clock
        self._resync = resync_seconds
        self.on_revoked: list[Callable[[str], None]] = []
        self.revoked: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    def __contains__(self, jti: object) -> bool:
        return jti in self.revoked

    def add(self, jti: str) -> None:
        """Mark ``jti`` revoked here at once (the NOTIFY will follow)."""
        if jti not in self.revoked:
            self.revoked.add(jti)
            for hook in self.on_revoked:
                hook(jti)

    async def reload(self) -> None:
        """Replace the mirror with the database's list."""
        fresh = await active(self._pool, self._clock())
        for jti in fresh - self.revoked:
            self.add(jti)
        self.revoked = fresh

    async def start(self) -> None:
        """Load the list, then keep it current in a background task."""
        await self.reload()
        self._task = asyncio.create_task(self._run(), name="revocation-mirror")
        # Wait until LISTEN is in place so a revocation made right after start is seen.
        waiter = asyncio.create_task(self._listening.wait())
        await asyncio.wait({waiter, self._task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self.add(str(payload))

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                await conn.add_listener(CHANNEL, self._notified)
                self._listening.set()
                await self.reload()  # whatever was missed while not listening
                backoff = 0.5
                while not conn.is_closed():
                    await asyncio.sleep(self._resync)
                    await self.reload()
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("revocation_listener_lost", error=str(exc), retry_in=backoff)
            finally:
                if conn is not None and not conn.is_closed():
                    await conn.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
