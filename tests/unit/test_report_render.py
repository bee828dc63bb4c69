"""Rendering the report: the page is self-contained and marks hidden cells; the files
appear all at once or not at all; formats and dates are read strictly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from hybridcon.core.programme import parse_programme
from hybridcon.core.report.aggregates import Aggregates, MinuteRow, PersonGroup, TimeCount
from hybridcon.core.report.figures import compute
from hybridcon.core.report.units import units
from hybridcon.report import render
from hybridcon.report.build import ceil_minute, floor_minute, parse_when
from hybridcon.report.files import ReportError, parse_formats, write_report

PROGRAMME = parse_programme(
    (Path(__file__).parents[2] / "config" / "sociaalwerkconferentie-2022.toml").read_text()
)
TZ = ZoneInfo("Europe/Brussels")
T0 = datetime(2022, 5, 5, 6, 0, tzinfo=UTC)
T1 = datetime(2022, 5, 5, 16, 0, tzinfo=UTC)


def figures():
    m = T0 + timedelta(hours=3)
    agg = Aggregates(
        range_from=T0,
        range_to=T1,
        events=1234,
        first_event=T0,
        last_event=T1,
        unknown_kinds={"teleport": 3},
        people=(
            PersonGroup(unit="stage:impact", onsite=False, minutes=12, took_part=True, people=30),
            PersonGroup(unit="stage:radio", onsite=False, minutes=9, took_part=True, people=2),
        ),
        minutes=(MinuteRow(unit="stage:impact", minute=m, present=30, attentive=20),),
        retention=(),
        counts=(),
        moderation=(),
        reactions=(
            TimeCount(unit="stage:impact", start=m, count=4),
            TimeCount(unit="stage:impact", start=m + timedelta(minutes=20), count=2),
        ),
        polls=(),
        questions=(),
        checkins=(),
        hall_votes=(),
        incidents=(),
    )
    return compute(agg, units(PROGRAMME, T0, T1))


def test_the_page_is_self_contained_and_dutch_by_default():
    page = render.html(figures(), title="SWC", tz=TZ, lang="nl", generated=T1)
    assert page.startswith("<!DOCTYPE html>") and 'lang="nl"' in page
    for forbidden in ("<script", "http://", "https://", "<link", "<img", "url("):
        assert forbidden not in page
    assert "&lt;5" in page  # the radio's hidden cells
    assert "teleport (3)" in page  # unknown kinds are named
    assert "Bereikt" in page and "Reached" not in page
    assert "<td>podium</td>" in page  # a unit's kind in Dutch
    english = render.html(figures(), title="SWC", tz=TZ, lang="en", generated=T1)
    assert "Reached" in english and 'lang="en"' in english


def test_the_json_names_each_figures_definition():
    doc = orjson.loads(render.json_bytes(figures(), title="SWC", generated=T1))
    reach = doc["tables"]["reach"]
    assert reach["definition"] == "R7"
    assert {c["key"]: c["definition"] for c in reach["columns"]}["peak"] == "R8"
    radio = next(r for r in reach["rows"] if r["unit"] == "stage:radio")
    assert radio["reached"] is None and "reached" in radio["suppressed"]
    assert doc["unknown_kinds"] == {"teleport": 3}


def test_files_appear_all_at_once_or_not_at_all(tmp_path):
    out = tmp_path / "rapport"

    def broken_printer(_html: Path, _pdf: Path) -> None:
        raise ReportError("no printer today")

    with pytest.raises(ReportError, match="no printer"):
        write_report(
            out,
            figures(),
            formats=("html", "csv", "pdf"),
            title="SWC",
            tz=TZ,
            lang="nl",
            generated=T1,
            pdf=broken_printer,
        )
    assert list(tmp_path.iterdir()) == []
    written = write_report(
        out, figures(), formats=("json",), title="SWC", tz=TZ, lang="nl", generated=T1
    )
    assert [p.name for p in written] == ["report.json"]
    # A second report replaces the first as a whole.
    write_report(out, figures(), formats=("html",), title="SWC", tz=TZ, lang="nl", generated=T1)
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rapport"]


def test_formats_and_dates_are_read_strictly():
    assert parse_formats("html, CSV,html") == ("html", "csv")
    with pytest.raises(ReportError, match="unknown format docx"):
        parse_formats("html,docx")
    with pytest.raises(ReportError):
        parse_formats(" , ")
    assert parse_when("2022-05-05", TZ, end=False) == datetime(2022, 5, 5, tzinfo=TZ)
    assert parse_when("2022-05-05", TZ, end=True) == datetime(2022, 5, 6, tzinfo=TZ)
    assert parse_when("2022-05-05T14:00", TZ, end=True) == datetime(2022, 5, 5, 14, tzinfo=TZ)
    with pytest.raises(ReportError, match="not a date"):
        parse_when("gisteren", TZ, end=False)
    t = datetime(2022, 5, 5, 9, 30, 1, tzinfo=UTC)
    assert floor_minute(t) == datetime(2022, 5, 5, 9, 30, tzinfo=UTC)
    assert ceil_minute(t) == datetime(2022, 5, 5, 9, 31, tzinfo=UTC)
    assert ceil_minute(floor_minute(t)) == floor_minute(t)
