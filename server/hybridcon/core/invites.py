"""Invites: registrations from a ticketing export turned into single-use codes.

A code is derived from a server secret and a per-invite random salt, so the database
holds only its hash and the salt; ``invites export`` derives the code again. A code is
redeemed by one device: that device may redeem it again (for a fresh token) while the
invite is valid, a second device never.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import secrets
from dataclasses import dataclass
from datetime import datetime

from hybridcon.core.programme import Programme
from hybridcon.core.tokens import Role, parse_role, parse_scopes
from hybridcon.errors import Closed, Conflict, Invalid

CODE_BYTES = 10  # 80 bits: unguessable under the redeem rate limit
MAX_DEVICE_LENGTH = 200
MAX_ROWS = 100_000
_NAME_COLUMNS = ("name", "full_name", "naam")


@dataclass(frozen=True, slots=True)
class Registration:
    """One valid row of a ticketing export."""

    line: int
    ticket_id: str
    name: str
    email: str | None
    role: Role
    scopes: tuple[str, ...]


def parse_registrations(
    text: str, *, default_role: Role = Role.VIEWER, default_scopes: tuple[str, ...] = ("*",)
) -> list[Registration]:
    """Parse a ticketing export (CSV with a header row).

    Columns: ``ticket_id`` (required, unique), ``name`` (or ``first_name`` and
    ``last_name``), ``email`` (optional), ``role`` (optional, default viewer),
    ``scopes`` (optional, separated by spaces or ``;``). Header names are matched
    case-insensitively; other columns are ignored.

    Raises:
        Invalid: the header lacks a required column, or any row is wrong. The whole
            file is refused, naming the first wrong line, so nothing is half-imported.
    """
    if text.startswith("\ufeff"):
        text = text[1:]  # spreadsheet exports often start with a byte-order mark
    # Spreadsheets in Flanders often export with ';'. The header names hold none of the
    # candidates, so the one that occurs most in the header line is the delimiter; the
    # quoting rules stay Excel's (csv.Sniffer guesses those wrong on some real files).
    header_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=header_line.count)
    reader = csv.reader(io.StringIO(text), csv.excel, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise Invalid("the CSV file is empty") from None
    except csv.Error as exc:
        raise Invalid(f"line 1: {exc}") from None
    columns = {name.strip().lower(): index for index, name in enumerate(header)}
    if "ticket_id" not in columns:
        raise Invalid("the CSV header has no 'ticket_id' column")
    name_column = next((c for c in _NAME_COLUMNS if c in columns), None)
    if name_column is None and not {"first_name", "last_name"} <= columns.keys():
        raise Invalid("the CSV header has no 'name' column (nor 'first_name' and 'last_name')")

    registrations: list[Registration] = []
    seen: dict[str, int] = {}
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(registrations) >= MAX_ROWS:
                raise Invalid(f"the CSV file has more than {MAX_ROWS} rows")

            def cell(column: str, row: list[str] = row) -> str:
                index = columns.get(column)
                return row[index].strip() if index is not None and index < len(row) else ""

            ticket_id = cell("ticket_id")
            if not ticket_id:
                raise Invalid(f"line {line}: ticket_id is empty")
            if len(ticket_id) > 100:
                raise Invalid(f"line {line}: ticket_id is longer than 100 characters")
            if ticket_id in seen:
                raise Invalid(
                    f"line {line}: ticket_id {ticket_id!r} repeats line {seen[ticket_id]}"
                )
            seen[ticket_id] = line
            if name_column is not None:
                name = cell(name_column)
            else:
                name = f"{cell('first_name')} {cell('last_name')}".strip()
            if not name:
                raise Invalid(f"line {line}: name is empty")
            if len(name) > 80:
                raise Invalid(f"line {line}: name is longer than 80 characters")
            email = cell("email") or None
            if email is not None and ("@" not in email or len(email) > 254):
                raise Invalid(f"line {line}: email {email!r} is not an e-mail address")
            role_text = cell("role").lower()
            scope_text = cell("scopes").replace(";", " ").split()
            try:
                role = parse_role(role_text) if role_text else default_role
                scopes = parse_scopes(scope_text) if scope_text else default_scopes
            except Invalid as exc:
                raise Invalid(f"line {line}: {exc.message}") from None
            registrations.append(
                Registration(
                    line=line, ticket_id=ticket_id, name=name, email=email, role=role, scopes=scopes
                )
            )
    except csv.Error as exc:
        raise Invalid(f"line {reader.line_num}: {exc}") from None
    if not registrations:
        raise Invalid("the CSV file has a header but no registrations")
    return registrations


def check_programme_scopes(registrations: list[Registration], programme: Programme) -> None:
    """Refuse registrations whose scopes name nothing in ``programme``.

    Raises:
        Invalid: naming the first such line and scope (nothing is imported then).
    """
    for registration in registrations:
        try:
            programme.check_scopes(registration.scopes)
        except Invalid as exc:
            raise Invalid(f"line {registration.line}: {exc.message}") from None


def join_link(base_url: str, code: str) -> str:
    """The link an attendee opens to redeem ``code``: ``BASE/join#code=CODE``.

    The code rides in the fragment, never the query string: browsers do not send a
    fragment to any server, so the code stays out of access logs, proxies and
    ``Referer`` headers; the ``/join`` page reads it and redeems it over the API.
    """
    return f"{base_url.rstrip('/')}/join#code={code}"


def derive_code(secret: bytes, salt: bytes) -> str:
    """The invite code for a salt: 16 base32 characters in groups of four."""
    digest = hmac.new(secret, b"hybridcon-invite:" + salt, hashlib.sha256).digest()
    text = base64.b32encode(digest[:CODE_BYTES]).decode("ascii")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def normalise_code(code: str) -> str:
    """A code as typed (any case, spaces or dashes) in its canonical form.

    Raises:
        Invalid: it cannot be an invite code.
    """
    if not isinstance(code, str):
        raise Invalid("code must be a string")
    compact = "".join(ch for ch in code.upper() if ch not in " -\t")
    if len(compact) != 16 or not all(ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for ch in compact):
        raise Invalid(
            "code is not an invite code (16 letters and digits, like ABCD-EFGH-IJKL-MNOP)"
        )
    return "-".join(compact[i : i + 4] for i in range(0, 16, 4))


def code_hash(code: str) -> bytes:
    """The lookup hash of a canonical code."""
    return hashlib.sha256(code.encode("ascii")).digest()


def new_device_id() -> str:
    """A random device identifier for a client that did not bring one."""
    return secrets.token_urlsafe(24)


def device_hash(device: str) -> bytes:
    """The stored form of a device identifier.

    Raises:
        Invalid: the identifier is empty or too long.
    """
    if not isinstance(device, str) or not device.strip() or len(device) > MAX_DEVICE_LENGTH:
        raise Invalid(
            f"device must be a non-empty string of at most {MAX_DEVICE_LENGTH} characters"
        )
    return hashlib.sha256(device.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class InviteState:
    """What the redeem rule needs to know of an invite."""

    valid_until: datetime
    device_hash: bytes | None


def check_redeem(invite: InviteState, device: bytes, now: datetime) -> None:
    """Whether ``device`` may redeem this invite now.

    Raises:
        Closed: the invite's validity has passed.
        Conflict: another device already redeemed it.
    """
    if now > invite.valid_until:
        raise Closed(f"this invite expired at {invite.valid_until.isoformat()}")
    if invite.device_hash is not None and not hmac.compare_digest(invite.device_hash, device):
        raise Conflict("this invite was already redeemed on another device")
