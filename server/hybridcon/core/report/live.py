"""The organisers' live view (R21), from what PostgreSQL counted over the last minute.

Pure: :func:`live_view` takes the counts and the peaks seen so far and returns the view
and the new peaks. The same definitions as the report (R5, R6, R14, R18) over a sliding
window of :data:`WINDOW_SECONDS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

WINDOW_SECONDS: Final = 60  # viewers now, attentive, chat rate (R21)
ALERT_SECONDS: Final = 30  # how recent a stream_health must be to alert (R21)


@dataclass(frozen=True, slots=True)
class StageNow:
    """One stage over the last minute: people present (R5), attentive (R6), chat lines."""

    stage: str
    present: int
    attentive: int
    chat_lines: int


@dataclass(frozen=True, slots=True)
class PollNow:
    """An open poll: online and hall voters so far, attentive viewers when it opened (R14)."""

    poll_id: str
    question: str
    topics: tuple[str, ...]
    opened_at: datetime | None
    voters_online: int
    voters_hall: int
    attentive_at_open: int


@dataclass(frozen=True, slots=True)
class Alert:
    """A stage whose stream is interrupted, or whose last health check saw problems (R18)."""

    stage: str
    problems: tuple[str, ...]
    since: datetime


@dataclass(frozen=True, slots=True)
class LiveCounts:
    """What the database counted for the live view at ``now``."""

    now: datetime
    stages: Sequence[StageNow]
    polls: Sequence[PollNow]
    held_lines: int
    pending_questions: int
    alerts: Sequence[Alert]


def live_view(
    counts: LiveCounts, stages: Sequence[str], peaks: Mapping[str, tuple[int, datetime]]
) -> tuple[dict[str, Any], dict[str, tuple[int, datetime]]]:
    """The live view and the peaks after it.

    Args:
        counts: the latest counts.
        stages: every stage id of the programme (stages without viewers show zeros).
        peaks: per stage, the largest viewers-now seen before and when.

    Returns:
        The view as JSON-ready data, and the updated peaks.
    """
    by_stage = {s.stage: s for s in counts.stages}
    new_peaks = dict(peaks)
    rows = []
    for stage in stages:
        now = by_stage.get(stage, StageNow(stage, 0, 0, 0))
        best = new_peaks.get(stage)
        if now.present > 0 and (best is None or now.present > best[0]):
            new_peaks[stage] = best = (now.present, counts.now)
        rows.append(
            {
                "stage": stage,
                "viewers": now.present,
                "peak": best[0] if best else 0,
                "peak_at": best[1].isoformat() if best else None,
                "attentive_share": round(now.attentive / now.present, 3) if now.present else None,
                "chat_per_minute": now.chat_lines,
            }
        )
    polls = [
        {
            "poll_id": p.poll_id,
            "question": p.question,
            "topics": list(p.topics),
            "opened_at": p.opened_at.isoformat() if p.opened_at else None,
            "voters_online": p.voters_online,
            "voters_hall": p.voters_hall,
            "attentive_at_open": p.attentive_at_open,
            "participation": (
                round(p.voters_online / p.attentive_at_open, 3) if p.attentive_at_open else None
            ),
        }
        for p in counts.polls
    ]
    view = {
        "at": counts.now.isoformat(),
        "window_seconds": WINDOW_SECONDS,
        "stages": rows,
        "polls": polls,
        "backlog": {
            "held_lines": counts.held_lines,
            "pending_questions": counts.pending_questions,
        },
        "alerts": [
            {"stage": a.stage, "problems": list(a.problems), "since": a.since.isoformat()}
            for a in counts.alerts
        ],
    }
    return view, new_peaks
