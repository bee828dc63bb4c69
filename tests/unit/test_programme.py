"""Unit tests for hybridcon.core.programme: the real programme file and bad programmes."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest

from hybridcon.core.programme import (
    Online,
    Programme,
    SessionKind,
    StageKind,
    parse_programme,
)
from hybridcon.errors import ConfigError

PROGRAMME_FILE = Path(__file__).resolve().parents[2] / "config" / "sociaalwerkconferentie-2022.toml"
THEMES = ("diversiteit", "impact", "nabijheid", "eerstelijn", "identiteit", "politiserend")


@pytest.fixture(scope="module")
def swc() -> Programme:
    return parse_programme(PROGRAMME_FILE.read_text(encoding="utf-8"), source=PROGRAMME_FILE.name)


# --- the real programme --------------------------------------------------------------


def test_event(swc: Programme) -> None:
    assert swc.event.id == "swc2022"
    assert swc.event.date == date(2022, 5, 5)
    assert swc.event.timezone == "Europe/Brussels"
    assert swc.event.venue == "Elisabeth Center"
    assert swc.event.city == "Antwerpen"


def test_themes(swc: Programme) -> None:
    assert tuple(t.id for t in swc.themes) == THEMES


def test_stages(swc: Programme) -> None:
    assert len(swc.stages) == 9
    kinds = {s.id: s.kind for s in swc.stages}
    assert kinds["plenary"] is StageKind.STREAM
    assert kinds["radio"] is StageKind.RADIO
    assert kinds["filmzaal"] is StageKind.FILM
    for theme in THEMES:
        stage = swc.stage(theme)
        assert stage is not None
        assert stage.kind is StageKind.STREAM
        assert stage.theme == theme
    assert Counter(kinds.values()) == {StageKind.STREAM: 7, StageKind.RADIO: 1, StageKind.FILM: 1}


def test_session_counts(swc: Programme) -> None:
    kinds = Counter(s.kind for s in swc.sessions)
    assert kinds[SessionKind.WORKSHOP] == 18
    assert kinds[SessionKind.WALK] == 13
    assert kinds[SessionKind.THEME] == 6
    assert kinds[SessionKind.PLENARY] == 2
    online_rooms = [s for s in swc.sessions if s.online is Online.ROOM]
    assert len(online_rooms) == 4
    assert {s.id for s in online_rooms} == {"online-1", "online-2", "online-3", "online-4"}
    assert all(s.kind is SessionKind.ONLINE_WORKSHOP for s in online_rooms)


def test_workshops_are_three_per_theme(swc: Programme) -> None:
    per_theme = Counter(s.theme for s in swc.sessions if s.kind is SessionKind.WORKSHOP)
    assert per_theme == dict.fromkeys(THEMES, 3)


def test_plenary_sessions_are_on_the_plenary_stage(swc: Programme) -> None:
    plenary = [s for s in swc.sessions if s.kind is SessionKind.PLENARY]
    assert [s.id for s in plenary] == ["openingsshow", "slotshow"]
    assert all(s.stage == "plenary" and s.online is Online.STREAM for s in plenary)


def test_times_carry_the_brussels_offset(swc: Programme) -> None:
    for session in swc.sessions:
        assert session.starts_at.utcoffset() == timedelta(hours=2), session.id
        assert session.ends_at.utcoffset() == timedelta(hours=2), session.id
        assert session.starts_at.date() == date(2022, 5, 5)
        assert session.ends_at > session.starts_at
    opening = swc.session("openingsshow")
    assert opening is not None
    assert opening.starts_at.isoformat() == "2022-05-05T09:30:00+02:00"
    assert opening.ends_at.isoformat() == "2022-05-05T10:45:00+02:00"
    assert swc.starts_at.isoformat() == "2022-05-05T08:30:00+02:00"
    assert swc.ends_at.isoformat() == "2022-05-05T17:00:00+02:00"


def test_sessions_are_sorted_by_start_then_id(swc: Programme) -> None:
    keys = [(s.starts_at, s.id) for s in swc.sessions]
    assert keys == sorted(keys)


def test_lookups(swc: Programme) -> None:
    assert swc.stage("radio") is not None
    assert swc.stage("nope") is None
    session = swc.session("online-1")
    assert session is not None
    assert session.title == "Online workshop 1"
    assert swc.session("nope") is None


@pytest.mark.parametrize(
    "topic",
    [
        "event",
        "stage:plenary",
        "stage:radio",
        "stage:filmzaal",
        "session:openingsshow",
        "session:online-1",
        "mod:stage:plenary",
        "mod:session:wandeling-13",
        "mod:event",
    ],
)
def test_has_topic_known(swc: Programme, topic: str) -> None:
    assert swc.has_topic(topic)


@pytest.mark.parametrize(
    "topic",
    [
        "stage:nope",
        "session:nope",
        "stage:",
        "session:",
        "stage:openingsshow",  # a session, not a stage
        "session:plenary",  # a stage, not a session
        "mod:mod:event",
        "mod:",
        "mod:stage:nope",
        "hall:zaal-a",
        "theme:impact",
        "foo",
        "",
        "Event",
    ],
)
def test_has_topic_unknown(swc: Programme, topic: str) -> None:
    assert not swc.has_topic(topic)


def test_public_is_json_with_offsets(swc: Programme) -> None:
    public = swc.public()
    text = json.dumps(public)
    assert "2022-05-05T09:30:00+02:00" in text
    assert public["event"]["date"] == "2022-05-05"
    assert len(public["sessions"]) == len(swc.sessions)


def test_programme_is_frozen(swc: Programme) -> None:
    with pytest.raises(ValueError, match="frozen"):
        swc.event.title = "Other"  # type: ignore[misc]


# --- bad programmes ------------------------------------------------------------------

EVENT = """
[event]
id = "ev"
title = "An event"
date = 2022-05-05
venue = "Hall"
"""

STAGES = """
[[themes]]
id = "t1"
title = "Theme one"

[[stages]]
id = "main"
title = "Main"
kind = "stream"

[[stages]]
id = "side"
title = "Side"
kind = "stream"
theme = "t1"
"""


def session(ident: str, start: str = "09:00:00", end: str = "10:00:00", **extra: str) -> str:
    lines = [
        "[[sessions]]",
        f'id = "{ident}"',
        f'title = "Session {ident}"',
        f'kind = "{extra.pop("kind", "workshop")}"',
        f"start = {start}",
        f"end = {end}",
    ]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n" + "\n".join(lines) + "\n"


def test_minimal_programme_parses() -> None:
    programme = parse_programme(EVENT + STAGES + session("a", stage='"main"', theme='"t1"'))
    (only,) = programme.sessions
    assert only.starts_at.isoformat() == "2022-05-05T09:00:00+02:00"  # default time zone
    assert only.online is Online.NONE
    assert programme.event.languages == ("nl",)


def test_time_zone_applies_to_session_times() -> None:
    text = EVENT.replace('venue = "Hall"', 'venue = "Hall"\ntimezone = "America/New_York"')
    programme = parse_programme(text + session("a"))
    assert programme.sessions[0].starts_at.isoformat() == "2022-05-05T09:00:00-04:00"


def test_invalid_toml() -> None:
    with pytest.raises(ConfigError, match=r"^swc\.toml: not valid TOML"):
        parse_programme("[event\nid = 1", source="swc.toml")


def test_source_prefixes_every_message() -> None:
    with pytest.raises(ConfigError, match=r"^my/file\.toml: the programme has no sessions$"):
        parse_programme(EVENT, source="my/file.toml")


def test_missing_event() -> None:
    with pytest.raises(ConfigError, match=r"programme: event: Field required"):
        parse_programme(session("a"))


def test_missing_event_field() -> None:
    with pytest.raises(ConfigError, match=r"event\.venue: Field required"):
        parse_programme(EVENT.replace('venue = "Hall"', "") + session("a"))


def test_unknown_field_in_a_session() -> None:
    text = EVENT + session("a") + session("b", colour='"red"')
    with pytest.raises(ConfigError, match=r"sessions\[1\] \(id 'b'\)\.colour: Extra inputs"):
        parse_programme(text)


def test_unknown_top_level_table() -> None:
    with pytest.raises(ConfigError, match=r"speakers: Extra inputs are not permitted"):
        parse_programme(EVENT + session("a") + '\n[speakers]\nann = "Ann"\n')


def test_unknown_field_in_event() -> None:
    text = EVENT.replace('venue = "Hall"', 'venue = "Hall"\nbudget = 5')
    with pytest.raises(ConfigError, match=r"event\.budget: Extra inputs"):
        parse_programme(text + session("a"))


def test_validation_error_names_the_entry() -> None:
    text = EVENT + session("first") + session("second", kind="lecture")
    with pytest.raises(ConfigError) as info:
        parse_programme(text)
    message = info.value.message
    assert "sessions[1]" in message
    assert "'second'" in message
    assert ".kind" in message


def test_validation_error_on_a_bad_id() -> None:
    with pytest.raises(ConfigError, match=r"sessions\[0\] \(id 'Bad'\)\.id"):
        parse_programme(EVENT + session("Bad"))


def test_validation_error_in_a_stage() -> None:
    text = EVENT + '[[stages]]\nid = "s"\ntitle = "S"\nkind = "tv"\n' + session("a")
    with pytest.raises(ConfigError, match=r"stages\[0\] \(id 's'\)\.kind"):
        parse_programme(text)


@pytest.mark.parametrize("capacity", ["0", "-3", '"many"'])
def test_bad_capacity(capacity: str) -> None:
    with pytest.raises(ConfigError, match=r"sessions\[0\] \(id 'a'\)\.capacity"):
        parse_programme(EVENT + session("a", capacity=capacity))


def test_blank_title_is_refused() -> None:
    text = EVENT + session("a").replace('title = "Session a"', 'title = "   "')
    with pytest.raises(ConfigError, match=r"sessions\[0\] \(id 'a'\)\.title"):
        parse_programme(text)


def test_session_on_an_unknown_stage() -> None:
    text = EVENT + STAGES + session("talk", stage='"backstage"')
    with pytest.raises(ConfigError, match=r"session 'talk' names unknown stage 'backstage'"):
        parse_programme(text)


def test_session_with_an_unknown_theme() -> None:
    text = EVENT + STAGES + session("talk", theme='"t9"')
    with pytest.raises(ConfigError, match=r"session 'talk' names unknown theme 't9'"):
        parse_programme(text)


def test_stage_with_an_unknown_theme() -> None:
    text = EVENT + STAGES.replace('theme = "t1"', 'theme = "t9"') + session("a")
    with pytest.raises(ConfigError, match=r"stage 'side' names unknown theme 't9'"):
        parse_programme(text)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            EVENT + session("a") + session("a", "11:00:00", "12:00:00"),
            "sessions repeats the id 'a'",
        ),
        (
            EVENT
            + STAGES
            + '[[stages]]\nid = "main"\ntitle = "x"\nkind = "radio"\n'
            + session("a"),
            "stages repeats the id 'main'",
        ),
        (
            EVENT + STAGES + '[[themes]]\nid = "t1"\ntitle = "again"\n' + session("a"),
            "themes repeats the id 't1'",
        ),
    ],
)
def test_duplicate_ids(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_programme(text)


def test_same_id_for_a_stage_and_a_theme_is_allowed() -> None:
    text = EVENT + STAGES.replace('id = "side"', 'id = "t1"') + session("a")
    assert parse_programme(text).stage("t1") is not None


@pytest.mark.parametrize(("start", "end"), [("10:00:00", "09:00:00"), ("10:00:00", "10:00:00")])
def test_end_before_start(start: str, end: str) -> None:
    with pytest.raises(ConfigError, match=r"session 'a' ends \(.*\) before it starts"):
        parse_programme(EVENT + session("a", start, end))


def test_overlap_on_one_stage_names_both_sessions() -> None:
    text = (
        EVENT
        + STAGES
        + session("late", "09:30:00", "10:30:00", stage='"main"')
        + session("early", "09:00:00", "10:00:00", stage='"main"')
    )
    with pytest.raises(ConfigError, match=r"sessions 'early' and 'late' overlap on stage 'main'"):
        parse_programme(text)


def test_overlap_hidden_behind_a_short_session_is_found() -> None:
    text = (
        EVENT
        + STAGES
        + session("long", "09:00:00", "12:00:00", stage='"main"')
        + session("short", "09:10:00", "09:20:00", stage='"main"')
        + session("later", "11:00:00", "11:30:00", stage='"main"')
    )
    with pytest.raises(ConfigError, match=r"overlap on stage 'main'"):
        parse_programme(text)


def test_back_to_back_and_parallel_sessions_are_fine() -> None:
    text = (
        EVENT
        + STAGES
        + session("a", "09:00:00", "10:00:00", stage='"main"')
        + session("b", "10:00:00", "11:00:00", stage='"main"')
        + session("c", "09:00:00", "11:00:00", stage='"side"')
        + session("d", "09:00:00", "11:00:00")
        + session("e", "09:00:00", "11:00:00")
    )
    programme = parse_programme(text)
    assert [s.id for s in programme.sessions] == ["a", "c", "d", "e", "b"]


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "Europe", "/etc/localtime", "../x"])
def test_unknown_time_zone(zone: str) -> None:
    text = EVENT.replace('venue = "Hall"', f'venue = "Hall"\ntimezone = "{zone}"')
    with pytest.raises(ConfigError, match=r"event\.timezone .* is unknown"):
        parse_programme(text + session("a"))


def test_online_stream_needs_a_stage() -> None:
    with pytest.raises(ConfigError, match=r"session 'a' is online 'stream' but names no stage"):
        parse_programme(EVENT + session("a", online='"stream"'))


def test_online_stream_with_a_stage_is_fine() -> None:
    programme = parse_programme(EVENT + STAGES + session("a", online='"stream"', stage='"main"'))
    assert programme.sessions[0].online is Online.STREAM


def test_no_sessions() -> None:
    with pytest.raises(ConfigError, match="the programme has no sessions"):
        parse_programme(EVENT + STAGES)


def test_session_time_as_a_datetime_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"sessions\[0\] \(id 'a'\)\.start"):
        parse_programme(EVENT + session("a", start="2022-05-05T09:00:00"))


@pytest.mark.parametrize("value", ["1", '"14:45"', "1979-05-27T07:32:00", "true"])
def test_a_session_time_must_be_a_toml_time_of_day(value: str) -> None:
    """Found by the fuzzer: `start = 1` was read as 00:00:01 UTC, an aware time that then
    crashed the end-before-start check with a TypeError instead of a message."""
    text = PROGRAMME_FILE.read_text("utf-8")
    needle = (
        'id = "online-3"\ntitle = "Online workshop 3"\nkind = "online_workshop"\nstart = 14:45:00'
    )
    assert needle in text
    broken = text.replace(needle, needle.replace("start = 14:45:00", f"start = {value}"))
    with pytest.raises(ConfigError, match=r"online-3.*start"):
        parse_programme(broken, source="p.toml")
