"""Invites in PostgreSQL: import (all or nothing), export, redeem (row-locked)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from hybridcon.core.csvcells import csv_document
from hybridcon.core.invites import (
    InviteState,
    Registration,
    check_redeem,
    code_hash,
    derive_code,
    join_link,
)
from hybridcon.core.tokens import Role
from hybridcon.errors import NotFound
from hybridcon.store.db import Conn, Executor


@dataclass(frozen=True, slots=True)
class ImportResult:
    """How many registrations became new invites, and how many were already there."""

    created: int
    existing: int


@dataclass(frozen=True, slots=True)
class InviteLink:
    """One invite as ``invites export`` writes it."""

    ticket_id: str
    name: str
    email: str | None
    code: str
    redeemed: bool


@dataclass(frozen=True, slots=True)
class RedeemedInvite:
    """The person behind a redeemed invite."""

    invite_id: uuid.UUID
    name: str
    role: Role
    scopes: tuple[str, ...]
    valid_until: datetime

    @property
    def sub(self) -> str:
        """The stable token subject of this person."""
        return f"i:{self.invite_id.hex}"


async def import_registrations(
    conn: Conn,
    registrations: Sequence[Registration],
    *,
    secret: bytes,
    valid_until: datetime,
) -> ImportResult:
    """Create an invite for each registration whose ticket is not yet known.

    One statement in one transaction: either every new row is written or none is.
    Registrations whose ``ticket_id`` already has an invite are left as they are.
    """
    ids, tickets, hashes, salts, names, emails, roles, scopes = [], [], [], [], [], [], [], []
    for reg in registrations:
        salt = secrets.token_bytes(16)
        ids.append(uuid.uuid4())
        tickets.append(reg.ticket_id)
        hashes.append(code_hash(derive_code(secret, salt)))
        salts.append(salt)
        names.append(reg.name)
        emails.append(reg.email)
        roles.append(reg.role.value)
        # Arrays of arrays must be rectangular in PostgreSQL: store scopes space-joined
        # in the unnest and split them back.
        scopes.append(" ".join(reg.scopes))
    async with conn.transaction():
        created = await conn.fetch(
            """INSERT INTO invites (id, ticket_id, code_hash, salt, name, email, role, scopes,
                                    valid_until)
               SELECT i, t, h, s, n, e, r, string_to_array(sc, ' '), $9
               FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::bytea[], $5::text[],
                           $6::text[], $7::text[], $8::text[]) AS x(i, t, h, s, n, e, r, sc)
               ON CONFLICT (ticket_id) DO NOTHING
               RETURNING ticket_id""",
            ids,
            tickets,
            hashes,
            salts,
            names,
            emails,
            roles,
            scopes,
            valid_until,
        )
    return ImportResult(created=len(created), existing=len(registrations) - len(created))


async def export_links(conn: Executor, *, secret: bytes) -> list[InviteLink]:
    """Every invite with its code, in ticket order."""
    rows = await conn.fetch(
        "SELECT ticket_id, name, email, salt, redeemed_at FROM invites ORDER BY ticket_id"
    )
    return [
        InviteLink(
            ticket_id=r["ticket_id"],
            name=r["name"],
            email=r["email"],
            code=derive_code(secret, r["salt"]),
            redeemed=r["redeemed_at"] is not None,
        )
        for r in rows
    ]


async def redeem(conn: Conn, *, code: str, device: bytes, now: datetime) -> RedeemedInvite:
    """Redeem a (canonical) code for ``device``, binding the device on first use.

    Raises:
        NotFound: no invite has this code.
        Closed: the invite has expired.
        Conflict: another device redeemed it first.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            """SELECT id, name, role, scopes, valid_until, device_hash FROM invites
               WHERE code_hash = $1 FOR UPDATE""",
            code_hash(code),
        )
        if row is None:
            raise NotFound("no invite has this code")
        check_redeem(
            InviteState(valid_until=row["valid_until"], device_hash=row["device_hash"]), device, now
        )
        await conn.execute(
            """UPDATE invites SET device_hash = $2, redeemed_at = coalesce(redeemed_at, $3),
                                  redeem_count = redeem_count + 1
               WHERE id = $1""",
            row["id"],
            device,
            now,
        )
    return RedeemedInvite(
        invite_id=row["id"],
        name=row["name"],
        role=Role(row["role"]),
        scopes=tuple(row["scopes"]),
        valid_until=row["valid_until"],
    )


EXPORT_COLUMNS = ("ticket_id", "name", "email", "code", "link", "redeemed")


def export_csv(links: Sequence[InviteLink], base_url: str) -> str:
    """The invites as the CSV that ``invites export`` and the organiser page hand out.

    Names and e-mails come from a ticketing export: a ``=HYPERLINK(...)`` there reaches
    the organiser's spreadsheet as text, not as a formula (every cell goes through
    :func:`~hybridcon.core.csvcells.csv_document`). Links carry the code in the fragment.
    """
    base = base_url.rstrip("/")
    return csv_document(
        EXPORT_COLUMNS,
        (
            (
                link.ticket_id,
                link.name,
                link.email,
                link.code,
                join_link(base, link.code),
                "yes" if link.redeemed else "no",
            )
            for link in links
        ),
    )
