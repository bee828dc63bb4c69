"""Chat rules for one topic, with a fake clock: bans, timeouts, slow mode, holds, text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hybridcon.core.chat import MAX_TEXT_LENGTH, ChatRoom, Verdict, clean_text
from hybridcon.core.wordfilter import WordFilter
from hybridcon.errors import Banned, Invalid, Muted, RateLimited

T0 = datetime(2022, 5, 5, 9, 30, tzinfo=UTC)
FILTER = WordFilter.from_lines(["klootzak", "rot op", "# comment", ""])


def test_a_clean_line_is_published_as_plain_text() -> None:
    room = ChatRoom(topic="stage:plenary")
    decision = room.check_send("u:1", "  <b>Goeiemorgen</b>\u0000 allemaal!  ", T0)
    assert decision.verdict is Verdict.PUBLISH
    # Markup is kept as text (clients render text, never HTML); control characters go.
    assert decision.text == "<b>Goeiemorgen</b> allemaal!"


@pytest.mark.parametrize("text", ["", "   ", "\u0000\u200b"])
def test_empty_text_is_invalid(text: str) -> None:
    with pytest.raises(Invalid, match="empty"):
        clean_text(text)


@pytest.mark.parametrize(
    "text",
    ["\u3164", "\u2800\u2800", "\u0301", " \u115f\u1160 ", "\u3164\u0301\u200b", "\uffa0"],
)
def test_a_line_of_only_invisible_characters_is_refused(text: str) -> None:
    with pytest.raises(Invalid, match="show nothing"):
        clean_text(text)


@pytest.mark.parametrize("text", ["e\u0301", "\u2800a", "👏", "\u3164 ok", "ㅎ"])
def test_visible_text_with_blank_looking_characters_is_kept(text: str) -> None:
    assert clean_text(text)


def test_text_over_the_limit_is_invalid_and_at_the_limit_is_fine() -> None:
    assert len(clean_text("a" * MAX_TEXT_LENGTH)) == MAX_TEXT_LENGTH
    with pytest.raises(Invalid, match=str(MAX_TEXT_LENGTH)):
        clean_text("a" * (MAX_TEXT_LENGTH + 1))


def test_banned_people_cannot_send_until_unbanned() -> None:
    room = ChatRoom(topic="stage:plenary")
    room.ban("u:troll")
    with pytest.raises(Banned):
        room.check_send("u:troll", "hallo", T0)
    assert room.check_send("u:other", "hallo", T0).verdict is Verdict.PUBLISH
    room.unban("u:troll")
    assert room.check_send("u:troll", "sorry", T0).verdict is Verdict.PUBLISH


def test_a_timeout_lasts_exactly_its_seconds() -> None:
    room = ChatRoom(topic="stage:plenary")
    until = room.timeout("u:1", 60, T0)
    assert until == T0 + timedelta(seconds=60)
    with pytest.raises(Muted, match="until"):
        room.check_send("u:1", "hallo", T0 + timedelta(seconds=59))
    assert room.check_send("u:1", "hallo", T0 + timedelta(seconds=60)).verdict is Verdict.PUBLISH


@pytest.mark.parametrize("seconds", [0, -5, 86_401])
def test_timeout_bounds(seconds: int) -> None:
    with pytest.raises(Invalid, match="seconds"):
        ChatRoom(topic="stage:x").timeout("u:1", seconds, T0)


def test_slow_mode_spaces_each_persons_lines() -> None:
    room = ChatRoom(topic="stage:plenary")
    room.set_slowmode(10)
    room.check_send("u:1", "een", T0)
    with pytest.raises(RateLimited) as caught:
        room.check_send("u:1", "twee", T0 + timedelta(seconds=4))
    assert caught.value.retry_after == pytest.approx(6)
    # Someone else is not affected; the first person may speak again after 10 s.
    room.check_send("u:2", "hallo", T0 + timedelta(seconds=4))
    room.check_send("u:1", "twee", T0 + timedelta(seconds=10))
    room.set_slowmode(0)
    room.check_send("u:1", "drie", T0 + timedelta(seconds=10))


def test_slow_mode_bounds() -> None:
    with pytest.raises(Invalid):
        ChatRoom(topic="stage:x").set_slowmode(601)


def test_filtered_words_hold_the_line_with_what_matched() -> None:
    room = ChatRoom(topic="stage:plenary")
    decision = room.check_send("u:1", "Wat een KL00TZAK, rot   op!", T0, word_filter=FILTER)
    assert decision.verdict is Verdict.HOLD
    assert decision.reason == "filter"
    assert set(decision.matched) == {"klootzak", "rot op"}
    # A word that merely contains a listed word is not held.
    assert room.check_send("u:2", "rotonde op", T0, word_filter=FILTER).verdict is Verdict.PUBLISH


def test_first_message_hold_until_approved() -> None:
    room = ChatRoom(topic="session:online-1", hold_first=True)
    first = room.check_send("u:1", "Dag iedereen", T0)
    assert (first.verdict, first.reason) == (Verdict.HOLD, "first_message")
    room.approve("u:1")
    assert room.check_send("u:1", "Nog een vraag", T0).verdict is Verdict.PUBLISH
    assert room.check_send("u:2", "Hallo", T0).verdict is Verdict.HOLD


def test_moderators_are_exempt_from_holds_filters_and_slow_mode() -> None:
    room = ChatRoom(topic="stage:plenary", hold_first=True)
    room.set_slowmode(30)
    for _ in range(3):
        decision = room.check_send(
            "u:mod", "rot op met dat spam", T0, exempt=True, word_filter=FILTER
        )
        assert decision.verdict is Verdict.PUBLISH


def test_settings_are_what_clients_see() -> None:
    room = ChatRoom(topic="stage:plenary")
    room.set_slowmode(5)
    room.hold_first = True
    assert room.settings() == {"slowmode": 5, "hold_first": True}
