"""WHIP ingest (RFC 9725) and WHEP playback over HTTP, and the signed HLS files.

``POST /whip/{stage}`` takes an SDP offer with a broadcaster (or organiser) bearer
token for that stage and answers ``201 Created`` with the SDP answer, a ``Location``
for the session, an ``ETag`` and the ICE servers as ``Link: <...>; rel="ice-server"``.
``PATCH`` on the session takes trickled candidates (``application/trickle-ice-sdpfrag``,
204); an ICE restart (``If-Match: "*"`` with new credentials) is answered 422, as aiortc
cannot restart ICE. ``DELETE`` ends the session. ``OPTIONS`` answers CORS pre-flights.
WHEP (``/whep/{stage}``) is the same for viewers, capped per node; over the cap the
viewer gets 503 with the signed HLS URL to fall back to.

Several nodes: WHIP for a stage another node holds is refused (409 ``conflict``). WHEP on
a node without the stage's hub is redirected (307) to the holder's own URL
(``HYBRIDCON_NODE_URL``), as RFC 9725 section 4.5 and the WHEP draft let an endpoint do;
a holder with no URL of its own gets the viewer the same 503 with the HLS URL as a full
node. A session's ``Location`` is then absolute, on the node that holds it (the WHEP
draft: the resource URL is final; PATCH and DELETE are not redirected).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

from hybridcon.api.auth import bearer_claims
from hybridcon.core.engagement import actor_hash
from hybridcon.core.tokens import Claims, Role
from hybridcon.core.urls import check_hls_token, hls_url
from hybridcon.errors import Conflict, Forbidden, Invalid, TooLarge, Unavailable
from hybridcon.media.ice import peer_ice_servers
from hybridcon.services import SERVICES
from hybridcon.streams.stages import Elsewhere, Streams

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
MAX_SDP_BYTES = 64 * 1024
PUBLISHERS = frozenset({Role.BROADCASTER, Role.ORGANISER})
STREAMS = web.AppKey("streams", Streams)


def _cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Access-Control-Allow-Origin"] = request.app[
        SERVICES
    ].settings.cors_allow_origin
    response.headers["Access-Control-Expose-Headers"] = "Location, ETag, Link, Accept-Patch"
    return response


async def _body(request: web.Request, content_type: str) -> str:
    if request.content_type != content_type:
        raise web.HTTPUnsupportedMediaType(text=f"Content-Type must be {content_type}")
    if request.content_length and request.content_length > MAX_SDP_BYTES:
        raise TooLarge(f"the body is over {MAX_SDP_BYTES} bytes")
    data = await request.read()
    if len(data) > MAX_SDP_BYTES:
        raise TooLarge(f"the body is over {MAX_SDP_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the body is not UTF-8 text") from None


async def _offer(request: web.Request) -> str:
    """The request's SDP offer.

    aiortc's parser takes any text (lines it does not know are skipped), so "hello"
    would come back as "the offer has no audio or video". Every session description
    starts with its version line ``v=0`` (RFC 8866 section 5), so anything else is
    answered as what it is.

    Raises:
        Invalid: the body is not an SDP session description.
    """
    offer = await _body(request, SDP)
    if not offer.startswith("v=0"):
        raise Invalid("the offer is not valid SDP: it must start with the line v=0 (RFC 8866)")
    return offer


def ice_links(request: web.Request, claims: Claims | None) -> list[str]:
    """``Link: <url>; rel="ice-server"`` values (RFC 9725 section 4.6): the configured
    servers and, for a token holder (``claims``), the TURN URLs with credentials minted
    for them; without claims (a pre-flight) no credential goes out."""
    services = request.app[SERVICES]
    user = actor_hash(services.actor_key, claims.sub) if claims is not None else ""
    servers = peer_ice_servers(
        services.settings,
        services.turn_secret if claims is not None else None,
        services.clock(),
        user,
    )
    links = []
    for server in servers:
        for url in server["urls"]:
            link = f'<{url}>; rel="ice-server"'
            if claims is not None and server.get("username") and server.get("credential"):
                link += (
                    f'; username="{server["username"]}"; credential="{server["credential"]}"'
                    '; credential-type="password"'
                )
            links.append(link)
    return links


def _created(
    request: web.Request,
    claims: Claims,
    kind: str,
    session: str,
    answer: str,
    etag: str | None,
) -> web.StreamResponse:
    stage = request.match_info["stage"]
    response = web.Response(status=201, text=answer, content_type=SDP)
    # Absolute on a node with a URL of its own: PATCH and DELETE must reach this node.
    response.headers["Location"] = f"{request.app[STREAMS].own_url()}/{kind}/{stage}/{session}"
    response.headers["Accept-Patch"] = SDPFRAG
    if etag:
        response.headers["ETag"] = etag
    for link in ice_links(request, claims):
        response.headers.add("Link", link)
    return _cors(request, response)


async def options(request: web.Request) -> web.StreamResponse:
    """CORS pre-flight and what the endpoint accepts."""
    response = web.Response(status=204)
    response.headers["Accept-Post"] = SDP
    response.headers["Access-Control-Allow-Methods"] = "POST, PATCH, DELETE, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, If-Match"
    response.headers["Access-Control-Max-Age"] = "86400"
    # OPTIONS is unauthenticated: TURN credentials only go with a 201 to a token holder.
    for link in ice_links(request, None):
        response.headers.add("Link", link)
    return _cors(request, response)


async def whip_post(request: web.Request) -> web.StreamResponse:
    """A publisher's offer: broadcaster or organiser, scoped to the stage."""
    stage = request.match_info["stage"]
    claims = bearer_claims(request)
    if claims.role not in PUBLISHERS or not claims.covers(f"stage:{stage}"):
        raise Forbidden(f"publishing to stage {stage} needs a broadcaster token for it")
    offer = await _offer(request)
    takeover = request.query.get("takeover") == "1" and claims.role is Role.ORGANISER
    session, answer, etag = await request.app[STREAMS].publish(
        stage, offer, takeover=takeover, jti=claims.jti
    )
    return _created(request, claims, "whip", session, answer, etag)


async def whip_patch(request: web.Request) -> web.StreamResponse:
    """Trickle ICE: accepted and ignored (the answer carried every server candidate);
    an ICE restart is refused with 422 as aiortc cannot restart ICE."""
    stage = request.match_info["stage"]
    claims = bearer_claims(request)
    if claims.role not in PUBLISHERS or not claims.covers(f"stage:{stage}"):
        raise Forbidden(f"your token does not cover stage {stage}")
    stream = request.app[STREAMS].get(stage)
    if stream.publisher_session != request.match_info["session"]:
        raise web.HTTPNotFound(text="no such WHIP session")
    fragment = await _body(request, SDPFRAG)
    if_match = request.headers.get("If-Match")
    if if_match == "*" and "a=ice-ufrag:" in fragment:
        raise web.HTTPUnprocessableEntity(text="ICE restart is not supported; start a new session")
    if if_match and if_match != "*" and if_match != stream.publisher_etag:
        raise web.HTTPPreconditionFailed(text="the session's ETag does not match")
    return _cors(request, web.Response(status=204))


async def whip_delete(request: web.Request) -> web.StreamResponse:
    """The publisher ends the stream."""
    stage = request.match_info["stage"]
    claims = bearer_claims(request)
    if claims.role not in PUBLISHERS or not claims.covers(f"stage:{stage}"):
        raise Forbidden(f"ending stage {stage}'s stream needs a broadcaster token for it")
    await request.app[STREAMS].stop_publishing(stage, request.match_info["session"])
    return _cors(request, web.Response(status=200))


async def whep_post(request: web.Request) -> web.StreamResponse:
    """A viewer's offer: any token that covers the stage; capped per node."""
    stage = request.match_info["stage"]
    claims = bearer_claims(request)
    if not claims.covers(f"stage:{stage}"):
        raise Forbidden(f"your token does not cover stage {stage}")
    offer = await _offer(request)
    streams = request.app[STREAMS]
    try:
        session, answer = await streams.view(stage, offer)
    except Elsewhere as exc:
        if exc.url:
            return _redirect(request, f"{exc.url}/whep/{stage}")
        return _to_hls(
            request,
            Unavailable(
                "low-latency viewing of this stage is on another node that cannot be "
                "reached directly; watch over HLS"
            ),
        )
    except Unavailable as exc:
        return _to_hls(request, exc)
    return _created(request, claims, "whep", session, answer, None)


def _to_hls(request: web.Request, exc: Unavailable) -> web.StreamResponse:
    """503 with the signed HLS URL to watch instead."""
    services = request.app[SERVICES]
    stage = request.match_info["stage"]
    expires = services.clock() + services.settings.hls_url_ttl
    secret = request.app[STREAMS].hls_secret
    fallback = hls_url(services.settings.base_url(), secret, stage, expires)
    response = web.json_response(
        {"error": {"code": exc.code, "message": exc.message}, "hls_url": fallback},
        status=503,
        headers={"Retry-After": "60"},
    )
    return _cors(request, response)


def _redirect(request: web.Request, location: str) -> web.StreamResponse:
    """307 to the node that holds the stage (the method and body go along)."""
    if request.query_string:
        location += f"?{request.query_string}"
    response = web.Response(status=307, headers={"Location": location})
    return _cors(request, response)


async def whip_end(request: web.Request) -> web.StreamResponse:
    """An organiser ends a stage's stream (e.g. an interrupted one that will not return)."""
    stage = request.match_info["stage"]
    claims = bearer_claims(request)
    if claims.role is not Role.ORGANISER:
        raise Forbidden("ending a stage without its WHIP session needs an organiser token")
    try:
        await request.app[STREAMS].end(stage)
    except Elsewhere as exc:
        if exc.url:
            return _redirect(request, f"{exc.url}/whip/{stage}")
        raise Conflict(f"stage {stage} is live on another node; end it there") from None
    return _cors(request, web.Response(status=200))


def _viewer_access(request: web.Request) -> None:
    stage = request.match_info["stage"]
    if not bearer_claims(request).covers(f"stage:{stage}"):
        raise Forbidden(f"your token does not cover stage {stage}")


async def whep_delete(request: web.Request) -> web.StreamResponse:
    """The viewer leaves."""
    _viewer_access(request)
    await request.app[STREAMS].stop_viewing(
        request.match_info["stage"], request.match_info["session"]
    )
    return _cors(request, web.Response(status=200))


async def whep_patch(request: web.Request) -> web.StreamResponse:
    """Trickle ICE for a viewer: accepted (see :func:`whip_patch`)."""
    _viewer_access(request)
    stream = request.app[STREAMS].get(request.match_info["stage"])
    if request.match_info["session"] not in stream.viewers:
        raise web.HTTPNotFound(text="no such WHEP session")
    fragment = await _body(request, SDPFRAG)
    if request.headers.get("If-Match") == "*" and "a=ice-ufrag:" in fragment:
        raise web.HTTPUnprocessableEntity(text="ICE restart is not supported; start a new session")
    return _cors(request, web.Response(status=204))


_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".ts": "video/mp2t", ".aac": "audio/aac"}


async def hls_file(request: web.Request) -> web.StreamResponse:
    """A playlist or segment, if the path's token is valid for that stage and unexpired."""
    services = request.app[SERVICES]
    stage = request.match_info["stage"]
    streams = request.app[STREAMS]
    streams.get(stage)
    check_hls_token(streams.hls_secret, stage, request.match_info["token"], services.clock())
    name = request.match_info["file"]
    if "/" in name or name.startswith(".") or Path(name).suffix not in _TYPES:
        raise web.HTTPNotFound()
    path = services.settings.hls_dir / stage / name
    if not path.is_file():
        raise web.HTTPNotFound()
    response = web.FileResponse(path)
    response.content_type = (
        _TYPES.get(path.suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    )
    # Playlists change every segment; segments never change once written.
    response.headers["Cache-Control"] = (
        "no-cache" if path.suffix == ".m3u8" else "public, max-age=86400, immutable"
    )
    return _cors(request, response)


async def cors_on_errors(request: web.Request, response: web.StreamResponse) -> None:
    """Let a page on another origin read the errors of WHIP, WHEP and HLS requests."""
    # Errors come from the middleware, not from the handlers above; a page on another
    # origin must be able to read why its publish or play failed.
    if request.path.startswith(("/whip/", "/whep/", "/hls/")):
        response.headers.setdefault(
            "Access-Control-Allow-Origin", request.app[SERVICES].settings.cors_allow_origin
        )
        response.headers.setdefault(
            "Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch"
        )
