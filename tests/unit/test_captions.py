"""Caption cues: cleaning, their stored form, and WebVTT for a recording's time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hybridcon.core.captions import Cue, clean_cue, webvtt
from hybridcon.errors import Invalid

T0 = datetime(2022, 5, 5, 7, 30, tzinfo=UTC)


def cue(seconds: float, text: str, cue_id: str = "c") -> Cue:
    return Cue(cue_id=cue_id, stage="plenary", text=text, ts=T0 + timedelta(seconds=seconds))


def test_a_cue_is_one_clean_line() -> None:
    assert clean_cue("  Welkom\nin   Antwerpen\u200b ") == "Welkom in Antwerpen"
    with pytest.raises(Invalid):
        clean_cue(" \n ")
    with pytest.raises(Invalid):
        clean_cue("x" * 301)


def test_the_stored_line_round_trips_and_a_torn_line_is_skipped() -> None:
    original = cue(1.5, "Één zin met “aanhalingstekens”")
    assert Cue.from_line(original.to_line()) == original
    assert Cue.from_line('{"cue_id": "x", "stage": "plenary"') is None
    assert Cue.from_line("[]") is None


def test_webvtt_counts_from_the_recording_and_shows_each_cue_until_the_next() -> None:
    cues = [
        cue(70.0, "Tweede", "b"),
        cue(62.25, "Eerste <b>vet</b> & zo", "a"),
        cue(5.0, "Voor de opname", "z"),
        cue(80.0, "Laatste", "c"),
        cue(3600.0, "Na de opname", "y"),
    ]
    start, end = T0 + timedelta(seconds=60), T0 + timedelta(seconds=82)
    assert webvtt(cues, start, end) == (
        "WEBVTT\n\n"
        "a\n00:00:02.250 --> 00:00:08.250\nEerste &lt;b&gt;vet&lt;/b&gt; &amp; zo\n\n"
        "b\n00:00:10.000 --> 00:00:16.000\nTweede\n\n"
        "c\n00:00:20.000 --> 00:00:22.000\nLaatste\n"
    )


def test_quick_cues_still_show_a_second_and_hours_are_written() -> None:
    start = T0
    text = webvtt(
        [cue(3725.0, "Een", "a"), cue(3725.2, "Twee", "b")], start, T0 + timedelta(hours=2)
    )
    assert "a\n01:02:05.000 --> 01:02:06.000\nEen" in text
    assert "b\n01:02:05.200 --> 01:02:11.200\nTwee" in text
    assert webvtt([], start, T0 + timedelta(hours=1)) == "WEBVTT\n"
