"""Hall links in PostgreSQL: a code per room, stored as a hash plus the salt it comes from."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from hybridcon.core.invites import code_hash, derive_code
from hybridcon.errors import Closed, NotFound
from hybridcon.store.db import Executor


@dataclass(frozen=True, slots=True)
class HallLink:
    """One room's link."""

    link_id: uuid.UUID
    stage: str
    code: str
    valid_until: datetime
    revoked: bool


async def create(
    conn: Executor, *, stage: str, secret: bytes, by: str, valid_until: datetime
) -> HallLink:
    """A new link for the room of ``stage``."""
    salt = secrets.token_bytes(16)
    code = derive_code(secret, b"hall:" + salt)
    link_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO hall_links (link_id, stage, code_hash, salt, created_by, valid_until)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        link_id,
        stage,
        code_hash(code),
        salt,
        by,
        valid_until,
    )
    return HallLink(link_id=link_id, stage=stage, code=code, valid_until=valid_until, revoked=False)


async def listing(conn: Executor, *, secret: bytes) -> list[HallLink]:
    """Every link, with its code (to print again)."""
    rows = await conn.fetch(
        "SELECT link_id, stage, salt, valid_until, revoked_at FROM hall_links "
        "ORDER BY stage, created_at"
    )
    return [
        HallLink(
            link_id=r["link_id"],
            stage=r["stage"],
            code=derive_code(secret, b"hall:" + r["salt"]),
            valid_until=r["valid_until"],
            revoked=r["revoked_at"] is not None,
        )
        for r in rows
    ]


async def find(conn: Executor, code: str, now: datetime) -> tuple[uuid.UUID, str, datetime]:
    """The link a (canonical) code belongs to: ``(link_id, stage, valid_until)``.

    Raises:
        NotFound: no link has this code.
        Closed: the link expired or was revoked.
    """
    row = await conn.fetchrow(
        "SELECT link_id, stage, valid_until, revoked_at FROM hall_links WHERE code_hash = $1",
        code_hash(code),
    )
    if row is None:
        raise NotFound("no hall link has this code")
    if row["revoked_at"] is not None or row["valid_until"] <= now:
        raise Closed("this hall link is no longer valid")
    return row["link_id"], row["stage"], row["valid_until"]


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
