"""The film room's list of recordings, and the recordings themselves behind signed links.

``GET /api/v1/recordings`` lists the finished recordings (one Matroska file per publisher
session, see ``streams/stages.py``) of the stages the token covers, newest first, each
with a signed link ``/recordings/<stage>/<token>/<file>``. The link's token is the same
kind as an HLS link's (``core/urls.py``): it covers one stage's media and expires, so a
``<video>`` element can fetch it without an ``Authorization`` header. A recording
with live captions in its time also has ``captions_url``: the same name with ``.vtt``.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from hybridcon.api.auth import bearer_claims
from hybridcon.api.whip import STREAMS
from hybridcon.core.captions import Cue, cue_file, webvtt
from hybridcon.core.streams import StreamState
from hybridcon.core.urls import check_hls_token, hls_token
from hybridcon.errors import NotFound
from hybridcon.services import SERVICES

# <stage>-<YYYYmmddTHHMMSS>-<8 hex>.mkv, as the stage's recorder names its files; the
# same name with .vtt is the recording's captions, made from the stage's cue file.
_NAME = re.compile(r"^([a-z0-9][a-z0-9_-]{0,63})-(\d{8}T\d{6})-([0-9a-f]{8})\.(mkv|vtt)$")


def _started(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


def _ended(path: Path) -> datetime:
    # The recorder's last write is the recording's end (a finished file is never touched).
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


def _cues(captions_dir: Path, stage: str) -> list[Cue]:
    path = cue_file(captions_dir, stage)
    if not path.is_file():
        return []
    lines = path.read_text("utf-8").splitlines()
    return [cue for line in lines if (cue := Cue.from_line(line)) is not None]


async def list_recordings(request: web.Request) -> web.Response:
    """The finished recordings of the stages this token covers, newest first.

    A stage that is live now is recording into its newest file: that file is left out
    until the stream stops, as an unfinished Matroska file does not play to its end.
    """
    claims = bearer_claims(request)
    services = request.app[SERVICES]
    streams = request.app[STREAMS]
    settings = services.settings
    expires = services.clock() + settings.hls_url_ttl
    base = settings.base_url()
    found: list[dict[str, object]] = []
    for stage_id, stream in streams.stages.items():
        if not claims.may_subscribe(f"stage:{stage_id}"):
            continue
        folder = settings.recordings_dir / stage_id
        names = sorted(
            (p for p in folder.glob("*.mkv") if _NAME.match(p.name)), key=lambda p: p.name
        )
        if stream.state is StreamState.LIVE and names:
            names = names[:-1]
        token = hls_token(streams.hls_secret, stage_id, expires)
        cues = await asyncio.to_thread(_cues, settings.captions_dir, stage_id) if names else []
        for path in names:
            match = _NAME.match(path.name)
            assert match is not None
            started = _started(match.group(2))
            ended = _ended(path)
            captioned = any(started <= c.ts < ended for c in cues)
            link = f"{base}/recordings/{stage_id}/{token}/{path.name}"
            found.append(
                {
                    "stage": stage_id,
                    "title": stream.stage.title,
                    "file": path.name,
                    "started_at": started.isoformat(),
                    "bytes": path.stat().st_size,
                    "audio_only": stream.audio_only,
                    "url": link,
                    "captions_url": link.removesuffix(".mkv") + ".vtt" if captioned else None,
                }
            )
    found.sort(key=lambda r: (str(r["started_at"]), str(r["file"])), reverse=True)
    return web.json_response({"recordings": found}, headers={"Cache-Control": "no-store"})


async def recording_file(request: web.Request) -> web.StreamResponse:
    """One recording (Range requests served), or its captions as WebVTT (``.vtt``), if
    the path's token is valid for its stage.

    Raises:
        NotFound: not a streamed stage, not a recording's name, or no such file.
        Forbidden: the token is malformed, for another stage, or expired.
    """
    services = request.app[SERVICES]
    stage = request.match_info["stage"]
    streams = request.app[STREAMS]
    streams.get(stage)
    check_hls_token(streams.hls_secret, stage, request.match_info["token"], services.clock())
    name = request.match_info["file"]
    match = _NAME.match(name)
    if match is None or match.group(1) != stage:
        raise NotFound("no such recording")
    if match.group(4) == "vtt":
        video = services.settings.recordings_dir / stage / (name.removesuffix(".vtt") + ".mkv")
        if not video.is_file():
            raise NotFound("no such recording")
        cues = await asyncio.to_thread(_cues, services.settings.captions_dir, stage)
        text = webvtt(cues, _started(match.group(2)), _ended(video))
        return web.Response(
            text=text,
            content_type="text/vtt",
            charset="utf-8",
            headers={"Cache-Control": "private, no-cache"},
        )
    path = services.settings.recordings_dir / stage / name
    if not path.is_file():
        raise NotFound("no such recording")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "video/x-matroska",
            # A finished recording never changes.
            "Cache-Control": "private, max-age=86400, immutable",
        },
    )
