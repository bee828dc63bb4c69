"""Chat rules for one topic: who may send, what is held back, what moderators change.

Pure: a :class:`ChatRoom` holds a topic's settings and sanctions; every decision takes
``now``. The gateway asks :meth:`ChatRoom.check_send` before a line is stored and
published, and applies moderator commands through the other methods.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from hybridcon.core.wordfilter import EMPTY_FILTER, WordFilter
from hybridcon.errors import Banned, Invalid, Muted, RateLimited

MAX_TEXT_LENGTH = 500
MAX_TIMEOUT = timedelta(hours=24)
MAX_SLOWMODE_SECONDS = 600


class Verdict(StrEnum):
    """What happens to a line that passed the hard checks."""

    PUBLISH = "publish"  # everyone in the topic sees it now
    HOLD = "hold"  # moderators see it in mod:<topic>; published only when approved


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :meth:`ChatRoom.check_send`."""

    verdict: Verdict
    text: str
    reason: str | None = None  # why it is held: "filter" or "first_message"
    matched: tuple[str, ...] = ()


# Letters and symbols that render as blank space (Hangul fillers, the braille blank, the
# Mongolian vowel separator): a line of only these reads as an empty line in every client.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")


def _visible(ch: str) -> bool:
    """Whether ``ch`` shows something by itself (not space, not a blank-looking letter,
    not a combining mark that needs a base)."""
    if ch.isspace() or ch in _BLANK:
        return False
    return not unicodedata.category(ch).startswith("M")


def clean_text(text: str, *, max_length: int = MAX_TEXT_LENGTH, what: str = "text") -> str:
    """Text as stored: plain text, normalised (NFC), control characters removed,
    surrounding white space trimmed. Used for chat lines, questions, poll texts.

    It is delivered as data in JSON, never as markup; clients must render it as text.

    Args:
        text: what was sent.
        max_length: the limit after cleaning.
        what: the field's name for messages ("text", "question", "an option label").

    Raises:
        Invalid: empty after cleaning, or longer than ``max_length`` characters.
    """
    normal = unicodedata.normalize("NFC", text)
    kept = "".join(
        ch for ch in normal if ch in "\n\t" or unicodedata.category(ch) not in {"Cc", "Cf", "Cs"}
    ).strip()
    if not kept:
        raise Invalid(f"{what} is empty")
    if not any(_visible(ch) for ch in kept):
        raise Invalid(f"{what} is empty: it has only characters that show nothing")
    if len(kept) > max_length:
        raise Invalid(f"{what} is longer than {max_length} characters")
    return kept


@dataclass
class ChatRoom:
    """One topic's chat settings and sanctions."""

    topic: str
    slowmode_seconds: int = 0
    hold_first: bool = False
    banned: set[str] = field(default_factory=set)
    muted_until: dict[str, datetime] = field(default_factory=dict)
    last_sent: dict[str, datetime] = field(default_factory=dict)
    trusted: set[str] = field(default_factory=set)  # people whose first line was approved

    def check_send(
        self,
        author: str,
        text: str,
        now: datetime,
        *,
        exempt: bool = False,
        word_filter: WordFilter = EMPTY_FILTER,
    ) -> Decision:
        """Decide on a line from ``author``.

        Args:
            author: the sender's id (token subject).
            text: the line as sent.
            now: the current time.
            exempt: moderators and organisers skip slow mode, holds and the filter.
            word_filter: the blocked words.

        Returns:
            Publish now, or hold for a moderator (with the reason).

        Raises:
            Invalid: empty or too long.
            Banned: the author is banned here.
            Muted: the author is timed out here (the message says until when).
            RateLimited: slow mode; ``retry_after`` says when the next line may go.
        """
        cleaned = clean_text(text)
        if exempt:
            return Decision(Verdict.PUBLISH, cleaned)
        if author in self.banned:
            raise Banned("you are banned from this chat")
        until = self.muted_until.get(author)
        if until is not None:
            if now < until:
                raise Muted(f"you are timed out in this chat until {until.isoformat()}")
            del self.muted_until[author]
        if self.slowmode_seconds:
            last = self.last_sent.get(author)
            if last is not None:
                wait = (last + timedelta(seconds=self.slowmode_seconds) - now).total_seconds()
                if wait > 0:
                    raise RateLimited(
                        f"slow mode: one message every {self.slowmode_seconds} s", retry_after=wait
                    )
        self.last_sent[author] = now
        hits = tuple(word_filter.matches(cleaned))
        if hits:
            return Decision(Verdict.HOLD, cleaned, reason="filter", matched=hits)
        if self.hold_first and author not in self.trusted:
            return Decision(Verdict.HOLD, cleaned, reason="first_message")
        return Decision(Verdict.PUBLISH, cleaned)

    def approve(self, author: str) -> None:
        """A moderator approved a held line from ``author``: their next lines go through."""
        self.trusted.add(author)

    def timeout(self, user: str, seconds: int, now: datetime) -> datetime:
        """Mute ``user`` for ``seconds``; returns until when.

        Raises:
            Invalid: ``seconds`` outside 1 s .. 24 h.
        """
        if not 1 <= seconds <= MAX_TIMEOUT.total_seconds():
            raise Invalid(f"seconds must be between 1 and {int(MAX_TIMEOUT.total_seconds())}")
        until = now + timedelta(seconds=seconds)
        self.muted_until[user] = until
        return until

    def ban(self, user: str) -> None:
        """Ban ``user`` from this topic's chat."""
        self.banned.add(user)
        self.trusted.discard(user)

    def unban(self, user: str) -> None:
        """Lift a ban and a timeout."""
        self.banned.discard(user)
        self.muted_until.pop(user, None)

    def set_slowmode(self, seconds: int) -> None:
        """One line per ``seconds`` per person (0 switches it off).

        Raises:
            Invalid: outside 0 .. 600 s.
        """
        if not 0 <= seconds <= MAX_SLOWMODE_SECONDS:
            raise Invalid(f"seconds must be between 0 and {MAX_SLOWMODE_SECONDS}")
        self.slowmode_seconds = seconds

    def settings(self) -> dict[str, object]:
        """The public settings (pushed as ``chat.settings``)."""
        return {"slowmode": self.slowmode_seconds, "hold_first": self.hold_first}
