"""Hall links in PostgreSQL: a code per room, stored as a hash plus the salt it comes from.

A link names one place: a stage's room, or a programme session held on site (a
workshop's room, a walk's meeting point).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from asyncpg import Record

from hybridcon.core.invites import code_hash, derive_code
from hybridcon.errors import Closed, NotFound
from hybridcon.store.db import Executor


@dataclass(frozen=True, slots=True)
class HallLink:
    """One place's link: exactly one of ``stage`` and ``session`` is set."""

    link_id: uuid.UUID
    stage: str | None
    session: str | None
    code: str
    valid_until: datetime
    revoked: bool

    @property
    def topic(self) -> str:
        """The place's topic: ``stage:<id>`` or ``session:<id>``."""
        return f"stage:{self.stage}" if self.stage is not None else f"session:{self.session}"


async def create(
    conn: Executor,
    *,
    stage: str | None = None,
    session: str | None = None,
    secret: bytes,
    by: str,
    valid_until: datetime,
) -> HallLink:
    """A new link for the room of ``stage``, or for the on-site ``session``."""
    if (stage is None) == (session is None):
        raise ValueError("a hall link names a stage or a session")
    salt = secrets.token_bytes(16)
    code = derive_code(secret, b"hall:" + salt)
    link_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO hall_links
               (link_id, stage, session, code_hash, salt, created_by, valid_until)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        link_id,
        stage,
        session,
        code_hash(code),
        salt,
        by,
        valid_until,
    )
    return HallLink(
        link_id=link_id,
        stage=stage,
        session=session,
        code=code,
        valid_until=valid_until,
        revoked=False,
    )


def _link(row: Record, code: str) -> HallLink:
    return HallLink(
        link_id=row["link_id"],
        stage=row["stage"],
        session=row["session"],
        code=code,
        valid_until=row["valid_until"],
        revoked=row["revoked_at"] is not None,
    )


async def listing(conn: Executor, *, secret: bytes) -> list[HallLink]:
    """Every link, with its code (to print again): stages first, then sessions."""
    rows = await conn.fetch(
        "SELECT link_id, stage, session, salt, valid_until, revoked_at FROM hall_links "
        "ORDER BY stage NULLS LAST, session, created_at"
    )
    return [_link(r, derive_code(secret, b"hall:" + r["salt"])) for r in rows]


async def find(conn: Executor, code: str, now: datetime) -> HallLink:
    """The link a (canonical) code belongs to.

    Raises:
        NotFound: no link has this code.
        Closed: the link expired or was revoked.
    """
    row = await conn.fetchrow(
        "SELECT link_id, stage, session, valid_until, revoked_at FROM hall_links "
        "WHERE code_hash = $1",
        code_hash(code),
    )
    if row is None:
        raise NotFound("no hall link has this code")
    if row["revoked_at"] is not None or row["valid_until"] <= now:
        raise Closed("this hall link is no longer valid")
    return _link(row, code)


async def revoke(conn: Executor, link_id: str, now: datetime) -> bool:
    """Withdraw a link; False when there is no such active link."""
    try:
        ident = uuid.UUID(link_id)
    except ValueError:
        return False
    result = await conn.execute(
        "UPDATE hall_links SET revoked_at = $2 WHERE link_id = $1 AND revoked_at IS NULL",
        ident,
        now,
    )
    return str(result).endswith(" 1")
