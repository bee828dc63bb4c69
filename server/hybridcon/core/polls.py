"""Polls: definitions, answer validation and normalisation, and exact tallies.

Pure. One person (token ``sub``) has one vote per poll however many devices, reconnects
and retries: :meth:`Tally.apply` is idempotent for the same answer, replaces an answer
only when the poll allows changes, and keeps the counts equal to what the per-person
votes say (combined and split per origin: a stage, a session, or a hall).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from hybridcon.core.chat import clean_text
from hybridcon.errors import Closed, Conflict, Invalid, NotFound

MAX_OPTIONS = 20
MAX_LABEL = 120
MAX_QUESTION = 300
MAX_TOPICS = 20
MAX_WORDCLOUD_WORDS = 3
MAX_WORD_LENGTH = 40
MAX_OPEN_ANSWER = 280
TOP_WORDS = 50

# Words a wordcloud leaves out: they would crowd out what people mean.
_STOP_WORDS = """
    de het een en of van in op te met voor aan bij naar om uit over als dat die dit
    is zijn was ben bent wordt worden er ook niet geen wel maar dan nog zo al heel
    ik je jij u we wij ze zij hij mijn onze hun haar ons hen wat wie waar hoe
    the a an and or of in on to with for at by from as that this these those is are
    was were be been it its i you we they he she my our your their what who how not no
"""
STOP_WORDS = frozenset(_STOP_WORDS.split())


class PollKind(StrEnum):
    """What kind of answer a poll takes."""

    SINGLE = "single"  # one option id
    MULTI = "multi"  # a list of option ids
    SCALE = "scale"  # a whole number from 1 to scale_max (5 or 10)
    WORDCLOUD = "wordcloud"  # a short text; counted per normalised word
    OPEN = "open"  # a free text; the answers go to the moderators, who choose what to show


class Visibility(StrEnum):
    """When the audience sees results (moderators always do)."""

    LIVE = "live"
    AFTER_CLOSE = "after_close"
    NEVER = "never"


class PollState(StrEnum):
    """A poll's life: prepared, open for votes, closed."""

    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Option:
    """One choice of a single or multi poll."""

    id: str
    label: str


@dataclass(frozen=True, slots=True)
class PollSpec:
    """What a poll asks, where, and how its results are shown."""

    question: str
    kind: PollKind
    topics: tuple[str, ...]
    options: tuple[Option, ...] = ()
    scale_max: int = 5
    visibility: Visibility = Visibility.LIVE
    allow_change: bool = False
    opens_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        """The definition as clients see it."""
        data: dict[str, Any] = {
            "question": self.question,
            "kind": self.kind.value,
            "topics": list(self.topics),
            "options": [{"id": o.id, "label": o.label} for o in self.options],
            "visibility": self.visibility.value,
            "allow_change": self.allow_change,
        }
        if self.kind is PollKind.SCALE:
            data["scale_max"] = self.scale_max
        if self.opens_at is not None:
            data["opens_at"] = self.opens_at.isoformat()
        return data


def make_spec(
    *,
    question: str,
    kind: str,
    topics: Sequence[str],
    options: Sequence[str] = (),
    scale_max: int = 5,
    visibility: str = "live",
    allow_change: bool = False,
    opens_at: datetime | None = None,
) -> PollSpec:
    """A validated poll definition; option ids are ``a``, ``b``, ``c``, ... in order.

    Raises:
        Invalid: an empty or too long question or label, a kind or visibility that does
            not exist, options where none belong or too few where they do, a scale other
            than 5 or 10, no topics or repeated ones.
    """
    try:
        poll_kind = PollKind(kind)
    except ValueError:
        names = ", ".join(k.value for k in PollKind)
        raise Invalid(f"unknown poll kind {kind!r}; expected one of {names}") from None
    try:
        shown = Visibility(visibility)
    except ValueError:
        raise Invalid("visibility must be live, after_close or never") from None
    text = clean_text(question, max_length=MAX_QUESTION, what="question")
    if not topics:
        raise Invalid("a poll needs at least one topic")
    if len(topics) > MAX_TOPICS or len(set(topics)) != len(topics):
        raise Invalid(f"topics must be distinct, at most {MAX_TOPICS}")
    opts: tuple[Option, ...] = ()
    if poll_kind in {PollKind.SINGLE, PollKind.MULTI}:
        if not 2 <= len(options) <= MAX_OPTIONS:
            raise Invalid(f"a {poll_kind.value} poll needs 2 to {MAX_OPTIONS} options")
        labels = [clean_text(o, max_length=MAX_LABEL, what="an option label") for o in options]
        if len({label.casefold() for label in labels}) != len(labels):
            raise Invalid("option labels must differ")
        opts = tuple(Option(id=chr(ord("a") + i), label=label) for i, label in enumerate(labels))
    elif options:
        raise Invalid(f"a {poll_kind.value} poll takes no options")
    if poll_kind is PollKind.SCALE and scale_max not in (5, 10):
        raise Invalid("scale_max must be 5 or 10")
    return PollSpec(
        question=text,
        kind=poll_kind,
        topics=tuple(topics),
        options=opts,
        scale_max=scale_max,
        visibility=shown,
        allow_change=allow_change,
        opens_at=opens_at,
    )


_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*", re.UNICODE)


def _fold(word: str) -> str:
    # Phones type a typographic apostrophe; people mean the same word.
    decomposed = unicodedata.normalize("NFKD", word.casefold().replace("’", "'"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def wordcloud_words(text: str) -> tuple[str, ...]:
    """The words a wordcloud answer counts for: case and accents folded, stop-words out.

    Raises:
        Invalid: nothing left, more than three words, or a word over 40 characters.
    """
    # NFC first: decomposed accents (as some keyboards send them) would split words.
    found = [_fold(w) for w in _WORD.findall(unicodedata.normalize("NFC", text))]
    # Sorted: the same words in another order are the same answer.
    kept = tuple(sorted(dict.fromkeys(w for w in found if w not in STOP_WORDS)))
    if not kept:
        raise Invalid("the answer has no words to count (only stop-words or none)")
    if len(kept) > MAX_WORDCLOUD_WORDS:
        raise Invalid(f"a wordcloud answer has at most {MAX_WORDCLOUD_WORDS} words")
    if any(len(w) > MAX_WORD_LENGTH for w in kept):
        raise Invalid(f"a word is longer than {MAX_WORD_LENGTH} characters")
    return kept


Answer = str | int | tuple[str, ...]


def normalise_choice(spec: PollSpec, choice: object) -> Answer:
    """The canonical form of a vote's ``choice`` for this poll.

    single: an option id; multi: a sorted tuple of distinct option ids; scale: an int in
    1..scale_max; wordcloud: a tuple of counted words; open: the cleaned text.

    Raises:
        Invalid: a choice of the wrong type, an unknown option, a number out of range,
            text that is too long or empty.
    """
    ids = _option_ids(spec.options)
    if spec.kind is PollKind.SINGLE:
        if not isinstance(choice, str) or choice not in ids:
            raise Invalid(f"choice must be one of the option ids {sorted(ids)}")
        return choice
    if spec.kind is PollKind.MULTI:
        if not isinstance(choice, list) or not choice:
            raise Invalid("choice must be a non-empty list of option ids")
        if not all(isinstance(c, str) and c in ids for c in choice):
            raise Invalid(f"every choice must be one of the option ids {sorted(ids)}")
        return tuple(sorted(set(choice)))
    if spec.kind is PollKind.SCALE:
        if isinstance(choice, bool) or not isinstance(choice, int):
            raise Invalid(f"choice must be a whole number from 1 to {spec.scale_max}")
        if not 1 <= choice <= spec.scale_max:
            raise Invalid(f"choice must be from 1 to {spec.scale_max}")
        return choice
    if not isinstance(choice, str):
        raise Invalid("choice must be a text")
    if spec.kind is PollKind.WORDCLOUD:
        return wordcloud_words(choice)
    return clean_text(choice, max_length=MAX_OPEN_ANSWER, what="an answer")


@functools.lru_cache(maxsize=256)
def _option_ids(options: tuple[Option, ...]) -> frozenset[str]:
    # Once per poll, not once per vote (a set per vote was 4 % of a vote flood's CPU).
    return frozenset(o.id for o in options)


def counted_keys(spec: PollSpec, answer: Answer) -> tuple[str, ...]:
    """The result keys one answer adds one to."""
    if spec.kind is PollKind.MULTI:
        assert isinstance(answer, tuple)
        return answer
    if spec.kind is PollKind.WORDCLOUD:
        assert isinstance(answer, tuple)
        return answer
    if spec.kind is PollKind.OPEN:
        return ()  # open answers are listed on the wall, not counted per key
    return (str(answer),)


class Outcome(StrEnum):
    """What a vote did."""

    COUNTED = "counted"  # a first vote
    CHANGED = "changed"  # replaced this person's earlier answer
    UNCHANGED = "unchanged"  # the same answer again (a retry, a second device): no-op


@dataclass(frozen=True, slots=True)
class Ballot:
    """One person's current vote."""

    answer: Answer
    origin: str


@dataclass
class Tally:
    """Exact counts of one poll, combined and per origin, derived from one ballot per person."""

    spec: PollSpec
    state: PollState = PollState.DRAFT
    ballots: dict[str, Ballot] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    by_origin: dict[str, Counter[str]] = field(default_factory=dict)
    voters_by_origin: Counter[str] = field(default_factory=Counter)
    wall: list[str] = field(default_factory=list)  # voters whose open answers are shown

    def check(self, voter: str, answer: Answer) -> Outcome:
        """What :meth:`apply` would do, without doing it.

        Raises:
            Closed: the poll is not open.
            Conflict: this person already voted otherwise and the poll allows no change.
        """
        if self.state is not PollState.OPEN:
            raise Closed(
                "this poll is not open" if self.state is PollState.DRAFT else "this poll is closed"
            )
        old = self.ballots.get(voter)
        if old is None:
            return Outcome.COUNTED
        if old.answer == answer:
            return Outcome.UNCHANGED
        if not self.spec.allow_change:
            raise Conflict("you already voted in this poll; it does not allow changes")
        return Outcome.CHANGED

    def apply(self, voter: str, answer: Answer, origin: str) -> Outcome:
        """Count a vote (see :meth:`check` for the rules and errors)."""
        outcome = self.check(voter, answer)
        if outcome is Outcome.UNCHANGED:
            return outcome
        old = self.ballots.get(voter)
        if old is not None:
            self._count(old, -1)
            if voter in self.wall:  # a changed answer needs showing again
                self.wall.remove(voter)
        ballot = Ballot(answer=answer, origin=old.origin if old else origin)
        self.ballots[voter] = ballot
        self._count(ballot, +1)
        return outcome

    def put(self, voter: str, ballot: Ballot | None) -> None:
        """Set (or with ``None`` remove) one person's ballot directly, keeping the counts
        right: how a batch whose storage failed is taken back."""
        old = self.ballots.pop(voter, None)
        if old is not None:
            self._count(old, -1)
        if ballot is not None:
            self.ballots[voter] = ballot
            self._count(ballot, +1)

    def show(self, voter: str) -> str:
        """Put ``voter``'s open answer on the wall; returns its text.

        Raises:
            Invalid: not an open poll.
            NotFound: no answer from that person.
        """
        if self.spec.kind is not PollKind.OPEN:
            raise Invalid("only answers to an open poll are shown on the wall")
        ballot = self.ballots.get(voter)
        if ballot is None:
            raise NotFound("no such answer")
        if voter not in self.wall:
            self.wall.append(voter)
        return str(ballot.answer)

    def wall_texts(self) -> list[str]:
        """The shown open answers, in the order they were shown."""
        return [str(self.ballots[v].answer) for v in self.wall if v in self.ballots]

    def restore(
        self, ballots: Iterable[tuple[str, Answer, str]], shown: Iterable[str] = ()
    ) -> None:
        """Rebuild the counts (and the wall) from stored ballots (after a restart)."""
        self.wall = list(shown)
        self.ballots.clear()
        self.counts.clear()
        self.by_origin.clear()
        self.voters_by_origin.clear()
        for voter, answer, origin in ballots:
            ballot = Ballot(answer=answer, origin=origin)
            self.ballots[voter] = ballot
            self._count(ballot, +1)

    def _count(self, ballot: Ballot, delta: int) -> None:
        keys = counted_keys(self.spec, ballot.answer)
        split = self.by_origin.setdefault(ballot.origin, Counter())
        for key in keys:
            self.counts[key] += delta
            split[key] += delta
            if self.counts[key] <= 0:
                del self.counts[key]
            if split[key] <= 0:
                del split[key]
        self.voters_by_origin[ballot.origin] += delta
        if self.voters_by_origin[ballot.origin] <= 0:
            del self.voters_by_origin[ballot.origin]
            self.by_origin.pop(ballot.origin, None)

    @property
    def voters(self) -> int:
        """How many people voted."""
        return len(self.ballots)

    def results(self, *, split: bool = False) -> dict[str, Any]:
        """The results: ``counts`` per option id (or word, or scale value) and ``voters``.

        For a wordcloud only the 50 most frequent words are listed. With ``split``, the
        same per origin (for moderators: which stage, which hall).
        """
        data: dict[str, Any] = {"counts": self._shown(self.counts), "voters": self.voters}
        if self.spec.kind is PollKind.SCALE and self.voters:
            total = sum(int(k) * n for k, n in self.counts.items())
            data["mean"] = round(total / self.voters, 2)
        if self.spec.kind is PollKind.OPEN:
            # The audience sees only what a moderator put on the wall.
            data["wall"] = self.wall_texts()
        if split:
            data["by_origin"] = {
                origin: {"counts": self._shown(counts), "voters": self.voters_by_origin[origin]}
                for origin, counts in sorted(self.by_origin.items())
            }
        return data

    def _shown(self, counts: Mapping[str, int]) -> dict[str, int]:
        if self.spec.kind is PollKind.WORDCLOUD:
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_WORDS]
            return dict(top)
        if self.spec.kind is PollKind.SINGLE or self.spec.kind is PollKind.MULTI:
            return {o.id: counts.get(o.id, 0) for o in self.spec.options}
        if self.spec.kind is PollKind.SCALE:
            return {str(v): counts.get(str(v), 0) for v in range(1, self.spec.scale_max + 1)}
        return dict(counts)

    def audience_sees_results(self) -> bool:
        """Whether the audience may see results now."""
        if self.spec.visibility is Visibility.LIVE:
            return True
        return self.spec.visibility is Visibility.AFTER_CLOSE and self.state is PollState.CLOSED
