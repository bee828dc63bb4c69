"""The report's pure parts: units, medians, suppression, the figures from aggregates,
CSV cells and the live view (docs/report-definitions.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridcon.core.csvcells import safe_cell
from hybridcon.core.programme import parse_programme
from hybridcon.core.report.aggregates import Aggregates, MinuteRow, PersonGroup, RetentionRow
from hybridcon.core.report.figures import SUPPRESSED, compute, hide, hide_split, lower_median
from hybridcon.core.report.live import LiveCounts, PollNow, StageNow, live_view
from hybridcon.core.report.units import units
from hybridcon.core.tokens import Claims, Role
from hybridcon.report.render import csv_text

PROGRAMME = parse_programme(
    (Path(__file__).parents[2] / "config" / "sociaalwerkconferentie-2022.toml").read_text()
)
T0 = datetime(2022, 5, 5, 6, 0, tzinfo=UTC)
T1 = datetime(2022, 5, 5, 16, 0, tzinfo=UTC)


def test_units_follow_r4():
    found = {u.id: u for u in units(PROGRAMME, T0, T1)}
    assert found["day"].windows == (("*", T0, T1),)
    assert found["stage:impact"].windows == (("stage:impact", T0, T1),)
    # A theme session: its own topic all range, its stage only during its time (UTC+2).
    item = found["item:thema-impact"]
    assert item.windows == (
        ("session:thema-impact", T0, T1),
        (
            "stage:impact",
            datetime(2022, 5, 5, 9, 15, tzinfo=UTC),
            datetime(2022, 5, 5, 10, 30, tzinfo=UTC),
        ),
    )
    assert found["item:online-1"].kind == "online_workshop"
    theme = {w[0] for w in found["theme:impact"].windows}
    assert {"stage:impact", "session:thema-impact", "session:ws-impact-1"} <= theme
    # The closing show (14:00-15:00 UTC) ends after a range ending 14:30: clipped.
    cut = datetime(2022, 5, 5, 14, 30, tzinfo=UTC)
    clipped = {u.id: u for u in units(PROGRAMME, T0, cut)}["item:slotshow"]
    assert clipped.windows[1] == ("stage:plenary", datetime(2022, 5, 5, 14, tzinfo=UTC), cut)


def test_units_drop_windows_outside_the_range():
    a, b = T1 + timedelta(hours=5), T1 + timedelta(hours=6)
    late = {u.id: u.windows for u in units(PROGRAMME, a, b)}
    # The session topic belongs all range (R4); the stage window of the morning is gone.
    assert late["item:openingsshow"] == (("session:openingsshow", a, b),)


@given(st.lists(st.integers(min_value=0, max_value=500), min_size=1, max_size=60))
def test_lower_median_is_the_middle_or_lower_middle(values):
    ordered = sorted(values)
    histogram: dict[int, int] = {}
    for v in values:
        histogram[v] = histogram.get(v, 0) + 1
    assert lower_median(histogram.items()) == ordered[(len(ordered) - 1) // 2]


def test_lower_median_of_nothing():
    assert lower_median([]) is None
    assert lower_median([(3, 0)]) is None


def test_hide_hides_small_counts_of_people_only():
    assert [hide(n, 5) for n in (0, 1, 4, 5, 6)] == [0, SUPPRESSED, SUPPRESSED, 5, 6]
    assert hide_split([30, 4], 5) == [SUPPRESSED, SUPPRESSED]  # else 34 - 30 reveals it
    assert hide_split([30, 0], 5) == [30, 0]


def agg(**kw) -> Aggregates:
    base = {
        "range_from": T0,
        "range_to": T1,
        "events": 100,
        "first_event": T0,
        "last_event": T1,
        "unknown_kinds": {},
        "people": (),
        "minutes": (),
        "retention": (),
        "counts": (),
        "moderation": (),
        "reactions": (),
        "polls": (),
        "questions": (),
        "checkins": (),
        "hall_votes": (),
        "incidents": (),
    }
    base.update(kw)
    return Aggregates(**base)


def test_figures_from_person_groups():
    groups = (
        PersonGroup(unit="stage:impact", onsite=False, minutes=0, took_part=False, people=10),
        PersonGroup(unit="stage:impact", onsite=False, minutes=3, took_part=True, people=6),
        PersonGroup(unit="stage:impact", onsite=False, minutes=12, took_part=True, people=7),
        PersonGroup(unit="stage:impact", onsite=True, minutes=40, took_part=False, people=5),
        PersonGroup(unit="stage:radio", onsite=False, minutes=9, took_part=True, people=2),
    )
    m = T0 + timedelta(hours=3)
    minutes = (
        MinuteRow(unit="stage:impact", minute=m, present=20, attentive=11),
        MinuteRow(unit="stage:impact", minute=m + timedelta(minutes=1), present=20, attentive=3),
        MinuteRow(unit="stage:impact", minute=m + timedelta(minutes=2), present=7, attentive=3),
    )
    figures = compute(agg(people=groups, minutes=minutes), units(PROGRAMME, T0, T1), k=5)
    rows = {r["unit"]: r for r in figures.table("reach").records()}
    impact = rows["stage:impact"]
    assert impact["reached"] == 28 and impact["online"] == 23 and impact["onsite"] == 5
    assert impact["attentive_minutes"] == 6 * 3 + 7 * 12 + 5 * 40
    # 18 people with watch time: six 3s, seven 12s, five 40s -> the 9th smallest is 12.
    assert impact["median_minutes"] == 12
    assert impact["stayed"] == 12 and impact["took_part"] == 7
    assert (impact["peak"], impact["peak_at"]) == (20, m)  # the earliest minute at the peak
    radio = rows["stage:radio"]
    assert radio["reached"] is SUPPRESSED and radio["attentive_minutes"] is SUPPRESSED
    assert radio["median_minutes"] is SUPPRESSED and radio["online"] is SUPPRESSED
    bins = {r["unit"]: r for r in figures.table("watch_time").records()}["stage:impact"]
    assert (bins["min_1_4"], bins["min_5_14"], bins["min_15_29"], bins["min_30_59"]) == (
        6,
        7,
        0,
        5,
    )
    series = {s.unit: s for s in figures.concurrency}["stage:impact"]
    assert [n for _m, n in series.points] == [20, 20, 7]


def test_retention_is_a_share_of_the_cohort_and_hidden_when_small():
    rows = (
        RetentionRow(unit="item:thema-impact", offset=-1, people=40),
        RetentionRow(unit="item:thema-impact", offset=0, people=30),
        RetentionRow(unit="item:thema-impact", offset=10, people=20),
        RetentionRow(unit="item:thema-impact", offset=50, people=3),
        RetentionRow(unit="item:thema-nabijheid", offset=-1, people=4),
        RetentionRow(unit="item:thema-nabijheid", offset=0, people=4),
    )
    table = compute(agg(retention=rows), units(PROGRAMME, T0, T1)).table("retention")
    assert table.rows == (
        ("item:thema-impact", 0, 30, 0.75),
        ("item:thema-impact", 10, 20, 0.5),
        ("item:thema-impact", 50, SUPPRESSED, SUPPRESSED),
        ("item:thema-nabijheid", 0, SUPPRESSED, SUPPRESSED),
    )


def test_k_must_be_positive():
    with pytest.raises(ValueError, match="k must be"):
        compute(agg(), units(PROGRAMME, T0, T1), k=0)


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("=SUM(A1)", "'=SUM(A1)"),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("An", "An"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_csv_cells_are_defused(text, cell):
    assert safe_cell(text) == cell


def test_csv_marks_suppressed_cells_and_defuses_text():
    figures = compute(
        agg(
            people=(
                PersonGroup(unit="stage:radio", onsite=False, minutes=9, took_part=True, people=2),
            )
        ),
        units(PROGRAMME, T0, T1),
    )
    text = csv_text(figures.table("reach"), delimiter=";")
    header, *lines = text.splitlines()
    assert header.startswith("unit;kind;title;reached;") and header.endswith(";suppressed")
    radio = next(line for line in lines if line.startswith("stage:radio;"))
    assert ";;" in radio and radio.endswith(
        "reached online onsite attentive_minutes median_minutes stayed took_part"
    )


def test_live_view_keeps_peaks_and_shares():
    now = T0 + timedelta(hours=2)
    counts = LiveCounts(
        now=now,
        stages=[StageNow("plenary", 40, 30, 12)],
        polls=[PollNow("a" * 32, "Vraag?", ("stage:plenary",), now, 10, 4, 20)],
        held_lines=2,
        pending_questions=5,
        alerts=[],
    )
    view, peaks = live_view(counts, ("plenary", "impact"), {})
    stages = {s["stage"]: s for s in view["stages"]}
    assert stages["plenary"] == {
        "stage": "plenary",
        "viewers": 40,
        "peak": 40,
        "peak_at": now.isoformat(),
        "attentive_share": 0.75,
        "chat_per_minute": 12,
    }
    assert stages["impact"]["viewers"] == 0 and stages["impact"]["attentive_share"] is None
    assert view["polls"][0]["participation"] == 0.5
    assert view["backlog"] == {"held_lines": 2, "pending_questions": 5}
    later = LiveCounts(now + timedelta(seconds=1), [StageNow("plenary", 35, 1, 0)], [], 0, 0, [])
    view2, peaks2 = live_view(later, ("plenary",), peaks)
    assert view2["stages"][0]["peak"] == 40 and view2["stages"][0]["viewers"] == 35
    assert peaks2 == peaks


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.ORGANISER, True),
        (Role.MODERATOR, False),
        (Role.VIEWER, False),
        (Role.BROADCASTER, False),
    ],
)
def test_only_organisers_follow_the_live_view(role, allowed):
    claims = Claims(
        sub="x",
        role=role,
        scopes=("*",),
        name="",
        jti="j",
        iss="i",
        aud="a",
        iat=T0,
        nbf=T0,
        exp=T1,
    )
    assert claims.may_subscribe("org") is allowed
    assert not claims.may_subscribe("mod:org")
    assert PROGRAMME.has_topic("org") and not PROGRAMME.has_topic("mod:org")
