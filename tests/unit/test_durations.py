"""Unit tests for hybridcon.core.durations.parse_duration."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridcon.core.durations import describe_duration, parse_duration
from hybridcon.errors import Invalid


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("3600", timedelta(hours=1)),
        ("1", timedelta(seconds=1)),
        ("  15M  ", timedelta(minutes=15)),
        ("2H", timedelta(hours=2)),
        ("0h5m", timedelta(minutes=5)),
        ("007s", timedelta(seconds=7)),
    ],
)
def test_parses(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "   ", "2x", "h", "-5m", "1h 30m", "1.5h", "m5", "5 m", "1h-30m", "+5m", "5ms", "1w"],
)
def test_rejects_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(Invalid, match=r"is not a duration; use e\.g\. 90s, 15m"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0", "0s", "0h0m", "000"])
def test_rejects_zero(text: str) -> None:
    with pytest.raises(Invalid, match="must be longer than zero"):
        parse_duration(text)


@given(
    d=st.integers(0, 400),
    h=st.integers(0, 99),
    m=st.integers(0, 999),
    s=st.integers(0, 9999),
)
def test_any_combination_adds_up(d: int, h: int, m: int, s: int) -> None:
    total = timedelta(days=d, hours=h, minutes=m, seconds=s)
    text = f"{d}d{h}h{m}m{s}s"
    if total:
        assert parse_duration(text) == total
        assert parse_duration(str(int(total.total_seconds()))) == total
    else:
        with pytest.raises(Invalid):
            parse_duration(text)


@pytest.mark.parametrize(
    "text",
    ["²", "1²", "1000000000d", "99999999999999999999", "9" * 5000, "٣٠", "30m1h", "1m1m"],
)
def test_odd_input_is_invalid_not_a_crash(text: str) -> None:
    with pytest.raises(Invalid):
        parse_duration(text)


@pytest.mark.parametrize(
    ("duration", "words"),
    [
        (timedelta(days=2), "2 days"),
        (timedelta(hours=1, minutes=30), "1 hour 30 minutes"),
        (timedelta(seconds=45), "45 seconds"),
        (
            timedelta(days=1157, hours=9, minutes=46, seconds=39),
            "1157 days 9 hours 46 minutes 39 seconds",
        ),
        (timedelta(days=1, seconds=1), "1 day 1 second"),
        (timedelta(0), "0 seconds"),
        (timedelta(seconds=-5), "0 seconds"),
        (timedelta(seconds=1.7), "1 second"),
    ],
)
def test_durations_are_described_in_words(duration: timedelta, words: str) -> None:
    assert describe_duration(duration) == words


@given(st.integers(min_value=1, max_value=3650 * 86400))
def test_a_description_reads_back_as_the_same_duration(seconds: int) -> None:
    words = describe_duration(timedelta(seconds=seconds)).split()
    units = {"day": "d", "days": "d", "hour": "h", "hours": "h"}
    units |= {"minute": "m", "minutes": "m", "second": "s", "seconds": "s"}
    compact = "".join(f"{n}{units[u]}" for n, u in zip(words[::2], words[1::2], strict=True))
    assert parse_duration(compact) == timedelta(seconds=seconds)
