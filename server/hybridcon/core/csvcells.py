"""Cells for CSV files people open in a spreadsheet, made safe from formula injection.

A spreadsheet treats a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula
(and a leading tab or carriage return can hide one), so a name such as
``=HYPERLINK("https://evil.example","click")`` from a ticketing export would run when an
organiser opens ``invites export`` in Excel or LibreOffice. OWASP's advice ("CSV
Injection") is to prefix such cells with a single quote, which spreadsheets show as
text. Every CSV hybridcon writes for people (invite links, and the report's CSVs when
they come) goes through :func:`safe_cell`.
"""

from __future__ import annotations

from collections.abc import Iterable

# OWASP's list: the formula triggers and the two control characters that can precede one.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """``value`` as CSV cell text that a spreadsheet will not evaluate.

    Args:
        value: the cell's content; ``None`` becomes an empty cell, anything else its
            ``str()``.

    Returns:
        The text, with a ``'`` in front when it starts with ``= + - @``, a tab or a
        carriage return; otherwise unchanged.
    """
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def safe_row(values: Iterable[object]) -> list[str]:
    """Every cell of a row through :func:`safe_cell`."""
    return [safe_cell(value) for value in values]
