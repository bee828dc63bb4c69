"""The chat word filter: normalisation and matching, and the shipped Dutch/English lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridcon.core.wordfilter import WordFilter, normalise, words

LISTS = Path(__file__).resolve().parents[2] / "config" / "wordfilter"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Kl00tZAK", "klootzak"), ("Café", "cafe"), ("shiiiiit", "shiit"), ("ÉÉN", "een")],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_words_split_on_anything_but_letters_and_digits() -> None:
    assert words("Hé, jij—daar!  Sociaal_werk") == ["he", "jij", "daar", "sociaal", "werk"]


def test_the_shipped_lists_load_and_catch_disguises() -> None:
    lines = []
    for name in ("nl.txt", "en.txt"):
        lines += (LISTS / name).read_text("utf-8").splitlines()
    wf = WordFilter.from_lines(lines)
    assert len(wf) > 30
    assert wf.matches("wat een K.L.O.O.T.Z.A.K") == []  # dotted out: a human moderator's job
    assert wf.matches("wat een KL00TZAK") == ["klootzak"]
    assert wf.matches("ROT OP") == ["rot op"]
    assert wf.matches("Goeiemorgen, sociaal werk doet ertoe!") == []
    # Words that contain a listed word are not hits (Scunthorpe).
    assert wf.matches("Scunthorpe, klassiek, assessment") == []


@given(st.text(max_size=200))
def test_matching_never_fails_on_any_text(text: str) -> None:
    WordFilter.from_lines(["klootzak", "rot op"]).matches(text)
