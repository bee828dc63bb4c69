"""Spreadsheet-safe CSV cells: text that a spreadsheet would run as a formula is defused.

Excel, LibreOffice and Google Sheets treat a cell that begins with ``=``, ``+``, ``-``
or ``@`` as a formula (and some also after a tab or carriage return), so a chat-derived
or attendee-supplied text such as ``=HYPERLINK(...)`` would run when an organiser opens
the file (OWASP, "CSV Injection"). Such a cell gets a leading apostrophe, which the
spreadsheet shows as text and hides.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(text: str) -> str:
    """``text`` as a CSV cell that no spreadsheet evaluates.

    Returns:
        ``text`` unchanged, or with ``'`` in front when it begins with one of
        :data:`FORMULA_STARTS`.
    """
    return "'" + text if text.startswith(FORMULA_STARTS) else text
