"""Every HTTP route of the node, in one table.

The table is the single source for the router, for the OpenAPI description and for
the documentation test (each path is described in ``docs/``). A route's ``summary``
says in one line what it does; ``auth`` names the credential it takes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from hybridcon.api import (
    halls,
    health,
    invites,
    invites_admin,
    live,
    openapi,
    pages,
    programme,
    recordings,
    rooms,
    tokens,
    whip,
)
from hybridcon.realtime import gateway

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One method on one path."""

    method: str
    path: str
    handler: Handler
    summary: str
    auth: str = "none"


ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", health.healthz, "the process is alive"),
    Route("GET", "/readyz", health.readyz, "ready for traffic (503 while starting or draining)"),
    Route("GET", "/metrics", health.metrics, "Prometheus metrics"),
    Route("GET", "/.well-known/jwks.json", tokens.jwks, "the public keys that verify tokens"),
    Route("GET", "/api/v1/programme", programme.programme, "the event's programme"),
    Route("GET", "/api/v1/openapi.json", openapi.openapi, "this route table as OpenAPI 3.1"),
    Route("POST", "/api/v1/tokens", tokens.issue, "issue a token", "organiser"),
    Route("POST", "/api/v1/revocations", tokens.revoke, "revoke a token", "organiser"),
    Route("GET", "/api/v1/revocations", tokens.list_revocations, "revoked tokens", "organiser"),
    Route("GET", "/api/v1/audit", tokens.audit_log, "the audit log", "organiser"),
    Route("POST", "/api/v1/invites/redeem", invites.redeem, "trade an invite code for a token"),
    Route(
        "POST",
        "/api/v1/invites/import",
        invites_admin.import_invites,
        "import a ticketing export (CSV)",
        "organiser",
    ),
    Route(
        "GET",
        "/api/v1/invites/export",
        invites_admin.export_invites,
        "every invite's code and link (CSV)",
        "organiser",
    ),
    Route("GET", "/api/v1/halls", halls.list_links, "the halls' join links", "organiser"),
    Route(
        "POST", "/api/v1/halls/{stage}/links", halls.create_link, "a hall join link", "organiser"
    ),
    Route(
        "POST",
        "/api/v1/halls/sessions/{session}/links",
        halls.create_session_link,
        "a check-in link for a workshop or walk",
        "organiser",
    ),
    Route("POST", "/api/v1/halls/join", halls.join, "trade a hall link for a token"),
    Route(
        "DELETE",
        "/api/v1/halls/links/{link_id}",
        halls.revoke_link,
        "revoke a hall link",
        "organiser",
    ),
    Route("GET", "/api/v1/live", live.live, "the organisers' live view", "organiser"),
    Route("GET", "/api/v1/report", live.report, "the report as one HTML page", "organiser"),
    Route(
        "GET", "/api/v1/attendance", live.attendance, "identified attendance (audited)", "organiser"
    ),
    # Zoom-style sessions' media (the session rules are asked first: admitted, floor).
    Route(
        "GET",
        "/api/v1/sessions/{session}/ice",
        rooms.ice,
        "ICE servers with TURN credentials of the caller's own",
        "participant",
    ),
    Route(
        "GET",
        "/api/v1/sessions/{session}/feeds",
        rooms.feeds,
        "who publishes in the caller's room",
        "participant",
    ),
    Route(
        "POST",
        "/api/v1/sessions/{session}/publish",
        rooms.publish,
        "publish camera/microphone (SDP offer in, answer out; needs the floor)",
        "participant",
    ),
    Route(
        "DELETE",
        "/api/v1/sessions/{session}/publish/{resource}",
        rooms.unpublish,
        "stop publishing",
        "participant",
    ),
    Route(
        "POST",
        "/api/v1/sessions/{session}/feeds/{participant}",
        rooms.subscribe,
        "watch a participant's feed (the server's SDP offer out)",
        "participant",
    ),
    Route(
        "PATCH",
        "/api/v1/sessions/{session}/feeds/{participant}/{resource}",
        rooms.answer,
        "answer a feed's offer (SDP)",
        "participant",
    ),
    Route(
        "DELETE",
        "/api/v1/sessions/{session}/feeds/{participant}/{resource}",
        rooms.unsubscribe,
        "stop watching a feed",
        "participant",
    ),
    # Networking tables' and pairings' media (the networking rules are asked first: seated).
    Route(
        "GET",
        "/api/v1/network/{room}/ice",
        rooms.ice,
        "ICE servers for a table's or pairing's media",
        "any",
    ),
    Route(
        "GET",
        "/api/v1/network/{room}/feeds",
        rooms.feeds,
        "who publishes at the caller's table or in their pairing",
        "any",
    ),
    Route(
        "POST",
        "/api/v1/network/{room}/publish",
        rooms.publish,
        "publish camera/microphone at one's table or in one's pairing",
        "any",
    ),
    Route(
        "DELETE",
        "/api/v1/network/{room}/publish/{resource}",
        rooms.unpublish,
        "stop publishing at the table or in the pairing",
        "any",
    ),
    Route(
        "POST",
        "/api/v1/network/{room}/feeds/{participant}",
        rooms.subscribe,
        "watch a person at the table or in the pairing (the server's SDP offer out)",
        "any",
    ),
    Route(
        "PATCH",
        "/api/v1/network/{room}/feeds/{participant}/{resource}",
        rooms.answer,
        "answer a table's or pairing's feed offer (SDP)",
        "any",
    ),
    Route(
        "DELETE",
        "/api/v1/network/{room}/feeds/{participant}/{resource}",
        rooms.unsubscribe,
        "stop watching a person at the table or in the pairing",
        "any",
    ),
    Route("GET", "/ws", gateway.handle, "the WebSocket gateway (auth in the first frame)"),
    Route(
        "GET",
        "/rooms/ws",
        gateway.handle,
        "the same gateway for the session and networking pages: a proxy sends this path "
        "to the node that runs the rooms",
    ),
    Route("POST", "/whip/{stage}", whip.whip_post, "publish a stage (WHIP)", "broadcaster"),
    Route("OPTIONS", "/whip/{stage}", whip.options, "CORS pre-flight"),
    Route("DELETE", "/whip/{stage}", whip.whip_end, "end a stage's stream", "broadcaster"),
    Route(
        "PATCH",
        "/whip/{stage}/{session}",
        whip.whip_patch,
        "trickle ICE to a publisher session",
        "broadcaster",
    ),
    Route(
        "DELETE",
        "/whip/{stage}/{session}",
        whip.whip_delete,
        "stop publishing",
        "broadcaster",
    ),
    Route("OPTIONS", "/whip/{stage}/{session}", whip.options, "CORS pre-flight"),
    Route("POST", "/whep/{stage}", whip.whep_post, "watch a stage (WHEP)", "viewer"),
    Route("OPTIONS", "/whep/{stage}", whip.options, "CORS pre-flight"),
    Route(
        "PATCH",
        "/whep/{stage}/{session}",
        whip.whep_patch,
        "trickle ICE to a viewer session",
        "viewer",
    ),
    Route("DELETE", "/whep/{stage}/{session}", whip.whep_delete, "stop watching", "viewer"),
    Route("OPTIONS", "/whep/{stage}/{session}", whip.options, "CORS pre-flight"),
    Route(
        "GET",
        "/hls/{stage}/{token}/{file}",
        whip.hls_file,
        "HLS playlists and segments (signed URL)",
        "signed URL",
    ),
    Route(
        "GET",
        "/api/v1/recordings",
        recordings.list_recordings,
        "the film room: finished recordings",
        "any token",
    ),
    Route(
        "GET",
        "/recordings/{stage}/{token}/{file}",
        recordings.recording_file,
        "one recording (signed URL)",
        "signed URL",
    ),
    # The browser pages (clients/web); each signs in from the URL fragment or a code.
    Route("GET", "/", pages.attendee, "the attendee page: programme, player, chat, polls, Q&A"),
    Route("GET", "/stage/{stage}", pages.attendee, "the attendee page on one stage"),
    Route("GET", "/radio", pages.attendee, "the attendee page on the radio"),
    Route("GET", "/films", pages.attendee, "the attendee page in the film room"),
    Route("GET", "/session/{session}", pages.session, "an online workshop: lobby, camera, room"),
    Route("GET", "/network", pages.network, "networking: tables of six and roulette pairing"),
    Route("GET", "/moderate", pages.moderate, "the moderator console"),
    Route("GET", "/organise", pages.organise, "the organiser dashboard"),
    Route("GET", "/join", pages.join, "sign in with an invite code (from the link's fragment)"),
    Route("GET", "/hall", pages.join, "join from a hall's QR code (code in the fragment)"),
    Route("GET", "/static/{path:.+}", pages.static, "the pages' scripts, styles and images"),
)


def setup(app: web.Application) -> None:
    """Add every route of :data:`ROUTES` to ``app``."""
    app.on_response_prepare.append(whip.cors_on_errors)
    for route in ROUTES:
        if route.method == "GET":  # with HEAD, as aiohttp's add_get does
            app.router.add_get(route.path, route.handler)
        else:
            app.router.add_route(route.method, route.path, route.handler)
