"""The media routes of a zoom-style session and of the networking tables and pairings:
publish a camera, watch the others' feeds.

Browsers talk to hybridcon only; before any negotiation a route asks the rules of the
place (a :class:`~hybridcon.core.rooms.MediaGate`) what the caller may do. In a session
(``/api/v1/sessions/{session}/…``) the session rules answer: someone not admitted,
removed, or in a session that ended is refused (403), and a publish without the floor
is refused by the server whatever the page does. At a networking table or in a roulette
pairing (``/api/v1/network/{room}/…``, ``room`` being ``net~t1`` or ``net~p1``) the
networking rules answer: whoever is seated at the table (or is one of the pair) may
publish and watch, anyone else is refused (403). Then the room provider negotiates
(:mod:`hybridcon.rooms`). The two families are the same routes below the prefix.

* ``POST /api/v1/sessions/{session}/publish`` takes the participant's SDP offer and
  answers ``201`` with the SDP answer and a ``Location`` naming the publish;
  ``DELETE`` on the Location ends it.
* ``POST /api/v1/sessions/{session}/feeds/{participant}`` answers ``201`` with the
  provider's SDP *offer* for that participant's feed and a ``Location``; ``PATCH`` on
  the Location with the participant's SDP answer completes it (204); ``DELETE`` ends it.
* ``GET /api/v1/sessions/{session}/feeds`` lists who publishes in the caller's room.
* ``GET /api/v1/sessions/{session}/ice`` gives the caller's ICE servers, with TURN
  credentials minted for them (:mod:`hybridcon.core.turn`).
* ``/api/v1/network/{room}/ice``, ``…/feeds``, ``…/publish``, ``…/feeds/{participant}``
  and their Locations: the same, in a networking table's or pairing's room.

A Location is unguessable, and only its owner may answer or end it (under the prefix
it was made under).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from hybridcon.api.auth import bearer_claims
from hybridcon.api.whip import SDP, _body, ice_links
from hybridcon.core.engagement import actor_hash
from hybridcon.core.networking import room_size
from hybridcon.core.programme import Online
from hybridcon.core.rooms import (
    MediaAccess,
    MediaGate,
    RoomEvent,
    RoomEventKind,
    RoomProvider,
    RoomSpec,
)
from hybridcon.core.tokens import Claims
from hybridcon.errors import Forbidden, Invalid, NotFound, Unavailable
from hybridcon.media.ice import peer_ice_servers
from hybridcon.services import SERVICES

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a media route acts: a session, or a networking table or pairing."""

    key: str  # "session:<id>" or "network:<room>": a resource is owned within one
    base: str  # the routes' URL prefix (Locations are made under it)
    session: str | None  # the session's id; None for a networking room
    room: str | None  # the networking room; None for a session


def _place(request: web.Request) -> _Place:
    session = request.match_info.get("session")
    if session is not None:
        return _Place(f"session:{session}", f"/api/v1/sessions/{session}", session, None)
    room = request.match_info["room"]
    return _Place(f"network:{room}", f"/api/v1/network/{room}", None, room)


@dataclass(frozen=True, slots=True)
class _Owned:
    """Who a media resource belongs to, and what it is."""

    place: str  # _Place.key
    room: str
    participant: str
    feed: str | None  # the watched participant; None for a publish


@dataclass
class RoomMedia:
    """The node's room media as the routes see it.

    Attributes:
        provider: the room provider (started with the app).
        gate: the session rules, asked before every negotiation in a session; None
            until the sessions capability is wired (every media request then gets 503).
        network: the networking rules, asked the same way for a table's or a
            pairing's room; None until the networking capability is wired (503).
    """

    provider: RoomProvider
    gate: MediaGate | None = None
    network: MediaGate | None = None
    owners: dict[str, _Owned] = field(default_factory=dict)

    def on_event(self, event: RoomEvent) -> None:
        """Forget the resources the provider ended by itself (a listener of its events)."""
        if event.kind is RoomEventKind.GONE:
            ended = [
                r
                for r, o in self.owners.items()
                if o.room == event.room and o.participant == event.participant
            ]
        elif event.kind is RoomEventKind.UNPUBLISHED:
            # The publish itself, and every subscription to it.
            ended = [
                r
                for r, o in self.owners.items()
                if o.room == event.room
                and (
                    o.feed == event.participant
                    or (o.feed is None and o.participant == event.participant)
                )
            ]
        else:
            return
        for resource in ended:
            self.owners.pop(resource, None)


ROOM_MEDIA = web.AppKey("room_media", RoomMedia)


def _media(request: web.Request) -> RoomMedia:
    return request.app[ROOM_MEDIA]


def _access(request: web.Request) -> tuple[Claims, MediaAccess, RoomMedia]:
    """The caller's claims and media access in the session or networking room of the path.

    Raises:
        Unauthorized: no valid bearer token.
        Forbidden: the token does not cover the session, or the rules of the place
            refuse (not admitted, removed, ended; not seated at the table, not in the
            pairing).
        NotFound: no such zoom-style session; not a networking room, or no such table
            or pairing now.
        Unavailable: the rules of the place are not running on this node.
    """
    place = _place(request)
    claims = bearer_claims(request)
    media = _media(request)
    if place.room is not None:
        if media.network is None:
            raise Unavailable("the networking rules are not running on this node", retry_after=10)
        return claims, media.network.media_access(place.room, claims), media
    session = place.session or ""
    found = request.app[SERVICES].programme.session(session)
    if found is None or found.online is not Online.ROOM:
        raise NotFound(f"no zoom-style session {session!r} in the programme")
    if not claims.covers(f"session:{session}"):
        raise Forbidden(f"your token does not cover session {session}")
    if media.gate is None:
        raise Unavailable("the session rules are not running on this node", retry_after=10)
    return claims, media.gate.media_access(session, claims), media


async def _ensure_room(request: web.Request, access: MediaAccess) -> None:
    services = request.app[SERVICES]
    place = _place(request)
    if place.room is not None:
        # A table or a pairing: as many may publish as sit in it.
        size = room_size(place.room)
        spec = RoomSpec(
            room=access.room,
            title=f"networking {place.room}",
            max_publishers=size,
            max_participants=size,
        )
    else:
        session = place.session or ""
        found = services.programme.session(session)
        spec = RoomSpec(
            room=access.room,
            title=found.title if found is not None else session,
            max_publishers=services.settings.room_max_publishers,
            max_participants=services.settings.room_max_participants,
        )
    await _media(request).provider.ensure_room(spec)


def _ice_servers(request: web.Request, claims: Claims) -> list[dict[str, Any]]:
    services = request.app[SERVICES]
    return peer_ice_servers(
        services.settings,
        services.turn_secret,
        services.clock(),
        actor_hash(services.actor_key, claims.sub),
    )


def _created(request: web.Request, claims: Claims, sdp: str, location: str) -> web.StreamResponse:
    response = web.Response(status=201, text=sdp, content_type=SDP)
    response.headers["Location"] = location
    for link in ice_links(request, claims):
        response.headers.add("Link", link)
    return response


async def _sdp(request: web.Request, what: str) -> str:
    """The request's SDP body (an offer or an answer).

    Raises:
        Invalid: the body is not an SDP session description (RFC 8866 starts every
            one with ``v=0``).
    """
    text = await _body(request, SDP)
    if not text.startswith("v=0"):
        raise Invalid(f"the {what} is not valid SDP: it must start with the line v=0 (RFC 8866)")
    return text


def _owned(request: web.Request, claims: Claims, *, feed: str | None) -> tuple[str, _Owned]:
    """The path's resource, if the caller owns it in this session or networking room.

    Raises:
        NotFound: no such resource here, or it is someone else's.
    """
    resource = request.match_info["resource"]
    owned = _media(request).owners.get(resource)
    if (
        owned is None
        or owned.place != _place(request).key
        or owned.participant != claims.sub
        or owned.feed != feed
    ):
        raise NotFound("no such media connection of yours here")
    return resource, owned


# --- the routes ----------------------------------------------------------------------------


async def ice(request: web.Request) -> web.Response:
    """The caller's ICE servers: STUN, and TURN with credentials of their own that
    expire (``turn_ttl``). Anyone the session rules admit."""
    claims, _access_now, _media_now = _access(request)
    services = request.app[SERVICES]
    servers = _ice_servers(request, claims)
    minted = bool(services.settings.turn_urls and services.turn_secret)
    expires = services.clock() + services.settings.turn_ttl if minted else None
    return web.json_response(
        {
            "ice_servers": servers,
            "expires_at": expires.isoformat() if expires is not None else None,
        },
        headers={"Cache-Control": "no-store"},
    )


async def publish(request: web.Request) -> web.StreamResponse:
    """Publish the caller's camera and/or microphone: SDP offer in, answer out. Only
    with the floor (hosts and speakers have it by role)."""
    claims, access, media = _access(request)
    place = _place(request)
    if not access.may_publish:
        raise Forbidden(
            f"participant {access.participant} does not have the floor in session "
            f"{place.session}; a host gives it"
        )
    offer = await _sdp(request, "offer")
    await _ensure_room(request, access)
    negotiated = await media.provider.publish(access.room, access.participant, offer)
    media.owners[negotiated.resource] = _Owned(place.key, access.room, access.participant, None)
    location = f"{place.base}/publish/{negotiated.resource}"
    return _created(request, claims, negotiated.sdp, location)


async def unpublish(request: web.Request) -> web.StreamResponse:
    """Stop publishing (the caller's own publish)."""
    claims = bearer_claims(request)
    resource, _owned_by = _owned(request, claims, feed=None)
    media = _media(request)
    media.owners.pop(resource, None)
    await media.provider.end(resource)
    return web.Response(status=200)


async def feeds(request: web.Request) -> web.Response:
    """Who publishes in the caller's room now (their own publish included)."""
    _claims, access, media = _access(request)
    return web.json_response(
        {
            "room": access.room,
            "feeds": [
                {
                    "participant": f.participant,
                    "audio": f.audio,
                    "video": f.video,
                    "audio_muted": f.audio_muted,
                    "video_muted": f.video_muted,
                }
                for f in media.provider.feeds(access.room)
            ],
        },
        headers={"Cache-Control": "no-store"},
    )


async def subscribe(request: web.Request) -> web.StreamResponse:
    """Watch one participant's feed: the server's SDP offer out; answer it with PATCH."""
    claims, access, media = _access(request)
    place = _place(request)
    feed = request.match_info["participant"]
    await _ensure_room(request, access)
    negotiated = await media.provider.subscribe(access.room, access.participant, feed)
    media.owners[negotiated.resource] = _Owned(place.key, access.room, access.participant, feed)
    location = f"{place.base}/feeds/{feed}/{negotiated.resource}"
    return _created(request, claims, negotiated.sdp, location)


async def answer(request: web.Request) -> web.StreamResponse:
    """The caller's SDP answer to a feed's offer."""
    claims, _access_now, media = _access(request)
    resource, _owned_by = _owned(request, claims, feed=request.match_info["participant"])
    await media.provider.complete(resource, await _sdp(request, "answer"))
    return web.Response(status=204)


async def unsubscribe(request: web.Request) -> web.StreamResponse:
    """Stop watching a feed."""
    claims = bearer_claims(request)
    resource, _owned_by = _owned(request, claims, feed=request.match_info["participant"])
    media = _media(request)
    media.owners.pop(resource, None)
    await media.provider.end(resource)
    return web.Response(status=200)
