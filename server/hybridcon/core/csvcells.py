"""Cells for CSV files people open in a spreadsheet, made safe from formula injection.

A spreadsheet treats a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula
(and a leading tab or carriage return can hide one), so a name such as
``=HYPERLINK("https://evil.example","click")`` from a ticketing export would run when an
organiser opens ``invites export`` in Excel or LibreOffice. OWASP's advice ("CSV
Injection") is to prefix such cells with a single quote, which spreadsheets show as
text. Every CSV hybridcon writes for people (invite links, the attendance export, the
report's tables) is written by :func:`csv_document`, which puts text through
:func:`safe_cell`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

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


def csv_document(
    header: Sequence[str], rows: Iterable[Iterable[object]], *, delimiter: str = ","
) -> str:
    """A CSV file's text: the header, then the rows, lines ended by CRLF (RFC 4180).

    Text cells go through :func:`safe_cell`; ``None`` is an empty cell; other values
    (counts, which may be negative) are written as ``str()``.
    """
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(
            [safe_cell(v) if isinstance(v, str) else "" if v is None else str(v) for v in row]
        )
    return out.getvalue()
