"""Hall participation: a link and QR code per room; phones join without registering.

An organiser makes a link for the room of a stage (``POST /api/v1/halls/{stage}/links``)
and prints its QR code. A phone that opens it swaps the code for a short-lived viewer
token scoped ``hall:<stage>`` (``POST /api/v1/halls/join``): it can follow that stage,
vote and ask, and its votes count apart from the online ones. A device identifier keeps
one phone one person across rejoins. Joins are limited per link (a full hall behind one
venue address must get in) and failed codes per address (guessing).
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Annotated

import segno
from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from hybridcon.api.auth import require_role
from hybridcon.api.bodies import read_json
from hybridcon.core.engagement import EngagementEvent, actor_hash
from hybridcon.core.invites import new_device_id, normalise_code
from hybridcon.core.payloads import Checkin
from hybridcon.core.tokens import MAX_NAME_LENGTH, Claims, Role, TokenRequest
from hybridcon.errors import HybridconError, NotFound, RateLimited
from hybridcon.services import SERVICES, Services
from hybridcon.store import audit
from hybridcon.store import halls as hall_store


def _join_url(base: str, code: str) -> str:
    return f"{base}/hall#code={code}"


def _qr_svg(url: str) -> str:
    qr = segno.make(url, error="m")
    return str(qr.svg_inline(scale=8, title="QR"))


class LinkBody(BaseModel):
    """How long the link stays valid (hours, default: until the end of the event day)."""

    model_config = ConfigDict(extra="forbid")
    valid_hours: int | None = None


async def create_link(request: web.Request) -> web.Response:
    """A new link (with its QR code as SVG) for the room of a stage. Organisers only."""
    claims = require_role(request, Role.ORGANISER)
    services = request.app[SERVICES]
    stage = request.match_info["stage"]
    if services.programme.stage(stage) is None:
        raise NotFound(f"no stage {stage!r} in the programme")
    body = await read_json(request, LinkBody) if request.can_read_body else LinkBody()
    now = services.clock()
    if body.valid_hours is not None:
        valid_until = now + timedelta(hours=max(1, min(body.valid_hours, 24 * 14)))
    else:
        valid_until = max(
            services.programme.ends_at + timedelta(hours=2), now + timedelta(hours=12)
        )
    link = await hall_store.create(
        services.db(),
        stage=stage,
        secret=services.invite_secret,
        by=claims.sub,
        valid_until=valid_until,
    )
    await audit.record_by(
        services.db(), claims, "hall.link", target=stage, detail={"link_id": link.link_id.hex}
    )
    url = _join_url(services.settings.base_url(), link.code)
    return web.json_response(
        {
            "link_id": link.link_id.hex,
            "stage": stage,
            "code": link.code,
            "link": url,
            "valid_until": link.valid_until.isoformat(),
            "qr_svg": _qr_svg(url),
        },
        status=201,
    )


async def list_links(request: web.Request) -> web.Response:
    """Every hall link with its code and URL, to print again. Organisers only."""
    require_role(request, Role.ORGANISER)
    services = request.app[SERVICES]
    links = await hall_store.listing(services.db(), secret=services.invite_secret)
    base = services.settings.base_url()
    return web.json_response(
        {
            "links": [
                {
                    "link_id": link.link_id.hex,
                    "stage": link.stage,
                    "code": link.code,
                    "link": _join_url(base, link.code),
                    "valid_until": link.valid_until.isoformat(),
                    "revoked": link.revoked,
                }
                for link in links
            ]
        }
    )


class JoinBody(BaseModel):
    """The code from the QR link, and the phone's device id when it has one."""

    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    device: Annotated[str, StringConstraints(min_length=8, max_length=200)] | None = None


async def join(request: web.Request) -> web.Response:
    """Swap a hall code for a viewer token scoped to that room."""
    services = request.app[SERVICES]
    address = services.client_address(request)
    now_mono = time.monotonic()
    # Wrong codes are limited per address (guessing); their own bucket, so invite
    # redeems from the same venue address do not lock a hall out.
    wait = services.hall_guess_limiter.wait(address, now_mono)
    if wait:
        raise RateLimited("too many wrong codes from here; try again shortly", retry_after=wait)
    body = await read_json(request, JoinBody)
    try:
        code = normalise_code(body.code)
        link_id, stage, valid_until = await hall_store.find(services.db(), code, services.clock())
    except HybridconError:
        services.hall_guess_limiter.take(address, now_mono)
        raise
    wait = services.hall_limiter.take(link_id.hex, now_mono)
    if wait:
        raise RateLimited(
            "many people are joining right now; try again in a moment", retry_after=wait
        )
    device = body.device or new_device_id()
    person = hashlib.sha256(f"{link_id.hex}:{device}".encode()).hexdigest()[:32]
    stage_title = services.programme.stage(stage)
    ttl = min(services.settings.token_ttl, valid_until - services.clock())
    token, claims = services.auth().issue(
        TokenRequest(
            role=Role.VIEWER,
            scopes=(f"hall:{stage}",),
            name=f"Zaal {stage_title.title}"[:MAX_NAME_LENGTH] if stage_title else "Zaal",
            sub=f"h:{person}",
            ttl=ttl,
        ),
        via="hall",
    )
    _log_checkin(services, claims, stage, link_id.hex)
    return web.json_response(
        {
            "token": token,
            "expires_at": claims.exp.isoformat(),
            "device": device,
            "user": claims.to_user(),
            "topic": f"stage:{stage}",
        }
    )


def _log_checkin(services: Services, claims: Claims, stage: str, link_id: str) -> None:
    """Log the scan as a ``checkin`` (the report's on-site people, R3 and R16).

    Every join is logged, rejoins too: the report counts distinct people, and the phone's
    device id makes a rejoin the same person.
    """
    writer = services.engagement
    if writer is None:
        return
    payload = Checkin(link_id=link_id)
    writer.log(
        EngagementEvent.new(
            payload.kind,
            ts=services.clock(),
            actor=actor_hash(services.actor_key, claims.sub),
            topic=f"stage:{stage}",
            data={"role": claims.role.value, **payload.data()},
        )
    )


async def revoke_link(request: web.Request) -> web.Response:
    """Withdraw a hall link: its code joins nobody from now on. Organisers only."""
    claims = require_role(request, Role.ORGANISER)
    services = request.app[SERVICES]
    link_id = request.match_info["link_id"]
    if not await hall_store.revoke(services.db(), link_id, services.clock()):
        raise NotFound(f"no active hall link {link_id}")
    await audit.record_by(services.db(), claims, "hall.revoke", target=link_id)
    return web.json_response({"link_id": link_id, "revoked": True})
