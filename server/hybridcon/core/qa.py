"""Q&A: questions, one upvote per person, the moderation queue, merges, ordering.

Pure. Questions start ``pending`` (seen by moderators only) unless the topic is not
moderated; ``approved`` questions are shown to everyone, ordered by upvotes and then by
recency; ``answered`` and ``dismissed`` leave the list; a ``merged`` question hands its
upvoters to the one it was merged into (the union: a person who upvoted both counts once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from hybridcon.core.chat import clean_text
from hybridcon.errors import Conflict, Forbidden, Invalid

MAX_QUESTION = 300


class QuestionState(StrEnum):
    """Where a question is in the moderation queue."""

    PENDING = "pending"
    APPROVED = "approved"
    ANSWERED = "answered"
    DISMISSED = "dismissed"
    MERGED = "merged"


OPEN_STATES = frozenset({QuestionState.PENDING, QuestionState.APPROVED})
# Which moderator actions are allowed from which state.
_MOVES: dict[str, tuple[frozenset[QuestionState], QuestionState]] = {
    "approve": (frozenset({QuestionState.PENDING}), QuestionState.APPROVED),
    "answer": (OPEN_STATES, QuestionState.ANSWERED),
    "dismiss": (OPEN_STATES, QuestionState.DISMISSED),
}


@dataclass(frozen=True, slots=True)
class QaSettings:
    """A topic's Q&A settings."""

    moderated: bool = True
    anonymous: bool = False  # whether people may ask without their name shown


@dataclass
class Question:
    """One question and who upvoted it."""

    question_id: str
    topic: str
    author_id: str
    author_name: str | None  # None when asked anonymously
    text: str
    origin: str
    created_at: datetime
    state: QuestionState = QuestionState.PENDING
    upvoters: set[str] = field(default_factory=set)
    merged_into: str | None = None

    @property
    def upvotes(self) -> int:
        """How many people upvoted it."""
        return len(self.upvoters)

    def public(self) -> dict[str, Any]:
        """The question as clients see it (the author's id only if not anonymous)."""
        return {
            "question_id": self.question_id,
            "topic": self.topic,
            "text": self.text,
            "author": (
                {"id": self.author_id, "name": self.author_name}
                if self.author_name is not None
                else None
            ),
            "upvotes": self.upvotes,
            "state": self.state.value,
            "origin": self.origin,
            "ts": self.created_at.isoformat(),
            **({"merged_into": self.merged_into} if self.merged_into else {}),
        }

    def update(self) -> dict[str, Any]:
        """The fields of a ``qa.updated`` push."""
        data: dict[str, Any] = {
            "question_id": self.question_id,
            "upvotes": self.upvotes,
            "state": self.state.value,
        }
        if self.merged_into:
            data["merged_into"] = self.merged_into
        return data


def new_question(
    *,
    question_id: str,
    topic: str,
    author_id: str,
    author_name: str,
    text: str,
    origin: str,
    anonymous: bool,
    settings: QaSettings,
    now: datetime,
) -> Question:
    """A question as asked.

    Raises:
        Invalid: empty or over 300 characters.
        Forbidden: anonymous asking is off in this topic.
    """
    cleaned = clean_text(text, max_length=MAX_QUESTION, what="a question")
    if anonymous and not settings.anonymous:
        raise Forbidden("anonymous questions are not allowed in this topic")
    return Question(
        question_id=question_id,
        topic=topic,
        author_id=author_id,
        author_name=None if anonymous else author_name,
        text=cleaned,
        origin=origin,
        created_at=now,
        state=QuestionState.PENDING if settings.moderated else QuestionState.APPROVED,
    )


def upvote(question: Question, voter: str) -> bool:
    """Add ``voter``'s upvote; returns False when they had already upvoted (no change).

    Raises:
        Conflict: the question is not open (answered, dismissed or merged).
    """
    if question.state not in OPEN_STATES:
        raise Conflict(f"this question is {question.state.value}")
    if voter in question.upvoters:
        return False
    question.upvoters.add(voter)
    return True


def moderate(question: Question, action: str) -> None:
    """Apply ``approve``, ``answer`` or ``dismiss``.

    Raises:
        Invalid: an unknown action.
        Conflict: the action does not apply to the question's state.
    """
    if action not in _MOVES:
        raise Invalid(f"unknown Q&A action {action!r}")
    allowed, target = _MOVES[action]
    if question.state not in allowed:
        raise Conflict(f"cannot {action} a question that is {question.state.value}")
    question.state = target


def merge(duplicate: Question, into: Question) -> None:
    """Merge ``duplicate`` into ``into``: its upvoters join, it leaves the list.

    Raises:
        Invalid: the same question, or different topics.
        Conflict: either question is no longer open.
    """
    if duplicate.question_id == into.question_id:
        raise Invalid("a question cannot be merged into itself")
    if duplicate.topic != into.topic:
        raise Invalid("only questions of the same topic can be merged")
    for question in (duplicate, into):
        if question.state not in OPEN_STATES:
            raise Conflict(f"question {question.question_id} is {question.state.value}")
    into.upvoters |= duplicate.upvoters
    duplicate.state = QuestionState.MERGED
    duplicate.merged_into = into.question_id


def ordered(questions: list[Question], *, include_pending: bool = False) -> list[Question]:
    """Open questions, most upvoted first, then the newest first."""
    states = OPEN_STATES if include_pending else frozenset({QuestionState.APPROVED})
    shown = [q for q in questions if q.state in states]
    return sorted(shown, key=lambda q: (-q.upvotes, -q.created_at.timestamp(), q.question_id))
