"""Q&A: asking, one upvote per person, moderation, merges and the order shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridcon.core.qa import (
    MAX_QUESTION,
    OPEN_STATES,
    QaSettings,
    Question,
    QuestionState,
    merge,
    moderate,
    new_question,
    ordered,
    upvote,
)
from hybridcon.errors import Conflict, Forbidden, Invalid

T0 = datetime(2022, 10, 6, 10, 0, tzinfo=UTC)
MODERATED = QaSettings(moderated=True, anonymous=False)
OPEN_TOPIC = QaSettings(moderated=False, anonymous=True)
CLOSED_STATES = (QuestionState.ANSWERED, QuestionState.DISMISSED, QuestionState.MERGED)


def ask(
    question_id: str = "q1",
    *,
    text: str = "Hoe meten we impact?",
    topic: str = "stage:plenary",
    author_id: str = "i:ann",
    author_name: str = "Ann",
    origin: str = "hall:a",
    anonymous: bool = False,
    qa: QaSettings = OPEN_TOPIC,
    now: datetime = T0,
) -> Question:
    return new_question(
        question_id=question_id,
        topic=topic,
        author_id=author_id,
        author_name=author_name,
        text=text,
        origin=origin,
        anonymous=anonymous,
        settings=qa,
        now=now,
    )


def in_state(state: QuestionState, question_id: str = "q1") -> Question:
    question = ask(question_id)
    question.state = state
    return question


# --- new_question ---------------------------------------------------------------------


def test_a_question_in_a_moderated_topic_is_pending() -> None:
    question = ask(qa=MODERATED)
    assert question == Question(
        question_id="q1",
        topic="stage:plenary",
        author_id="i:ann",
        author_name="Ann",
        text="Hoe meten we impact?",
        origin="hall:a",
        created_at=T0,
        state=QuestionState.PENDING,
    )
    assert question.upvoters == set()
    assert question.upvotes == 0
    assert question.merged_into is None


def test_a_question_in_an_unmoderated_topic_is_approved_at_once() -> None:
    assert ask(qa=QaSettings(moderated=False)).state is QuestionState.APPROVED


def test_anonymous_question_keeps_the_author_id_but_not_the_name() -> None:
    question = ask(anonymous=True, qa=QaSettings(moderated=True, anonymous=True))
    assert question.author_name is None
    assert question.author_id == "i:ann"  # kept for moderation, never shown
    assert question.public()["author"] is None
    assert "i:ann" not in str(question.public())


def test_anonymous_question_refused_where_not_allowed() -> None:
    with pytest.raises(Forbidden, match="anonymous questions are not allowed in this topic"):
        ask(anonymous=True, qa=QaSettings(moderated=False, anonymous=False))


def test_a_named_question_is_fine_where_anonymous_is_allowed() -> None:
    assert ask(anonymous=False, qa=OPEN_TOPIC).author_name == "Ann"


def test_question_text_is_cleaned() -> None:
    question = ask(text="  Hoe\u200b meten\x07 we Cafe\u0301-impact?\n ")
    assert question.text == "Hoe meten we Café-impact?"


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\u200b", "\x00\x1b"])
def test_empty_question_refused(text: str) -> None:
    with pytest.raises(Invalid, match="empty"):
        ask(text=text)


def test_question_length_limit() -> None:
    assert ask(text="x" * MAX_QUESTION).text == "x" * MAX_QUESTION
    assert ask(text=" " + "x" * MAX_QUESTION + " ").text == "x" * MAX_QUESTION
    with pytest.raises(Invalid, match=f"a question is longer than {MAX_QUESTION} characters"):
        ask(text="x" * (MAX_QUESTION + 1))


def test_very_long_question_names_the_question_limit() -> None:
    with pytest.raises(Invalid, match=f"a question is longer than {MAX_QUESTION} characters"):
        ask(text="x" * 600)


# --- upvote ---------------------------------------------------------------------------


@pytest.mark.parametrize("state", [QuestionState.PENDING, QuestionState.APPROVED])
def test_one_upvote_per_person(state: QuestionState) -> None:
    question = in_state(state)
    assert upvote(question, "i:bob") is True
    assert upvote(question, "i:bob") is False  # a second tap, a second device
    assert question.upvotes == 1
    assert upvote(question, "i:cy") is True
    assert question.upvotes == 2
    assert question.upvoters == {"i:bob", "i:cy"}


@pytest.mark.parametrize("state", CLOSED_STATES)
def test_upvote_refused_on_a_closed_question(state: QuestionState) -> None:
    question = in_state(state)
    question.upvoters.add("i:bob")
    with pytest.raises(Conflict, match=f"this question is {state.value}"):
        upvote(question, "i:cy")
    with pytest.raises(Conflict, match=f"this question is {state.value}"):
        upvote(question, "i:bob")  # even a repeat: closed is closed
    assert question.upvoters == {"i:bob"}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([f"i:{n}" for n in range(8)]), max_size=40))
def test_upvotes_equal_distinct_voters(voters: list[str]) -> None:
    question = ask()
    added = [upvote(question, v) for v in voters]
    assert question.upvotes == len(set(voters))
    assert question.upvoters == set(voters)
    # True exactly for each person's first upvote.
    seen: set[str] = set()
    for voter, was_added in zip(voters, added, strict=True):
        assert was_added is (voter not in seen)
        seen.add(voter)


# --- moderate -------------------------------------------------------------------------


def test_approve_from_pending() -> None:
    question = ask(qa=MODERATED)
    moderate(question, "approve")
    assert question.state is QuestionState.APPROVED


@pytest.mark.parametrize(
    "state",
    [QuestionState.APPROVED, QuestionState.ANSWERED, QuestionState.DISMISSED, QuestionState.MERGED],
)
def test_approve_only_from_pending(state: QuestionState) -> None:
    question = in_state(state)
    with pytest.raises(Conflict, match=f"cannot approve a question that is {state.value}"):
        moderate(question, "approve")
    assert question.state is state


@pytest.mark.parametrize(("action", "target"), [("answer", "answered"), ("dismiss", "dismissed")])
@pytest.mark.parametrize("state", [QuestionState.PENDING, QuestionState.APPROVED])
def test_answer_and_dismiss_from_pending_or_approved(
    action: str, target: str, state: QuestionState
) -> None:
    question = in_state(state)
    moderate(question, action)
    assert question.state.value == target


@pytest.mark.parametrize("action", ["answer", "dismiss"])
@pytest.mark.parametrize("state", CLOSED_STATES)
def test_answer_and_dismiss_refused_on_closed_questions(action: str, state: QuestionState) -> None:
    question = in_state(state)
    with pytest.raises(Conflict, match=f"cannot {action} a question that is {state.value}"):
        moderate(question, action)
    assert question.state is state


def test_answering_twice_is_a_conflict() -> None:
    question = ask()
    moderate(question, "answer")
    with pytest.raises(Conflict, match="cannot answer a question that is answered"):
        moderate(question, "answer")


@pytest.mark.parametrize("action", ["delete", "Approve", "", "merge", "pin"])
def test_unknown_action_is_invalid(action: str) -> None:
    question = ask(qa=MODERATED)
    with pytest.raises(Invalid, match="unknown Q&A action") as info:
        moderate(question, action)
    assert repr(action) in info.value.message
    assert question.state is QuestionState.PENDING


# --- merge ----------------------------------------------------------------------------


def test_merge_unions_upvoters_and_closes_the_duplicate() -> None:
    duplicate = ask("q2", text="Hoe meet je impact?")
    into = ask("q1")
    for voter in ("i:a", "i:b", "i:c"):
        upvote(duplicate, voter)
    for voter in ("i:b", "i:d"):
        upvote(into, voter)
    merge(duplicate, into)
    assert into.upvoters == {"i:a", "i:b", "i:c", "i:d"}
    assert into.upvotes == 4  # i:b upvoted both and counts once
    assert into.state is QuestionState.APPROVED
    assert into.merged_into is None
    assert duplicate.state is QuestionState.MERGED
    assert duplicate.merged_into == "q1"
    with pytest.raises(Conflict, match="this question is merged"):
        upvote(duplicate, "i:e")
    # Upvotes keep working on the one it was merged into, still one per person.
    assert upvote(into, "i:a") is False
    assert upvote(into, "i:e") is True


def test_merge_a_pending_duplicate_into_an_approved_question() -> None:
    duplicate = in_state(QuestionState.PENDING, "q2")
    into = in_state(QuestionState.APPROVED, "q1")
    merge(duplicate, into)
    assert duplicate.state is QuestionState.MERGED
    assert into.state is QuestionState.APPROVED


def test_merge_refuses_a_question_into_itself() -> None:
    question = ask("q1")
    with pytest.raises(Invalid, match="a question cannot be merged into itself"):
        merge(question, ask("q1"))
    assert question.state is QuestionState.APPROVED


def test_merge_refuses_different_topics() -> None:
    duplicate = ask("q2", topic="session:s1")
    into = ask("q1", topic="stage:plenary")
    with pytest.raises(Invalid, match="only questions of the same topic can be merged"):
        merge(duplicate, into)
    assert duplicate.state is QuestionState.APPROVED
    assert duplicate.merged_into is None


@pytest.mark.parametrize("state", CLOSED_STATES)
@pytest.mark.parametrize("which", ["duplicate", "into"])
def test_merge_refuses_closed_questions(state: QuestionState, which: str) -> None:
    duplicate = ask("q2")
    into = ask("q1")
    upvote(duplicate, "i:x")
    closed = duplicate if which == "duplicate" else into
    closed.state = state
    with pytest.raises(Conflict, match=f"question {closed.question_id} is {state.value}"):
        merge(duplicate, into)
    # Nothing moved.
    assert into.upvoters == set()
    assert duplicate.merged_into is None


@settings(max_examples=100, deadline=None)
@given(
    st.sets(st.sampled_from([f"i:{n}" for n in range(10)])),
    st.sets(st.sampled_from([f"i:{n}" for n in range(10)])),
)
def test_merge_upvotes_are_the_union(dup_voters: set[str], into_voters: set[str]) -> None:
    duplicate = ask("q2", now=T0 + timedelta(minutes=1))
    into = ask("q1")
    for voter in dup_voters:
        upvote(duplicate, voter)
    for voter in into_voters:
        upvote(into, voter)
    merge(duplicate, into)
    assert into.upvotes == len(dup_voters | into_voters)
    assert into.upvoters == dup_voters | into_voters
    assert duplicate.state is QuestionState.MERGED
    assert duplicate.merged_into == "q1"


# --- ordered --------------------------------------------------------------------------


def with_votes(question_id: str, votes: int, minutes: int, state: QuestionState) -> Question:
    question = ask(question_id, now=T0 + timedelta(minutes=minutes))
    question.state = state
    question.upvoters = {f"i:{question_id}:{n}" for n in range(votes)}
    return question


def test_ordered_by_upvotes_then_newest_first() -> None:
    questions = [
        with_votes("old-3", 3, 0, QuestionState.APPROVED),
        with_votes("new-1", 1, 9, QuestionState.APPROVED),
        with_votes("mid-3", 3, 5, QuestionState.APPROVED),
        with_votes("old-0", 0, 1, QuestionState.APPROVED),
        with_votes("top-7", 7, 2, QuestionState.APPROVED),
        with_votes("new-0", 0, 8, QuestionState.APPROVED),
    ]
    shown = [q.question_id for q in ordered(questions)]
    assert shown == ["top-7", "mid-3", "old-3", "new-1", "new-0", "old-0"]


def test_ordered_leaves_pending_out_unless_asked() -> None:
    questions = [
        with_votes("approved", 1, 0, QuestionState.APPROVED),
        with_votes("pending", 5, 1, QuestionState.PENDING),
    ]
    assert [q.question_id for q in ordered(questions)] == ["approved"]
    both = ordered(questions, include_pending=True)
    assert [q.question_id for q in both] == ["pending", "approved"]


@pytest.mark.parametrize("include_pending", [False, True])
def test_ordered_never_shows_closed_questions(include_pending: bool) -> None:
    questions = [with_votes(s.value, 9, 0, s) for s in CLOSED_STATES]
    questions.append(with_votes("open", 0, 0, QuestionState.APPROVED))
    shown = ordered(questions, include_pending=include_pending)
    assert [q.question_id for q in shown] == ["open"]


def test_ordered_is_stable_for_exact_ties() -> None:
    # Same upvotes and same second: the id decides, whatever the input order.
    a = with_votes("qa", 2, 3, QuestionState.APPROVED)
    b = with_votes("qb", 2, 3, QuestionState.APPROVED)
    assert [q.question_id for q in ordered([b, a])] == ["qa", "qb"]
    assert [q.question_id for q in ordered([a, b])] == ["qa", "qb"]


def test_ordered_does_not_change_the_list_given() -> None:
    questions = [
        with_votes("q1", 0, 0, QuestionState.APPROVED),
        with_votes("q2", 5, 0, QuestionState.APPROVED),
    ]
    ordered(questions)
    assert [q.question_id for q in questions] == ["q1", "q2"]


def test_an_upvote_moves_a_question_up() -> None:
    older = with_votes("older", 1, 0, QuestionState.APPROVED)
    newer = with_votes("newer", 1, 5, QuestionState.APPROVED)
    assert [q.question_id for q in ordered([older, newer])] == ["newer", "older"]
    upvote(older, "i:someone")
    assert [q.question_id for q in ordered([older, newer])] == ["older", "newer"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=4),
            st.integers(min_value=0, max_value=5),
            st.sampled_from(list(QuestionState)),
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_ordered_property(
    shapes: list[tuple[int, int, QuestionState]], include_pending: bool
) -> None:
    questions = [with_votes(f"q{i:02d}", v, m, s) for i, (v, m, s) in enumerate(shapes)]
    shown = ordered(questions, include_pending=include_pending)
    allowed = OPEN_STATES if include_pending else {QuestionState.APPROVED}
    assert {q.question_id for q in shown} == {
        q.question_id for q in questions if q.state in allowed
    }
    for first, second in pairwise(shown):
        assert (first.upvotes, first.created_at) >= (second.upvotes, second.created_at)


# --- public() and update() ------------------------------------------------------------


def test_public_named() -> None:
    question = ask(now=T0)
    upvote(question, "i:bob")
    assert question.public() == {
        "question_id": "q1",
        "topic": "stage:plenary",
        "text": "Hoe meten we impact?",
        "author": {"id": "i:ann", "name": "Ann"},
        "upvotes": 1,
        "state": "approved",
        "origin": "hall:a",
        "ts": "2022-10-06T10:00:00+00:00",
    }


def test_public_anonymous_and_merged() -> None:
    duplicate = ask("q2", anonymous=True, qa=QaSettings(moderated=True, anonymous=True))
    into = ask("q1", qa=QaSettings(moderated=True, anonymous=True))
    upvote(duplicate, "i:bob")
    merge(duplicate, into)
    assert duplicate.public() == {
        "question_id": "q2",
        "topic": "stage:plenary",
        "text": "Hoe meten we impact?",
        "author": None,
        "upvotes": 1,
        "state": "merged",
        "origin": "hall:a",
        "ts": "2022-10-06T10:00:00+00:00",
        "merged_into": "q1",
    }
    assert "merged_into" not in into.public()


def test_update_shapes() -> None:
    duplicate = ask("q2")
    into = ask("q1")
    upvote(duplicate, "i:bob")
    upvote(into, "i:cy")
    assert into.update() == {"question_id": "q1", "upvotes": 1, "state": "approved"}
    merge(duplicate, into)
    assert into.update() == {"question_id": "q1", "upvotes": 2, "state": "approved"}
    assert duplicate.update() == {
        "question_id": "q2",
        "upvotes": 1,
        "state": "merged",
        "merged_into": "q1",
    }
    moderate(into, "answer")
    assert into.update() == {"question_id": "q1", "upvotes": 2, "state": "answered"}
