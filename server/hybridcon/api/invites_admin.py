"""Invites from the organiser dashboard: import a ticketing export, export the links.

The same operations as ``hybridcon invites import`` and ``invites export`` (same parser,
same store functions, same CSV columns), for an organiser token over HTTP, so the
organiser dashboard can offer them without a shell on the server.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from hybridcon.api.auth import require_role
from hybridcon.core.invites import check_programme_scopes, parse_registrations
from hybridcon.core.tokens import Role, parse_role, parse_scopes
from hybridcon.errors import Invalid, TooLarge
from hybridcon.services import SERVICES
from hybridcon.store import audit, invites

# A ticketing export of a few thousand people is a few hundred KiB: more than the 64 KiB
# of JSON bodies, so this one route reads its body itself, up to this size.
MAX_CSV_BYTES = 4 * 1024 * 1024


async def _read_csv(request: web.Request) -> str:
    if request.content_length is not None and request.content_length > MAX_CSV_BYTES:
        raise TooLarge(f"the CSV is over {MAX_CSV_BYTES // (1024 * 1024)} MiB")
    # request.content, not request.read(): the app-wide body limit is for JSON requests.
    data = await request.content.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        raise TooLarge(f"the CSV is over {MAX_CSV_BYTES // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Invalid("the CSV is not UTF-8 text; export it as UTF-8") from None


async def import_invites(request: web.Request) -> web.Response:
    """Turn a ticketing export (``text/csv`` body) into invites; existing tickets are kept.

    Query: ``role`` for rows without one (default ``viewer``), ``scope`` (repeatable) for
    rows without any (default ``*``). Invites are valid until the programme's end plus
    ``invite_valid_days``, or that many days from now if that is later. The import is
    audited (``invites.import``).

    Raises:
        Unauthorized, Forbidden: not an organiser token.
        Invalid: not CSV, or a wrong row (nothing is imported then).
        TooLarge: over 4 MiB.
    """
    claims = require_role(request, Role.ORGANISER)
    services = request.app[SERVICES]
    if request.content_type not in {"text/csv", "text/plain"}:
        raise Invalid("send the CSV as the body, with Content-Type: text/csv")
    text = await _read_csv(request)
    registrations = parse_registrations(
        text,
        default_role=parse_role(request.query.get("role", "viewer")),
        default_scopes=parse_scopes(request.query.getall("scope", ["*"])),
    )
    check_programme_scopes(registrations, services.programme)
    # The CLI's default (the programme's end plus invite_valid_days), or as long from now
    # when that has passed: an import made after the day is for watching it again.
    days = timedelta(days=services.settings.invite_valid_days)
    valid_until = max(services.programme.ends_at + days, services.clock() + days)
    async with services.db().acquire() as conn, conn.transaction():
        result = await invites.import_registrations(
            conn, registrations, secret=services.invite_secret, valid_until=valid_until
        )
        await audit.record_by(
            conn,
            claims,
            "invites.import",
            detail={"created": result.created, "existing": result.existing},
        )
    return web.json_response(
        {
            "created": result.created,
            "existing": result.existing,
            "valid_until": valid_until.isoformat(),
        }
    )


async def export_invites(request: web.Request) -> web.Response:
    """Every invite's code and link as CSV, the columns of ``hybridcon invites export``.

    Audited (``invites.export``). The links carry the code in the fragment
    (``<public_url>/join#code=…``).
    """
    claims = require_role(request, Role.ORGANISER)
    services = request.app[SERVICES]
    base = services.settings.base_url()
    links = await invites.export_links(services.db(), secret=services.invite_secret)
    await audit.record_by(services.db(), claims, "invites.export", detail={"count": len(links)})
    return web.Response(
        text=invites.export_csv(links, base),
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="invites.csv"',
            "Cache-Control": "no-store",
        },
    )
