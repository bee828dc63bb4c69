"""What PostgreSQL computes for the report: small tables, never the log's rows.

:class:`Aggregates` is the one hand-over between ``store/report.py`` (SQL) and
:mod:`hybridcon.core.report.figures` (the definitions). It is also what ``hybridcon
purge`` keeps per day (R20), as JSON, so a report over a purged day runs from it and
gives the same figures. Its size depends on the programme and the day's length, not on
the number of rows in the log.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

# Bump when the shape changes: kept aggregates of another version are refused with a
# message rather than misread.
VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PersonGroup(_Model):
    """How many people of a unit share origin, attentive minutes and taking part (R7-R12)."""

    unit: str
    onsite: bool
    minutes: int
    took_part: bool
    people: int


class MinuteRow(_Model):
    """People present (R5) and attentive (R6) in one minute of a unit."""

    unit: str
    minute: datetime
    present: int
    attentive: int


class RetentionRow(_Model):
    """Of an item's cohort (R11): how many are attentive at ``offset`` minutes in."""

    unit: str
    offset: int
    people: int


class UnitCounts(_Model):
    """Event counts of a unit (R13, R15)."""

    unit: str
    chat_lines: int
    chatters: int
    questions: int


class ActionCount(_Model):
    """Moderation actions of one kind in a unit (R13)."""

    unit: str
    action: str
    count: int


class TimeCount(_Model):
    """Reactions on a stage in the 5 minutes from ``start`` (R13)."""

    unit: str
    start: datetime
    count: int


class PollResult(_Model):
    """People whose final ballot (from ``origin``: ``zaal`` or ``online``) holds ``choice``."""

    origin: str
    choice: str
    people: int


class PollRow(_Model):
    """One poll opened in the range (R14)."""

    poll_id: str
    opened_at: datetime
    topics: tuple[str, ...]
    question: str | None
    kind: str | None
    state: str | None
    attentive_at_open: int
    voters_online: int
    voters_hall: int
    results: tuple[PollResult, ...]


class QuestionRow(_Model):
    """A question with its distinct upvoters (R15); ``text`` only when shown on the wall."""

    question_id: str
    topic: str | None
    upvoters: int
    text: str | None


class TopicPeople(_Model):
    """Distinct people per topic (check-ins, R16) or pairs (hall votes, R17)."""

    topic: str
    people: int


class Incident(_Model):
    """A stream incident (R18) and the viewers it touched."""

    unit: str
    kind: str
    start: datetime
    end: datetime
    touched: int


class Aggregates(_Model):
    """Everything the report's figures are computed from, for ``[range_from, range_to)``.

    Attributes:
        version: the shape's version (:data:`VERSION`).
        events: rows of the log in the range.
        unknown_kinds: kinds in the range the report does not know, with their counts
            (ignored by every figure, named in the report).
        first_event, last_event: the range's first and last event.
    """

    version: int = VERSION
    range_from: datetime
    range_to: datetime
    events: int
    first_event: datetime | None
    last_event: datetime | None
    unknown_kinds: dict[str, int]
    people: tuple[PersonGroup, ...]
    minutes: tuple[MinuteRow, ...]
    retention: tuple[RetentionRow, ...]
    counts: tuple[UnitCounts, ...]
    moderation: tuple[ActionCount, ...]
    reactions: tuple[TimeCount, ...]
    polls: tuple[PollRow, ...]
    questions: tuple[QuestionRow, ...]
    checkins: tuple[TopicPeople, ...]
    hall_votes: tuple[TopicPeople, ...]
    incidents: tuple[Incident, ...]
