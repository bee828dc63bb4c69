"""Polls: definitions, answer normalisation, and exact tallies under retries and changes."""

from __future__ import annotations

import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridcon.core.polls import (
    MAX_LABEL,
    MAX_OPEN_ANSWER,
    MAX_OPTIONS,
    MAX_QUESTION,
    MAX_TOPICS,
    MAX_WORD_LENGTH,
    STOP_WORDS,
    TOP_WORDS,
    Answer,
    Ballot,
    Option,
    Outcome,
    PollKind,
    PollSpec,
    PollState,
    Tally,
    Visibility,
    make_spec,
    normalise_choice,
    wordcloud_words,
)
from hybridcon.errors import Closed, Conflict, Invalid, NotFound

OPENS = datetime(2022, 10, 6, 14, 30, tzinfo=UTC)
TOPICS = ("stage:plenary",)


def spec_of(kind: str, **kw: Any) -> PollSpec:
    """A valid spec of ``kind`` (three options for single and multi)."""
    if kind in ("single", "multi"):
        kw.setdefault("options", ["Ja", "Nee", "Weet niet"])
    return make_spec(question="Wat vindt u?", kind=kind, topics=list(TOPICS), **kw)


def open_tally(spec: PollSpec) -> Tally:
    return Tally(spec=spec, state=PollState.OPEN)


# --- make_spec ------------------------------------------------------------------------


def test_make_spec_single_with_every_field() -> None:
    spec = make_spec(
        question="  Welke sessie was het best?\u200b ",
        kind="single",
        topics=["stage:plenary", "hall:a"],
        options=[" Ochtend ", "Middag", "Avond"],
        visibility="after_close",
        allow_change=True,
        opens_at=OPENS,
    )
    assert spec == PollSpec(
        question="Welke sessie was het best?",
        kind=PollKind.SINGLE,
        topics=("stage:plenary", "hall:a"),
        options=(Option("a", "Ochtend"), Option("b", "Middag"), Option("c", "Avond")),
        scale_max=5,
        visibility=Visibility.AFTER_CLOSE,
        allow_change=True,
        opens_at=OPENS,
    )


def test_make_spec_defaults() -> None:
    spec = make_spec(question="Hoe?", kind="wordcloud", topics=["s:1"])
    assert spec.visibility is Visibility.LIVE
    assert spec.allow_change is False
    assert spec.opens_at is None
    assert spec.options == ()


def test_option_ids_are_letters_in_order_up_to_the_maximum() -> None:
    labels = [f"Optie {i}" for i in range(MAX_OPTIONS)]
    spec = make_spec(question="Q", kind="multi", topics=["t"], options=labels)
    assert [o.id for o in spec.options] == list(string.ascii_lowercase[:MAX_OPTIONS])
    assert [o.label for o in spec.options] == labels


@pytest.mark.parametrize("kind", ["ranking", "", "SINGLE", "Single"])
def test_make_spec_refuses_an_unknown_kind(kind: str) -> None:
    with pytest.raises(Invalid, match="unknown poll kind") as info:
        make_spec(question="Q", kind=kind, topics=["t"], options=["a", "b"])
    assert repr(kind) in info.value.message
    assert "single, multi, scale, wordcloud, open" in info.value.message


@pytest.mark.parametrize("visibility", ["always", "", "LIVE", "after-close"])
def test_make_spec_refuses_an_unknown_visibility(visibility: str) -> None:
    with pytest.raises(Invalid, match="visibility must be live, after_close or never"):
        make_spec(question="Q", kind="scale", topics=["t"], visibility=visibility)


@pytest.mark.parametrize("question", ["", "   ", "\u200b\u200b", "\x00\x07\n"])
def test_make_spec_refuses_an_empty_question(question: str) -> None:
    with pytest.raises(Invalid, match="empty"):
        make_spec(question=question, kind="scale", topics=["t"])


def test_make_spec_question_length_limit() -> None:
    ok = make_spec(question="x" * MAX_QUESTION, kind="scale", topics=["t"])
    assert len(ok.question) == MAX_QUESTION
    # White space around does not count against the limit.
    padded = make_spec(question="  " + "x" * MAX_QUESTION + "  ", kind="scale", topics=["t"])
    assert padded.question == "x" * MAX_QUESTION
    with pytest.raises(Invalid, match=f"question is longer than {MAX_QUESTION} characters"):
        make_spec(question="x" * (MAX_QUESTION + 1), kind="scale", topics=["t"])


def test_make_spec_very_long_question_names_the_question_limit() -> None:
    with pytest.raises(Invalid, match=f"question is longer than {MAX_QUESTION} characters"):
        make_spec(question="x" * 600, kind="scale", topics=["t"])


def test_make_spec_refuses_no_topics() -> None:
    with pytest.raises(Invalid, match="a poll needs at least one topic"):
        make_spec(question="Q", kind="scale", topics=[])


def test_make_spec_refuses_repeated_topics() -> None:
    with pytest.raises(Invalid, match=f"topics must be distinct, at most {MAX_TOPICS}"):
        make_spec(question="Q", kind="scale", topics=["hall:a", "stage:x", "hall:a"])


def test_make_spec_topic_count_limit() -> None:
    many = [f"hall:{i}" for i in range(MAX_TOPICS)]
    assert make_spec(question="Q", kind="scale", topics=many).topics == tuple(many)
    with pytest.raises(Invalid, match=f"topics must be distinct, at most {MAX_TOPICS}"):
        make_spec(question="Q", kind="scale", topics=[*many, "hall:extra"])


@pytest.mark.parametrize("kind", ["single", "multi"])
@pytest.mark.parametrize("count", [0, 1, MAX_OPTIONS + 1])
def test_make_spec_refuses_too_few_or_too_many_options(kind: str, count: int) -> None:
    labels = [f"Optie {i}" for i in range(count)]
    with pytest.raises(Invalid, match=f"a {kind} poll needs 2 to {MAX_OPTIONS} options"):
        make_spec(question="Q", kind=kind, topics=["t"], options=labels)


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_make_spec_accepts_two_options(kind: str) -> None:
    spec = make_spec(question="Q", kind=kind, topics=["t"], options=["Ja", "Nee"])
    assert spec.options == (Option("a", "Ja"), Option("b", "Nee"))


@pytest.mark.parametrize(
    "labels",
    [
        ["Ja", "ja"],
        ["Ja", "Nee", "JA"],
        [" Ja ", "ja"],  # cleaned before comparing
        ["Straße", "STRASSE"],  # casefold, not lower
        ["Cafe\u0301", "café"],  # NFC before comparing
    ],
)
def test_make_spec_refuses_duplicate_labels_ignoring_case(labels: list[str]) -> None:
    with pytest.raises(Invalid, match="option labels must differ"):
        make_spec(question="Q", kind="single", topics=["t"], options=labels)


def test_make_spec_label_length_limit() -> None:
    ok = make_spec(question="Q", kind="multi", topics=["t"], options=["x" * MAX_LABEL, "y"])
    assert ok.options[0].label == "x" * MAX_LABEL
    with pytest.raises(Invalid, match=f"an option label is longer than {MAX_LABEL} characters"):
        make_spec(question="Q", kind="multi", topics=["t"], options=["x" * (MAX_LABEL + 1), "y"])


def test_make_spec_refuses_an_empty_label() -> None:
    with pytest.raises(Invalid, match="empty"):
        make_spec(question="Q", kind="single", topics=["t"], options=["Ja", "  "])


@pytest.mark.parametrize("kind", ["scale", "wordcloud", "open"])
def test_make_spec_refuses_options_where_none_belong(kind: str) -> None:
    with pytest.raises(Invalid, match=f"a {kind} poll takes no options"):
        make_spec(question="Q", kind=kind, topics=["t"], options=["Ja", "Nee"])


@pytest.mark.parametrize("scale_max", [0, 1, 4, 6, 7, 9, 11, -5])
def test_make_spec_refuses_a_scale_other_than_5_or_10(scale_max: int) -> None:
    with pytest.raises(Invalid, match="scale_max must be 5 or 10"):
        make_spec(question="Q", kind="scale", topics=["t"], scale_max=scale_max)


@pytest.mark.parametrize("scale_max", [5, 10])
def test_make_spec_accepts_a_scale_of_5_or_10(scale_max: int) -> None:
    spec = make_spec(question="Q", kind="scale", topics=["t"], scale_max=scale_max)
    assert spec.kind is PollKind.SCALE
    assert spec.scale_max == scale_max


def test_public_single() -> None:
    spec = make_spec(
        question="Welke?",
        kind="single",
        topics=["stage:plenary", "hall:a"],
        options=["Ochtend", "Middag"],
        visibility="never",
        allow_change=True,
    )
    assert spec.public() == {
        "question": "Welke?",
        "kind": "single",
        "topics": ["stage:plenary", "hall:a"],
        "options": [{"id": "a", "label": "Ochtend"}, {"id": "b", "label": "Middag"}],
        "visibility": "never",
        "allow_change": True,
    }


def test_public_scale_has_scale_max_and_opens_at() -> None:
    spec = make_spec(question="Hoe?", kind="scale", topics=["t"], scale_max=10, opens_at=OPENS)
    assert spec.public() == {
        "question": "Hoe?",
        "kind": "scale",
        "topics": ["t"],
        "options": [],
        "visibility": "live",
        "allow_change": False,
        "scale_max": 10,
        "opens_at": "2022-10-06T14:30:00+00:00",
    }


@pytest.mark.parametrize("kind", ["single", "multi", "wordcloud", "open"])
def test_public_leaves_scale_max_out_for_other_kinds(kind: str) -> None:
    data = spec_of(kind).public()
    assert "scale_max" not in data
    assert "opens_at" not in data
    assert data["kind"] == kind


# --- normalise_choice -----------------------------------------------------------------


def test_single_choice() -> None:
    spec = spec_of("single")
    assert normalise_choice(spec, "b") == "b"


@pytest.mark.parametrize("choice", ["d", "A", "", ["a"], 0, None, True, {"id": "a"}])
def test_single_refuses_anything_but_one_known_id(choice: object) -> None:
    with pytest.raises(Invalid, match=r"choice must be one of the option ids \['a', 'b', 'c'\]"):
        normalise_choice(spec_of("single"), choice)


def test_multi_choice_collapses_duplicates_and_sorts() -> None:
    spec = spec_of("multi")
    assert normalise_choice(spec, ["c", "a", "c", "a"]) == ("a", "c")
    assert normalise_choice(spec, ["b"]) == ("b",)
    assert normalise_choice(spec, ["c", "b", "a"]) == ("a", "b", "c")


@pytest.mark.parametrize("choice", [[], "a", ("a",), None, {"a"}, 1])
def test_multi_refuses_anything_but_a_non_empty_list(choice: object) -> None:
    with pytest.raises(Invalid, match="choice must be a non-empty list of option ids"):
        normalise_choice(spec_of("multi"), choice)


@pytest.mark.parametrize("choice", [["a", "d"], ["a", 1], ["A"], [None], [["a"]]])
def test_multi_refuses_unknown_ids(choice: list[object]) -> None:
    with pytest.raises(
        Invalid, match=r"every choice must be one of the option ids \['a', 'b', 'c'\]"
    ):
        normalise_choice(spec_of("multi"), choice)


@pytest.mark.parametrize("scale_max", [5, 10])
def test_scale_accepts_every_whole_number_in_range(scale_max: int) -> None:
    spec = spec_of("scale", scale_max=scale_max)
    for value in range(1, scale_max + 1):
        answer = normalise_choice(spec, value)
        assert answer == value
        assert type(answer) is int


@pytest.mark.parametrize(("scale_max", "value"), [(5, 0), (5, 6), (5, -1), (10, 11), (10, 0)])
def test_scale_refuses_numbers_out_of_range(scale_max: int, value: int) -> None:
    with pytest.raises(Invalid, match=f"choice must be from 1 to {scale_max}"):
        normalise_choice(spec_of("scale", scale_max=scale_max), value)


@pytest.mark.parametrize("choice", [True, False, 3.0, 2.5, "3", None, [3]])
def test_scale_refuses_anything_but_an_int(choice: object) -> None:
    with pytest.raises(Invalid, match="choice must be a whole number from 1 to 5"):
        normalise_choice(spec_of("scale"), choice)


@pytest.mark.parametrize("kind", ["wordcloud", "open"])
@pytest.mark.parametrize("choice", [1, None, ["koffie"], ("koffie",), b"koffie"])
def test_text_kinds_refuse_non_text(kind: str, choice: object) -> None:
    with pytest.raises(Invalid, match="choice must be a text"):
        normalise_choice(spec_of(kind), choice)


def test_wordcloud_choice_is_its_counted_words() -> None:
    assert normalise_choice(spec_of("wordcloud"), "De Café is GEZELLIG") == ("cafe", "gezellig")


def test_open_answer_is_cleaned_text() -> None:
    spec = spec_of("open")
    assert normalise_choice(spec, "  Meer\u200b pauzes,\x07 graag! \n") == "Meer pauzes, graag!"
    assert normalise_choice(spec, "Cafe\u0301") == "Café"  # NFC


def test_open_answer_length_limit() -> None:
    spec = spec_of("open")
    assert normalise_choice(spec, "x" * MAX_OPEN_ANSWER) == "x" * MAX_OPEN_ANSWER
    with pytest.raises(Invalid, match=f"an answer is longer than {MAX_OPEN_ANSWER} characters"):
        normalise_choice(spec, "x" * (MAX_OPEN_ANSWER + 1))


@pytest.mark.parametrize("text", ["", "   ", "\u200b", "\x00"])
def test_open_answer_refuses_empty_text(text: str) -> None:
    with pytest.raises(Invalid, match="empty"):
        normalise_choice(spec_of("open"), text)


# --- wordcloud_words ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Café", ("cafe",)),
        ("CAFÉ", ("cafe",)),
        ("café Cafe CAFE", ("cafe",)),  # one answer counts a word once
        ("Straße", ("strasse",)),
        ("Naïef, ÉÉN, über", ("naief", "uber")),  # "één" folds to the stop-word "een"
        ("koffie, thee & water!", ("koffie", "thee", "water")),
        ("2022 was top", ("2022", "top")),
    ],
)
def test_wordcloud_folds_case_and_accents(text: str, expected: tuple[str, ...]) -> None:
    assert wordcloud_words(text) == expected


def test_wordcloud_drops_dutch_stop_words() -> None:
    assert wordcloud_words("De koffie is niet heel lekker") == ("koffie", "lekker")
    assert wordcloud_words("Het was een dag van verbinding") == ("dag", "verbinding")


def test_wordcloud_drops_english_stop_words() -> None:
    assert wordcloud_words("The coffee is great") == ("coffee", "great")
    assert wordcloud_words("THE Connection OF an idea") == ("connection", "idea")


def test_stop_words_are_folded_forms() -> None:
    # A stop-word typed in capitals is still a stop-word.
    assert "de" in STOP_WORDS and "the" in STOP_WORDS
    assert all(w == w.casefold() for w in STOP_WORDS)


@pytest.mark.parametrize("text", ["de het een", "The and OF", "!!! ... ???", "", "   ", "_ _"])
def test_wordcloud_refuses_only_stop_words_or_none(text: str) -> None:
    with pytest.raises(Invalid, match=r"no words to count \(only stop-words or none\)"):
        wordcloud_words(text)


def test_wordcloud_refuses_more_than_three_words() -> None:
    with pytest.raises(Invalid, match="a wordcloud answer has at most 3 words"):
        wordcloud_words("koffie thee water sap")


def test_wordcloud_counts_words_after_stop_words_and_repeats() -> None:
    # Six words typed, three counted: stop-words and repeats do not count to the limit.
    assert wordcloud_words("de koffie en het Thee een WATER koffie") == ("koffie", "thee", "water")


def test_wordcloud_keeps_apostrophes_and_hyphens_inside_words() -> None:
    assert wordcloud_words("auto's e-mail zo'n") == ("auto's", "e-mail", "zo'n")
    assert wordcloud_words("Sint-Maarten") == ("sint-maarten",)
    # ... but not at the edges of a word.
    assert wordcloud_words("'hallo' -wereld-") == ("hallo", "wereld")


def test_wordcloud_word_length_limit() -> None:
    assert wordcloud_words("x" * MAX_WORD_LENGTH) == ("x" * MAX_WORD_LENGTH,)
    with pytest.raises(Invalid, match=f"a word is longer than {MAX_WORD_LENGTH} characters"):
        wordcloud_words("koffie " + "x" * (MAX_WORD_LENGTH + 1))


def test_wordcloud_decomposed_accents_stay_one_word() -> None:
    assert wordcloud_words(unicodedata.normalize("NFD", "école")) == ("ecole",)
    assert wordcloud_words(unicodedata.normalize("NFD", "Naïef")) == ("naief",)


def test_wordcloud_typographic_apostrophe_counts_as_the_same_word() -> None:
    assert wordcloud_words("auto’s") == wordcloud_words("auto's")


# --- Tally: votes, retries, changes ---------------------------------------------------


@pytest.mark.parametrize(
    ("state", "message"),
    [(PollState.DRAFT, "this poll is not open"), (PollState.CLOSED, "this poll is closed")],
)
def test_a_poll_that_is_not_open_refuses_votes(state: PollState, message: str) -> None:
    tally = Tally(spec=spec_of("single"), state=state)
    with pytest.raises(Closed, match=message):
        tally.check("v1", "a")
    with pytest.raises(Closed, match=message):
        tally.apply("v1", "a", "stage:plenary")
    assert tally.voters == 0
    assert tally.results()["counts"] == {"a": 0, "b": 0, "c": 0}


def test_a_closed_poll_refuses_even_a_retry_of_the_same_vote() -> None:
    tally = open_tally(spec_of("single"))
    tally.apply("v1", "a", "stage:plenary")
    tally.state = PollState.CLOSED
    with pytest.raises(Closed, match="this poll is closed"):
        tally.apply("v1", "a", "stage:plenary")
    assert tally.results()["counts"] == {"a": 1, "b": 0, "c": 0}


def test_first_vote_is_counted_and_a_retry_is_unchanged() -> None:
    tally = open_tally(spec_of("single"))
    assert tally.apply("v1", "a", "stage:plenary") is Outcome.COUNTED
    assert tally.apply("v1", "a", "stage:plenary") is Outcome.UNCHANGED  # retry
    assert tally.apply("v1", "a", "hall:a") is Outcome.UNCHANGED  # second device elsewhere
    assert tally.voters == 1
    assert tally.ballots == {"v1": Ballot(answer="a", origin="stage:plenary")}
    assert tally.results(split=True) == {
        "counts": {"a": 1, "b": 0, "c": 0},
        "voters": 1,
        "by_origin": {"stage:plenary": {"counts": {"a": 1, "b": 0, "c": 0}, "voters": 1}},
    }


def test_a_different_answer_is_a_conflict_when_changes_are_not_allowed() -> None:
    tally = open_tally(spec_of("single", allow_change=False))
    tally.apply("v1", "a", "stage:plenary")
    with pytest.raises(Conflict, match="you already voted in this poll; it does not allow changes"):
        tally.check("v1", "b")
    with pytest.raises(Conflict, match="does not allow changes"):
        tally.apply("v1", "b", "stage:plenary")
    assert tally.ballots == {"v1": Ballot(answer="a", origin="stage:plenary")}
    assert tally.results()["counts"] == {"a": 1, "b": 0, "c": 0}


def test_a_different_answer_replaces_the_old_one_when_changes_are_allowed() -> None:
    tally = open_tally(spec_of("multi", allow_change=True))
    tally.apply("v1", ("a", "b"), "stage:plenary")
    tally.apply("v2", ("b",), "stage:plenary")
    assert tally.results()["counts"] == {"a": 1, "b": 2, "c": 0}
    assert tally.apply("v1", ("b", "c"), "stage:plenary") is Outcome.CHANGED
    # a moves down, b stays (old and new), c moves up; still two voters.
    assert tally.results() == {"counts": {"a": 0, "b": 2, "c": 1}, "voters": 2}
    assert tally.apply("v1", ("b", "c"), "stage:plenary") is Outcome.UNCHANGED


def test_a_changed_vote_keeps_the_first_origin() -> None:
    # One person is counted in one place: the change moves the answer, not the person.
    tally = open_tally(spec_of("single", allow_change=True))
    tally.apply("v1", "a", "hall:a")
    tally.apply("v2", "a", "stage:plenary")
    assert tally.apply("v1", "c", "stage:plenary") is Outcome.CHANGED
    assert tally.ballots["v1"] == Ballot(answer="c", origin="hall:a")
    assert tally.results(split=True)["by_origin"] == {
        "hall:a": {"counts": {"a": 0, "b": 0, "c": 1}, "voters": 1},
        "stage:plenary": {"counts": {"a": 1, "b": 0, "c": 0}, "voters": 1},
    }


def test_check_says_what_apply_would_do_without_doing_it() -> None:
    tally = open_tally(spec_of("scale", allow_change=True))
    assert tally.check("v1", 3) is Outcome.COUNTED
    assert tally.voters == 0
    tally.apply("v1", 3, "hall:a")
    assert tally.check("v1", 3) is Outcome.UNCHANGED
    assert tally.check("v1", 4) is Outcome.CHANGED
    assert tally.ballots["v1"].answer == 3
    assert tally.results()["counts"]["3"] == 1


def test_changing_back_and_forth_leaves_no_stale_entries() -> None:
    tally = open_tally(spec_of("wordcloud", allow_change=True))
    tally.apply("v1", ("koffie", "thee"), "hall:a")
    tally.apply("v1", ("water",), "hall:a")
    assert tally.counts == Counter({"water": 1})
    assert tally.results() == {"counts": {"water": 1}, "voters": 1}
    tally.apply("v1", ("koffie",), "hall:a")
    assert tally.counts == Counter({"koffie": 1})
    assert dict(tally.by_origin) == {"hall:a": Counter({"koffie": 1})}
    assert tally.voters_by_origin == Counter({"hall:a": 1})


# --- Tally: results -------------------------------------------------------------------


def test_results_single_list_every_option_with_zeros() -> None:
    tally = open_tally(spec_of("single"))
    assert tally.results() == {"counts": {"a": 0, "b": 0, "c": 0}, "voters": 0}
    tally.apply("v1", "c", "hall:a")
    tally.apply("v2", "c", "hall:a")
    tally.apply("v3", "a", "hall:a")
    result = tally.results()
    assert result == {"counts": {"a": 1, "b": 0, "c": 2}, "voters": 3}
    assert list(result["counts"]) == ["a", "b", "c"]  # in option order
    assert "mean" not in result


def test_results_multi_counts_each_chosen_option() -> None:
    tally = open_tally(spec_of("multi"))
    tally.apply("v1", ("a", "c"), "hall:a")
    tally.apply("v2", ("a",), "hall:a")
    assert tally.results() == {"counts": {"a": 2, "b": 0, "c": 1}, "voters": 2}


@pytest.mark.parametrize("scale_max", [5, 10])
def test_results_scale_lists_every_value_and_the_mean(scale_max: int) -> None:
    tally = open_tally(spec_of("scale", scale_max=scale_max))
    empty = tally.results()
    assert empty == {"counts": {str(v): 0 for v in range(1, scale_max + 1)}, "voters": 0}
    assert "mean" not in empty  # no division by zero
    for voter, value in (("v1", 1), ("v2", 2), ("v3", 2)):
        tally.apply(voter, value, "hall:a")
    result = tally.results()
    assert list(result["counts"]) == [str(v) for v in range(1, scale_max + 1)]
    assert result["counts"]["1"] == 1
    assert result["counts"]["2"] == 2
    assert sum(result["counts"].values()) == 3
    assert result["mean"] == 1.67  # 5 / 3, two decimals
    assert result["voters"] == 3


def test_results_scale_mean_follows_changes() -> None:
    tally = open_tally(spec_of("scale", allow_change=True))
    tally.apply("v1", 5, "hall:a")
    tally.apply("v2", 4, "hall:a")
    assert tally.results()["mean"] == 4.5
    tally.apply("v1", 1, "hall:a")
    assert tally.results()["mean"] == 2.5


def test_results_wordcloud_top_words_by_count_then_word() -> None:
    tally = open_tally(spec_of("wordcloud"))
    # 60 distinct words: w00 gets 60 votes... w59 gets 1; plus ties at the boundary.
    words = [f"w{i:02d}" for i in range(60)]
    voter = 0
    for rank, word in enumerate(words):
        for _ in range(len(words) - rank):
            tally.apply(f"v{voter}", (word,), "hall:a")
            voter += 1
    tally.apply("x1", ("zeta",), "hall:a")
    tally.apply("x2", ("alpha",), "hall:a")
    counts = tally.results()["counts"]
    assert len(counts) == TOP_WORDS
    assert list(counts) == words[:TOP_WORDS]
    assert counts["w00"] == 60
    assert counts["w49"] == 11


def test_results_wordcloud_ties_are_broken_alphabetically() -> None:
    tally = open_tally(spec_of("wordcloud"))
    tally.apply("v1", ("thee", "koffie"), "hall:a")
    tally.apply("v2", ("water", "thee"), "hall:a")
    tally.apply("v3", ("appel",), "hall:a")
    counts = tally.results()["counts"]
    assert list(counts.items()) == [("thee", 2), ("appel", 1), ("koffie", 1), ("water", 1)]


def test_results_wordcloud_cuts_ties_at_the_boundary_alphabetically() -> None:
    tally = open_tally(spec_of("wordcloud"))
    words = sorted(f"woord{i:03d}" for i in range(TOP_WORDS + 10))
    for i, word in enumerate(reversed(words)):
        tally.apply(f"v{i}", (word,), "hall:a")
    assert list(tally.results()["counts"]) == words[:TOP_WORDS]


def test_results_open_show_only_the_wall_and_a_change_leaves_it() -> None:
    tally = open_tally(spec_of("open", allow_change=True))
    tally.apply("v1", "Meer pauzes", "hall:a")
    tally.apply("v2", "Meer koffie", "stage:plenary")
    # Nothing is shown until a moderator puts an answer on the wall (the moderators'
    # list of all answers is built by the gateway, which knows how to name answers).
    assert tally.results() == {"counts": {}, "voters": 2, "wall": []}
    assert tally.show("v2") == "Meer koffie"
    assert tally.show("v1") == "Meer pauzes"
    assert tally.results()["wall"] == ["Meer koffie", "Meer pauzes"]
    tally.apply("v1", "Langere pauzes", "stage:plenary")
    assert tally.results(split=True) == {
        "counts": {},
        "voters": 2,
        "wall": ["Meer koffie"],
        "by_origin": {
            "hall:a": {"counts": {}, "voters": 1},
            "stage:plenary": {"counts": {}, "voters": 1},
        },
    }
    with pytest.raises(NotFound):
        tally.show("nobody")


@pytest.mark.parametrize("kind", ["single", "multi", "scale", "wordcloud"])
def test_results_of_counted_kinds_have_no_answers_list(kind: str) -> None:
    tally = open_tally(spec_of(kind))
    tally.apply(
        "v1",
        normalise_choice(
            tally.spec, {"single": "a", "multi": ["a"], "scale": 3, "wordcloud": "koffie"}[kind]
        ),
        "hall:a",
    )
    assert "answers" not in tally.results(split=True)


def test_results_split_per_origin_with_voters() -> None:
    tally = open_tally(spec_of("single"))
    tally.apply("v1", "a", "stage:plenary")
    tally.apply("v2", "b", "hall:b")
    tally.apply("v3", "a", "hall:a")
    tally.apply("v4", "a", "hall:b")
    result = tally.results(split=True)
    assert result == {
        "counts": {"a": 3, "b": 1, "c": 0},
        "voters": 4,
        "by_origin": {
            "hall:a": {"counts": {"a": 1, "b": 0, "c": 0}, "voters": 1},
            "hall:b": {"counts": {"a": 1, "b": 1, "c": 0}, "voters": 2},
            "stage:plenary": {"counts": {"a": 1, "b": 0, "c": 0}, "voters": 1},
        },
    }
    assert list(result["by_origin"]) == ["hall:a", "hall:b", "stage:plenary"]
    assert "by_origin" not in tally.results()


def test_results_split_scale_has_every_value_per_origin() -> None:
    tally = open_tally(spec_of("scale"))
    tally.apply("v1", 4, "hall:a")
    tally.apply("v2", 2, "hall:b")
    by_origin = tally.results(split=True)["by_origin"]
    assert by_origin["hall:a"]["counts"] == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 0}
    assert by_origin["hall:b"]["counts"] == {"1": 0, "2": 1, "3": 0, "4": 0, "5": 0}
    assert "mean" not in by_origin["hall:a"]  # the mean is for the whole poll only
    assert tally.results()["mean"] == 3.0


def test_restore_rebuilds_identical_results() -> None:
    tally = open_tally(spec_of("multi", allow_change=True))
    tally.apply("v1", ("a", "b"), "hall:a")
    tally.apply("v2", ("c",), "stage:plenary")
    tally.apply("v1", ("b",), "stage:plenary")  # a change: origin stays hall:a
    tally.apply("v3", ("a", "b", "c"), "hall:b")
    stored = [(v, b.answer, b.origin) for v, b in tally.ballots.items()]
    again = Tally(spec=tally.spec, state=PollState.CLOSED)
    again.restore(reversed(stored))
    assert again.ballots == tally.ballots
    assert again.results(split=True) == tally.results(split=True)


def test_restore_replaces_whatever_was_there() -> None:
    tally = open_tally(spec_of("single"))
    tally.apply("v1", "a", "hall:a")
    tally.apply("v2", "b", "hall:b")
    tally.restore([("v9", "c", "hall:c")])
    assert tally.ballots == {"v9": Ballot(answer="c", origin="hall:c")}
    assert tally.results(split=True) == {
        "counts": {"a": 0, "b": 0, "c": 1},
        "voters": 1,
        "by_origin": {"hall:c": {"counts": {"a": 0, "b": 0, "c": 1}, "voters": 1}},
    }
    tally.restore([])
    assert tally.results(split=True) == {
        "counts": {"a": 0, "b": 0, "c": 0},
        "voters": 0,
        "by_origin": {},
    }


def test_a_restored_ballot_is_a_vote_like_any_other() -> None:
    tally = open_tally(spec_of("single", allow_change=False))
    tally.restore([("v1", "a", "hall:a")])
    assert tally.apply("v1", "a", "hall:b") is Outcome.UNCHANGED
    with pytest.raises(Conflict):
        tally.apply("v1", "b", "hall:a")


def test_put_sets_and_removes_a_ballot_keeping_counts_right() -> None:
    tally = open_tally(spec_of("multi", allow_change=True))
    tally.apply("v1", ("a", "b"), "hall:a")
    tally.apply("v2", ("b",), "hall:b")
    before = tally.results(split=True)
    # A new vote whose storage failed is taken back by removing it.
    tally.apply("v3", ("c",), "hall:c")
    tally.put("v3", None)
    assert tally.results(split=True) == before
    assert "v3" not in tally.ballots
    # A change whose storage failed is taken back by putting the old ballot back.
    old = tally.ballots["v1"]
    tally.apply("v1", ("c",), "hall:b")
    tally.put("v1", old)
    assert tally.results(split=True) == before
    assert tally.ballots["v1"] == Ballot(answer=("a", "b"), origin="hall:a")
    assert_consistent(tally)


def test_put_none_for_someone_without_a_ballot_is_a_no_op() -> None:
    tally = open_tally(spec_of("single"))
    tally.apply("v1", "a", "hall:a")
    before = tally.results(split=True)
    tally.put("nobody", None)
    assert tally.results(split=True) == before


def test_put_works_whatever_the_state() -> None:
    # Taking back a batch must work even if the poll closed meanwhile.
    tally = open_tally(spec_of("single"))
    tally.apply("v1", "a", "hall:a")
    tally.state = PollState.CLOSED
    tally.put("v1", None)
    assert tally.results(split=True) == {
        "counts": {"a": 0, "b": 0, "c": 0},
        "voters": 0,
        "by_origin": {},
    }


@pytest.mark.parametrize(
    ("visibility", "state", "sees"),
    [
        (Visibility.LIVE, PollState.DRAFT, True),
        (Visibility.LIVE, PollState.OPEN, True),
        (Visibility.LIVE, PollState.CLOSED, True),
        (Visibility.AFTER_CLOSE, PollState.DRAFT, False),
        (Visibility.AFTER_CLOSE, PollState.OPEN, False),
        (Visibility.AFTER_CLOSE, PollState.CLOSED, True),
        (Visibility.NEVER, PollState.DRAFT, False),
        (Visibility.NEVER, PollState.OPEN, False),
        (Visibility.NEVER, PollState.CLOSED, False),
    ],
)
def test_audience_sees_results(visibility: Visibility, state: PollState, sees: bool) -> None:
    tally = Tally(spec=spec_of("single", visibility=visibility.value), state=state)
    assert tally.audience_sees_results() is sees


# --- property: any interleaving gives the exact tally ---------------------------------

OPTION_IDS = ("a", "b", "c")
VOTERS = tuple(f"v{i}" for i in range(6))
ORIGINS = ("stage:plenary", "hall:a", "session:s1")
# Words typed, and what the wordcloud counts them as (None: a stop-word).
TYPED_WORDS = {
    "koffie": "koffie",
    "Koffie": "koffie",
    "KOFFIE": "koffie",
    "thee": "thee",
    "Café": "cafe",
    "cafe": "cafe",
    "Naïef": "naief",
    "auto's": "auto's",
    "de": None,
    "The": None,
    "een": None,
}
CONTENT_WORDS = sorted(w for w, folded in TYPED_WORDS.items() if folded is not None)
STOP = sorted(w for w, folded in TYPED_WORDS.items() if folded is None)

KIND_PARAMS: dict[str, dict[str, Any]] = {
    "single": {"kind": "single", "options": ["Ja", "Nee", "Misschien"]},
    "multi": {"kind": "multi", "options": ["Ja", "Nee", "Misschien"]},
    "scale5": {"kind": "scale", "scale_max": 5},
    "scale10": {"kind": "scale", "scale_max": 10},
    "wordcloud": {"kind": "wordcloud"},
}

# (voter, raw choice as sent, the answer it should normalise to, origin)
Event = tuple[str, object, Answer, str]


@st.composite
def raw_and_expected(draw: st.DrawFn, spec: PollSpec) -> tuple[object, Answer]:
    """A choice as a client sends it, and its canonical form (computed here, not by polls)."""
    if spec.kind is PollKind.SINGLE:
        choice = draw(st.sampled_from(OPTION_IDS))
        return choice, choice
    if spec.kind is PollKind.MULTI:
        picked = draw(st.lists(st.sampled_from(OPTION_IDS), min_size=1, max_size=5))
        return list(picked), tuple(sorted(set(picked)))
    if spec.kind is PollKind.SCALE:
        value = draw(st.integers(min_value=1, max_value=spec.scale_max))
        return value, value
    typed = draw(st.lists(st.sampled_from(CONTENT_WORDS), min_size=1, max_size=3))
    typed += draw(st.lists(st.sampled_from(STOP), max_size=2))
    typed = draw(st.permutations(typed))
    folded = [TYPED_WORDS[w] for w in typed]
    expected = tuple(sorted(dict.fromkeys(w for w in folded if w is not None)))
    return " ".join(typed), expected


@st.composite
def scenarios(draw: st.DrawFn, *, distinct_voters: bool = False) -> tuple[PollSpec, list[Event]]:
    name = draw(st.sampled_from(sorted(KIND_PARAMS)))
    allow_change = draw(st.booleans())
    spec = make_spec(
        question="Q", topics=list(ORIGINS), allow_change=allow_change, **KIND_PARAMS[name]
    )
    if distinct_voters:
        voters = draw(st.lists(st.sampled_from(VOTERS), unique=True, max_size=len(VOTERS)))
    else:
        voters = draw(st.lists(st.sampled_from(VOTERS), max_size=30))
    events: list[Event] = []
    for voter in voters:
        raw, expected = draw(raw_and_expected(spec))
        events.append((voter, raw, expected, draw(st.sampled_from(ORIGINS))))
    # Sprinkle exact duplicates (retries) in at random places.
    for _ in range(draw(st.integers(min_value=0, max_value=len(events) // 2))):
        if distinct_voters or not events:
            break
        event = events[draw(st.integers(min_value=0, max_value=len(events) - 1))]
        events.insert(draw(st.integers(min_value=0, max_value=len(events))), event)
    return spec, events


def keys_of(spec: PollSpec, answer: Answer) -> tuple[str, ...]:
    if isinstance(answer, tuple):
        return answer
    return (str(answer),)


def shown(spec: PollSpec, counts: Counter[str]) -> dict[str, int]:
    if spec.kind is PollKind.SCALE:
        return {str(v): counts[str(v)] for v in range(1, spec.scale_max + 1)}
    if spec.kind is PollKind.WORDCLOUD:
        return {w: n for w, n in counts.items() if n > 0}  # fewer than 50 words here
    return {o: counts[o] for o in OPTION_IDS}


def expected_results(spec: PollSpec, events: Sequence[Event]) -> dict[str, Any]:
    """The ground truth, straight from the events: first or last answer, first origin."""
    final: dict[str, Answer] = {}
    first_origin: dict[str, str] = {}
    for voter, _raw, answer, origin in events:
        first_origin.setdefault(voter, origin)
        if spec.allow_change:
            final[voter] = answer  # the last answer counts
        else:
            final.setdefault(voter, answer)  # the first answer counts
    counts: Counter[str] = Counter()
    per_origin: dict[str, Counter[str]] = {}
    voters_per_origin: Counter[str] = Counter()
    for voter, answer in final.items():
        origin = first_origin[voter]
        counts.update(keys_of(spec, answer))
        per_origin.setdefault(origin, Counter()).update(keys_of(spec, answer))
        voters_per_origin[origin] += 1
    data: dict[str, Any] = {"counts": shown(spec, counts), "voters": len(final)}
    if spec.kind is PollKind.SCALE and final:
        values = [a for a in final.values() if isinstance(a, int)]
        data["mean"] = round(sum(values) / len(values), 2)
    data["by_origin"] = {
        origin: {"counts": shown(spec, per_origin[origin]), "voters": n}
        for origin, n in voters_per_origin.items()
    }
    return data


def expected_outcomes(spec: PollSpec, events: Sequence[Event]) -> list[str]:
    current: dict[str, Answer] = {}
    outcomes = []
    for voter, _raw, answer, _origin in events:
        if voter not in current:
            outcomes.append("counted")
            current[voter] = answer
        elif current[voter] == answer:
            outcomes.append("unchanged")
        elif spec.allow_change:
            outcomes.append("changed")
            current[voter] = answer
        else:
            outcomes.append("conflict")
    return outcomes


def run(spec: PollSpec, events: Sequence[Event]) -> tuple[Tally, list[str]]:
    tally = open_tally(spec)
    outcomes = []
    for voter, raw, _expected, origin in events:
        answer = normalise_choice(spec, raw)
        try:
            outcomes.append(tally.apply(voter, answer, origin).value)
        except Conflict:
            outcomes.append("conflict")
    return tally, outcomes


def assert_consistent(tally: Tally) -> None:
    """No zero or negative entries survive, and the split adds up to the whole."""
    assert all(n > 0 for n in tally.counts.values())
    assert all(n > 0 for split in tally.by_origin.values() for n in split.values())
    assert all(n > 0 for n in tally.voters_by_origin.values())
    assert set(tally.by_origin) == set(tally.voters_by_origin)
    assert sum(tally.by_origin.values(), Counter()) == tally.counts
    assert sum(tally.voters_by_origin.values()) == tally.voters


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_any_interleaving_gives_the_exact_tally(scenario: tuple[PollSpec, list[Event]]) -> None:
    spec, events = scenario
    for _voter, raw, expected, _origin in events:
        assert normalise_choice(spec, raw) == expected
    tally, outcomes = run(spec, events)
    assert outcomes == expected_outcomes(spec, events)
    result = tally.results(split=True)
    assert result == expected_results(spec, events)
    assert list(result["by_origin"]) == sorted(result["by_origin"])
    assert_consistent(tally)
    # After a restart, the stored ballots give the same results.
    again = Tally(spec=spec, state=PollState.CLOSED)
    again.restore((v, b.answer, b.origin) for v, b in tally.ballots.items())
    assert again.ballots == tally.ballots
    assert again.results(split=True) == result
    assert_consistent(again)


@settings(max_examples=60, deadline=None)
@given(scenarios(distinct_voters=True), st.data())
def test_first_votes_in_any_order_give_the_same_tally(
    scenario: tuple[PollSpec, list[Event]], data: st.DataObject
) -> None:
    spec, events = scenario
    shuffled = data.draw(st.permutations(events), label="order")
    tally, outcomes = run(spec, events)
    other, other_outcomes = run(spec, shuffled)
    assert outcomes == other_outcomes == ["counted"] * len(events)
    assert other.results(split=True) == tally.results(split=True)
    assert other.ballots == tally.ballots


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_every_event_retried_gives_the_same_tally_as_once(
    scenario: tuple[PollSpec, list[Event]],
) -> None:
    spec, events = scenario
    once, _ = run(spec, events)
    twice, outcomes = run(spec, [e for e in events for _ in range(2)])
    # Every immediate retry is a no-op: unchanged, or the same conflict again.
    assert all(b in ("unchanged", "conflict") for b in outcomes[1::2])
    assert twice.results(split=True) == once.results(split=True)
    assert twice.ballots == once.ballots


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_replaying_the_whole_stream_changes_nothing(
    scenario: tuple[PollSpec, list[Event]],
) -> None:
    # A client that reconnects and resends everything it ever sent.
    spec, events = scenario
    once, _ = run(spec, events)
    again, outcomes = run(spec, [*events, *events])
    assert again.results(split=True) == once.results(split=True)
    assert again.ballots == once.ballots
    if not spec.allow_change:
        assert "counted" not in outcomes[len(events) :]
        assert "changed" not in outcomes


@settings(max_examples=60, deadline=None)
@given(scenarios(), st.data())
def test_taking_back_a_batch_with_put_restores_the_tally(
    scenario: tuple[PollSpec, list[Event]], data: st.DataObject
) -> None:
    # Apply a batch on top of some votes, then take it back by putting each voter's
    # ballot from before the batch back (in any order), as the gateway does when storing
    # the batch failed.
    spec, events = scenario
    cut = data.draw(st.integers(min_value=0, max_value=len(events)), label="cut")
    tally, _ = run(spec, events[:cut])
    before_results = tally.results(split=True)
    ballots_before = dict(tally.ballots)
    before: dict[str, Ballot | None] = {}
    for voter, raw, _expected, origin in events[cut:]:
        before.setdefault(voter, tally.ballots.get(voter))
        try:
            tally.apply(voter, normalise_choice(spec, raw), origin)
        except Conflict:
            continue
    order = data.draw(st.permutations(sorted(before)), label="undo order")
    for voter in order:
        tally.put(voter, before[voter])
    assert tally.ballots == ballots_before
    assert tally.results(split=True) == before_results
    assert_consistent(tally)


def test_results_go_out_four_times_a_second_then_less_often_past_2500_viewers() -> None:
    from hybridcon.realtime.polls import RESULTS_INTERVAL, results_interval

    assert RESULTS_INTERVAL == 0.25
    assert results_interval(0) == results_interval(2500) == 0.25
    assert results_interval(5000) == 0.5
    assert results_interval(10_000) == 1.0
    assert all(results_interval(n) <= results_interval(n + 1) for n in range(0, 20_000, 499))
