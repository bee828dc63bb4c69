"""Live captions (WCAG 2.2 success criterion 1.2.4): cues typed for a stage, pushed to it.

A captioner (role ``captioner``, or a moderator or organiser) covering ``stage:<id>``
sends ``caption.send``; everyone subscribed to the stage gets a ``caption`` push, whatever
way they watch (HLS or WHEP: the cue travels beside the media, on the WebSocket). Each cue
is appended to the stage's cue file (``captions_dir``), from which each recording's
WebVTT is made (``api/recordings.py``). A subscribe snapshot of a stage carries its last
few cues, so a late joiner sees the current line.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from hybridcon.core.captions import Cue, clean_cue, cue_file
from hybridcon.core.tokens import STAFF_ROLES, Role
from hybridcon.errors import Forbidden, Invalid
from hybridcon.realtime.command import Capability, RawText, Request, Topic, command
from hybridcon.realtime.context import Context, Node

# The cues a snapshot carries: enough for the line on screen and the one before it.
SNAPSHOT_CUES = 3
CAPTION_ROLES = STAFF_ROLES | {Role.CAPTIONER}


class CaptionSend(Request):
    """One caption cue for a stage."""

    type: Literal["caption.send"]
    topic: Topic
    text: RawText


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


class Captions(Capability):
    """The last cues per stage topic, and the stage cue files."""

    pushes: ClassVar[Mapping[str, str]] = {
        "caption": "a captioner sent a cue for the stage",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self._recent: dict[str, deque[dict[str, Any]]] = {}
        # One writer at a time per node: cue lines must not interleave in a file.
        self._write_lock = asyncio.Lock()

    def snapshot(self, ctx: Context, topic: str, moderator: bool) -> dict[str, Any]:
        """``captions``: the stage's last cues, oldest first (stage topics only)."""
        if moderator or not topic.startswith("stage:"):
            return {}
        return {"captions": list(self._recent.get(topic, ()))}

    @command(CaptionSend, scope="topic")
    async def send(self, ctx: Context, request: CaptionSend) -> dict[str, Any]:
        """Store and push one cue.

        Raises:
            Invalid: not a stage topic, or empty or too long text.
            Forbidden: not a captioner, moderator or organiser.
        """
        if not request.topic.startswith("stage:"):
            raise Invalid("captions are for stages (stage:<id>)")
        if ctx.claims.role not in CAPTION_ROLES:
            raise Forbidden("only captioners, moderators and organisers may send captions")
        stage = request.topic.removeprefix("stage:")
        cue = Cue(
            cue_id=secrets.token_hex(8),
            stage=stage,
            text=clean_cue(request.text),
            ts=self._node.clock(),
        )
        path = cue_file(self._node.settings.captions_dir, stage)
        async with self._write_lock:
            await asyncio.to_thread(_append, path, cue.to_line())
        fields = {"cue_id": cue.cue_id, "text": cue.text, "ts": cue.ts.isoformat()}
        self._recent.setdefault(request.topic, deque(maxlen=SNAPSHOT_CUES)).append(fields)
        self._node.publish(request.topic, "caption", fields)
        return {"cue_id": cue.cue_id}
