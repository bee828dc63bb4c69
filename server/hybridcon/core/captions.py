"""Live captions: cues as stored, and WebVTT for a stretch of time (a recording).

A cue is one line of text a captioner (or a speech-to-text service) sends for a stage,
with the wall-clock time it was received. Cues are kept one JSON object per line, per
stage; a recording's WebVTT is made from the cues that fall within its time, with cue
times counted from the recording's start (W3C WebVTT, https://www.w3.org/TR/webvtt1/).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from hybridcon.core.chat import clean_text

MAX_CUE_LENGTH = 300
# How long a cue stays up when no next cue replaces it sooner, and at least.
CUE_LONGEST = timedelta(seconds=6)
CUE_SHORTEST = timedelta(seconds=1)


def cue_file(captions_dir: Path, stage: str) -> Path:
    """Where a stage's cues are kept: one JSON object a line, appended as they come."""
    return captions_dir / f"{stage}.jsonl"


@dataclass(frozen=True, slots=True)
class Cue:
    """One caption line for a stage."""

    cue_id: str
    stage: str
    text: str
    ts: datetime

    def to_line(self) -> str:
        """The cue as one JSON line (its storage form)."""
        return json.dumps(
            {
                "cue_id": self.cue_id,
                "stage": self.stage,
                "text": self.text,
                "ts": self.ts.isoformat(),
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_line(cls, line: str) -> Cue | None:
        """A stored cue, or None for a line that is not one (a torn last write)."""
        try:
            data = json.loads(line)
            return cls(
                cue_id=str(data["cue_id"]),
                stage=str(data["stage"]),
                text=str(data["text"]),
                ts=datetime.fromisoformat(data["ts"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def clean_cue(text: str) -> str:
    """Cue text as stored: chat's cleaning, at most 300 characters, on one line.

    Raises:
        Invalid: empty or too long after cleaning.
    """
    return " ".join(clean_text(text, max_length=MAX_CUE_LENGTH).split())


def _stamp(offset: timedelta) -> str:
    millis = max(0, int(offset.total_seconds() * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def _escape(text: str) -> str:
    # WebVTT cue text is markup-like: &, < and > must be escaped, and "-->" cannot appear.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webvtt(cues: Iterable[Cue], start: datetime, end: datetime) -> str:
    """The WebVTT file of the cues received from ``start`` up to ``end``.

    Each cue shows from its time until the next cue, at least 1 s and at most 6 s, and
    never past ``end``. Times are counted from ``start`` (the recording's first media).
    """
    inside = sorted((c for c in cues if start <= c.ts < end), key=lambda c: c.ts)
    lines = ["WEBVTT", ""]
    for i, cue in enumerate(inside):
        following = inside[i + 1].ts if i + 1 < len(inside) else end
        until = min(max(following, cue.ts + CUE_SHORTEST), cue.ts + CUE_LONGEST, end)
        lines += [
            cue.cue_id,
            f"{_stamp(cue.ts - start)} --> {_stamp(until - start)}",
            _escape(cue.text),
            "",
        ]
    return "\n".join(lines)
