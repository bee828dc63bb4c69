"""Organisers' routes of the report: the live view now, and the identified attendance.

``GET /api/v1/live`` gives what the ``org`` topic pushes (R21). ``GET
/api/v1/attendance`` is the only place names meet engagement figures: it is for
organisers only, and every call is written to the audit log before the answer leaves.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

from hybridcon.api.auth import require_role
from hybridcon.core.tokens import Role
from hybridcon.errors import Invalid
from hybridcon.realtime.gateway import GATEWAY
from hybridcon.realtime.live import Live
from hybridcon.services import SERVICES
from hybridcon.store import audit
from hybridcon.store.attendance import attendance as attendance_rows


async def live(request: web.Request) -> web.Response:
    """The live view (at most a second old). Organisers only."""
    require_role(request, Role.ORGANISER)
    capability = next(c for c in request.app[GATEWAY].capabilities if isinstance(c, Live))
    return web.json_response(await capability.current())


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
