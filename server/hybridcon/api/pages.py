"""The browser pages: the HTML shells, their static files, and the headers that guard them.

The pages are plain ES modules under ``clients/web/`` (no build step). Every page
response carries a Content-Security-Policy without ``unsafe-inline`` scripts: the pages
load only their own modules, and people's text is inserted as text by those modules,
so an injected ``<script>`` would not run even if it reached the DOM.

Third-party browser libraries come from ``clients/web/node_modules`` (installed by
``make run`` / ``make test`` from the pinned ``package-lock.json``) and are served under
``/static/vendor/`` by an explicit allow-list, never the whole ``node_modules`` tree.
"""

from __future__ import annotations

import functools
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from hybridcon.core.programme import Online
from hybridcon.errors import NotFound
from hybridcon.services import SERVICES

# The source tree's clients/web (the service is installed editable from the repository).

# /static/vendor/<name> -> a file inside node_modules. Only what the pages import.
VENDOR = {
    "hls.mjs": Path("node_modules/hls.js/dist/hls.min.mjs"),
}

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}

# What /static/ serves of clients/web: these folders and top-level files, nothing else
# (not package.json, not node_modules, not the shells under another name).
STATIC_DIRS = frozenset({"js", "css"})
STATIC_FILES = frozenset({"messages.json", "icon.svg"})

# One shell for every page: it names the page's title key and its module, ``{page}``.
SHELL = "page.html"
PAGES = frozenset({"attendee", "moderate", "organise", "join", "workshop", "network"})


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


@functools.cache  # one base URL per server: the header is made once, not per response
def content_security_policy(base_url: str) -> str:
    """The CSP of every page.

    Scripts and styles only from this origin (no inline code, no ``eval``). Media and
    fetches may also go to ``base_url``'s origin, because the server writes HLS and WHEP
    URLs with its public address, which a person may reach under another name
    (``localhost`` against ``127.0.0.1``). hls.js feeds the video element from a
    ``blob:`` MediaSource; its worker is started from a ``blob:`` too.
    """
    origin = _origin(base_url)
    ws_origin = origin.replace("http", "ws", 1) if origin else ""
    extra = f" {origin}" if origin else ""
    ws_extra = f" {ws_origin}" if ws_origin else ""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"media-src 'self' blob:{extra}",
            f"connect-src 'self'{extra}{ws_extra}",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def _guard(response: web.StreamResponse, request: web.Request) -> web.StreamResponse:
    settings = request.app[SERVICES].settings
    response.headers["Content-Security-Policy"] = content_security_policy(settings.base_url())
    response.headers["X-Content-Type-Options"] = "nosniff"
    # The token travels in the fragment, which is never sent, but a page must not leak
    # even its path to a site it links to.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _file(request: web.Request, path: Path, *, cache: str) -> web.StreamResponse:
    if not path.is_file():
        raise NotFound("no such page file (run `make run`, which installs the pages)")
    response = web.FileResponse(
        path,
        headers={
            "Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
            "Cache-Control": cache,
        },
    )
    return _guard(response, request)


def _page(request: web.Request, page: str) -> web.StreamResponse:
    """The shell with ``page``'s title key and module (read per request: it is small,
    and an edited page shows at the next load)."""
    assert page in PAGES
    path = request.app[SERVICES].settings.web_root / SHELL
    if not path.is_file():
        raise NotFound("no such page file (run `make run`, which installs the pages)")
    html = path.read_text("utf-8").replace("{page}", page)
    response = web.Response(
        text=html,
        headers={"Content-Type": CONTENT_TYPES[".html"], "Cache-Control": "no-cache"},
    )
    return _guard(response, request)


async def attendee(request: web.Request) -> web.StreamResponse:
    """The attendee page (``/``, ``/stage/{id}``, ``/radio``, ``/films``)."""
    stage = request.match_info.get("stage")
    if stage is not None and stage not in {s.id for s in request.app[SERVICES].programme.stages}:
        raise NotFound(f"no stage {stage!r} in the programme")
    return _page(request, "attendee")


async def moderate(request: web.Request) -> web.StreamResponse:
    """The moderator console."""
    return _page(request, "moderate")


async def organise(request: web.Request) -> web.StreamResponse:
    """The organiser dashboard."""
    return _page(request, "organise")


async def join(request: web.Request) -> web.StreamResponse:
    """The sign-in page (``/join#code=…`` for invites, ``/hall#code=…`` for a hall)."""
    return _page(request, "join")


async def session(request: web.Request) -> web.StreamResponse:
    """An online workshop (``/session/{session}``): lobby, camera, the room, the host's
    controls.

    Raises:
        NotFound: no such session, or one that is not an online room (``online = "room"``).
    """
    session_id = request.match_info["session"]
    entry = request.app[SERVICES].programme.session(session_id)
    if entry is None or entry.online is not Online.ROOM:
        raise NotFound(f"no online workshop {session_id!r} in the programme")
    return _page(request, "workshop")


async def network(request: web.Request) -> web.StreamResponse:
    """Networking (``/network``): tables of up to six and roulette pairing."""
    return _page(request, "network")


async def static(request: web.Request) -> web.StreamResponse:
    """A file of ``clients/web`` (or an allow-listed vendor file).

    Raises:
        NotFound: no such file, a path outside the web root, or ``node_modules``.
    """
    web_root = request.app[SERVICES].settings.web_root
    rel = request.match_info["path"]
    if rel.startswith("vendor/"):
        vendored = VENDOR.get(rel.removeprefix("vendor/"))
        if vendored is None:
            raise NotFound("no such file")
        # Pinned by package-lock.json: a new version is a new deploy, so a day is safe.
        return _file(request, web_root / vendored, cache="public, max-age=86400")
    root = web_root.resolve()
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise NotFound("no such file")
    parts = path.relative_to(root).parts
    if not parts:
        raise NotFound("no such file")
    allowed = parts[0] in STATIC_DIRS if len(parts) > 1 else parts[0] in STATIC_FILES
    if not allowed or path.suffix not in CONTENT_TYPES or path.suffix == ".html":
        raise NotFound("no such file")
    # no-cache: the browser revalidates (ETag / Last-Modified), so a new deploy shows at
    # once, and an unchanged file costs a 304.
    return _file(request, path, cache="no-cache")
