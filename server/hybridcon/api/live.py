"""Organisers' routes of the report: the live view now, the report, and the identified
attendance.

``GET /api/v1/live`` gives what the ``org`` topic pushes (R21). ``GET /api/v1/report``
is the report's self-contained HTML page, as ``hybridcon report --format html`` writes
it, for the dashboard's download button. ``GET /api/v1/attendance`` is the only place
names meet engagement figures: it is for organisers only, and every call is written to
the audit log before the answer leaves.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

from hybridcon.api.auth import require_role
from hybridcon.core.tokens import Role
from hybridcon.errors import Invalid, NotFound
from hybridcon.realtime.gateway import GATEWAY
from hybridcon.realtime.live import Live
from hybridcon.report import build as report_build
from hybridcon.report import render as report_render
from hybridcon.report.files import ReportError
from hybridcon.report.i18n import LANGS
from hybridcon.services import SERVICES
from hybridcon.store import audit
from hybridcon.store.attendance import attendance as attendance_rows


async def live(request: web.Request) -> web.Response:
    """The live view (at most a second old). Organisers only."""
    require_role(request, Role.ORGANISER)
    capability = next(c for c in request.app[GATEWAY].capabilities if isinstance(c, Live))
    return web.json_response(await capability.current())


async def report(request: web.Request) -> web.Response:
    """The whole report as one HTML page (``?lang=nl|en``, default nl). Organisers only;
    audited. It holds no names (keyed hashes, small cells suppressed); 404 while the log
    has nothing to report."""
    claims = require_role(request, Role.ORGANISER)
    lang = request.query.get("lang", "nl")
    if lang not in LANGS:
        raise Invalid(f"lang must be one of {', '.join(LANGS)}")
    services = request.app[SERVICES]
    programme = services.programme
    try:
        figures = await report_build.build(services.db(), programme, start=None, end=None)
    except ReportError as exc:
        raise NotFound(exc.message) from None
    html = report_render.html(
        figures,
        title=programme.event.title,
        tz=ZoneInfo(programme.event.timezone),
        lang=lang,
        generated=services.clock(),
    )
    await audit.record_by(services.db(), claims, "report.download", detail={"lang": lang})
    return web.Response(
        text=html,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="rapport.html"',
            "Cache-Control": "no-store",
        },
    )


def _day(text: str | None, default: date, name: str) -> date:
    if text is None:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{name} must be a date such as 2022-05-05") from None


async def attendance(request: web.Request) -> web.Response:
    """Every invited person's attentive minutes and check-ins (``?from=&to=``, whole days
    in the event's time zone; default the event's day). Organisers only; audited."""
    claims = require_role(request, Role.ORGANISER)
    services = request.app[SERVICES]
    event = services.programme.event
    tz = ZoneInfo(event.timezone)
    first = _day(request.query.get("from"), event.date, "from")
    last = _day(request.query.get("to"), first, "to")
    if last < first:
        raise Invalid("to must not be before from")
    start = datetime.combine(first, time(0), tzinfo=tz)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz)
    rows = await attendance_rows(services.db(), services.actor_key, start, end)
    await audit.record_by(
        services.db(),
        claims,
        "attendance.export",
        detail={"count": len(rows), "from": first.isoformat(), "to": last.isoformat()},
    )
    return web.json_response(
        {
            "from": first.isoformat(),
            "to": last.isoformat(),
            "people": [
                {
                    "ticket_id": r.ticket_id,
                    "name": r.name,
                    "email": r.email,
                    "attentive_minutes": r.attentive_minutes,
                    "checkins": r.checkins,
                }
                for r in rows
            ],
        },
        headers={"Cache-Control": "no-store"},
    )
