"""Hall participation: a link and QR code per room; phones join without registering.

An organiser makes a link for the room of a stage (``POST /api/v1/halls/{stage}/links``)
and prints its QR code. A phone that opens it swaps the code for a short-lived viewer
token scoped ``hall:<stage>`` (``POST /api/v1/halls/join``): it can follow that stage,
vote and ask, and its votes count apart from the online ones. A workshop's room or a
walk's meeting point gets a check-in link the same way
(``POST /api/v1/halls/sessions/{session}/links``): the scan is the person's check-in
there, and the token is scoped ``session:<id>``. A device identifier keeps
one phone one person across rejoins. Joins are limited per link (a full hall behind one
venue address must get in) and failed codes per address (guessing).
"""

from __future__ import annotations

import hashlib
import io
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
from hybridcon.core.programme import Online, Session, Stage
from hybridcon.core.tokens import MAX_NAME_LENGTH, Claims, Role, TokenRequest
from hybridcon.errors import HybridconError, Invalid, NotFound, RateLimited
from hybridcon.services import SERVICES, Services
from hybridcon.store import audit
from hybridcon.store import halls as hall_store


def _join_url(base: str, code: str) -> str:
    return f"{base}/hall#code={code}"


def _qr_svg(url: str) -> str:
    """The link's QR code as a standalone SVG document: with its namespace, so it also
    shows as an image (a ``data:`` URL, a saved file), not only inline in HTML."""
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", xmldecl=False, nl=False, scale=8, title="QR")
    return out.getvalue().decode("utf-8")


class LinkBody(BaseModel):
    """How long the link stays valid (hours, default: until the end of the event day)."""

    model_config = ConfigDict(extra="forbid")
    valid_hours: int | None = None


async def create_link(request: web.Request) -> web.Response:
    """A new link (with its QR code as SVG) for the room of a stage. Organisers only."""
    stage = request.match_info["stage"]
    if request.app[SERVICES].programme.stage(stage) is None:
        raise NotFound(f"no stage {stage!r} in the programme")
    return await _create(request, stage=stage)


async def create_session_link(request: web.Request) -> web.Response:
    """A check-in link for a session held on site (a workshop, a walk). Organisers only."""
    ident = request.match_info["session"]
    session = request.app[SERVICES].programme.session(ident)
    if session is None:
        raise NotFound(f"no session {ident!r} in the programme")
    if session.online is Online.ROOM:
        raise Invalid(f"session {ident!r} is held online only; there is nothing to check in to")
    return await _create(request, session=ident)


async def _create(
    request: web.Request, *, stage: str | None = None, session: str | None = None
) -> web.Response:
    claims = require_role(request, Role.ORGANISER)
    services = request.app[SERVICES]
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
        session=session,
        secret=services.invite_secret,
        by=claims.sub,
        valid_until=valid_until,
    )
    await audit.record_by(
        services.db(),
        claims,
        "hall.link",
        target=link.topic,
        detail={"link_id": link.link_id.hex},
    )
    url = _join_url(services.settings.base_url(), link.code)
    return web.json_response({**_described(link, url), "qr_svg": _qr_svg(url)}, status=201)


def _described(link: hall_store.HallLink, url: str) -> dict[str, object]:
    return {
        "link_id": link.link_id.hex,
        "stage": link.stage,
        "session": link.session,
        "code": link.code,
        "link": url,
        "valid_until": link.valid_until.isoformat(),
    }


async def list_links(request: web.Request) -> web.Response:
    """Every hall link with its code and URL, to print again. Organisers only."""
    require_role(request, Role.ORGANISER)
    services = request.app[SERVICES]
    links = await hall_store.listing(services.db(), secret=services.invite_secret)
    base = services.settings.base_url()
    return web.json_response(
        {
            "links": [
                {**_described(link, _join_url(base, link.code)), "revoked": link.revoked}
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
        link = await hall_store.find(services.db(), code, services.clock())
    except HybridconError:
        services.hall_guess_limiter.take(address, now_mono)
        raise
    link_id = link.link_id
    wait = services.hall_limiter.take(link_id.hex, now_mono)
    if wait:
        raise RateLimited(
            "many people are joining right now; try again in a moment", retry_after=wait
        )
    device = body.device or new_device_id()
    person = hashlib.sha256(f"{link_id.hex}:{device}".encode()).hexdigest()[:32]
    # A stage's hall follows the stage, votes and asks, counted apart from online; a
    # workshop's or walk's phone is scoped to that session.
    place: Stage | Session | None
    if link.stage is not None:
        place, scope = services.programme.stage(link.stage), f"hall:{link.stage}"
    else:
        place, scope = services.programme.session(link.session or ""), link.topic
    ttl = min(services.settings.token_ttl, link.valid_until - services.clock())
    token, claims = services.auth().issue(
        TokenRequest(
            role=Role.VIEWER,
            scopes=(scope,),
            name=f"Zaal {place.title}"[:MAX_NAME_LENGTH] if place else "Zaal",
            sub=f"h:{person}",
            ttl=ttl,
        ),
        via="hall",
    )
    _log_checkin(services, claims, link.topic, link_id.hex)
    return web.json_response(
        {
            "token": token,
            "expires_at": claims.exp.isoformat(),
            "device": device,
            "user": claims.to_user(),
            "topic": link.topic,
        }
    )


def _log_checkin(services: Services, claims: Claims, topic: str, link_id: str) -> None:
    """Log the scan as a ``checkin`` on the place's topic (the report's on-site people,
    R3 and R16): ``stage:<id>`` for a stage's room, ``session:<id>`` for a workshop or
    a walk.

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
            topic=topic,
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
