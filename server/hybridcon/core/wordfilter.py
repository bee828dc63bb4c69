"""A word filter for chat, Dutch and English lists, matched on normalised words.

Normalising folds case and accents and undoes the commonest disguises (``3`` for
``e``, doubled letters), so ``Kl00tzak`` and ``KLOOTZAK`` match the same entry. A list
entry may be a single word (matched against whole words) or a phrase of several words
(matched as a run of whole words). Lists are plain text files, one entry a line, ``#``
for comments; reading them is the caller's job.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
_REPEAT = re.compile(r"(.)\1{2,}")


def normalise(text: str) -> str:
    """Lower case, no accents, common digit-for-letter swaps undone, runs of 3+ cut to 2."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _REPEAT.sub(r"\1\1", plain.translate(_LEET))


def words(text: str) -> list[str]:
    """The normalised words of ``text``."""
    return _WORD.findall(normalise(text))


@dataclass(frozen=True, slots=True)
class WordFilter:
    """Blocked single words and phrases (both normalised)."""

    single: frozenset[str]
    phrases: tuple[tuple[str, ...], ...]

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> WordFilter:
        """A filter from list lines (comments and blank lines skipped)."""
        single: set[str] = set()
        phrases: set[tuple[str, ...]] = set()
        for line in lines:
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            parts = tuple(words(entry))
            if len(parts) == 1:
                single.add(parts[0])
            elif parts:
                phrases.add(parts)
        return cls(single=frozenset(single), phrases=tuple(sorted(phrases)))

    def __len__(self) -> int:
        return len(self.single) + len(self.phrases)

    def matches(self, text: str) -> list[str]:
        """The list entries found in ``text`` (empty when it is clean)."""
        found = words(text)
        hits = [w for w in found if w in self.single]
        for phrase in self.phrases:
            n = len(phrase)
            if any(tuple(found[i : i + n]) == phrase for i in range(len(found) - n + 1)):
                hits.append(" ".join(phrase))
        return hits


EMPTY_FILTER = WordFilter(single=frozenset(), phrases=())
