"""The report's figures as one self-contained HTML page, CSV files and one JSON document.

The HTML has no script, no external stylesheet, font or image: charts are inline SVG, so
opening it makes no request and printing it (or turning it into a PDF) shows the same.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from html import escape
from typing import Any

import orjson

from hybridcon.core.csvcells import csv_document
from hybridcon.core.report.figures import (
    WATCH_BINS,
    Figures,
    Series,
    Suppressed,
    Table,
    Value,
)
from hybridcon.report.i18n import word
from hybridcon.report.svg import bar_chart, line_chart

SUPPRESSED_MARK = "<{k}"

_CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;font-size:10.5pt;color:#111;margin:2em;
max-width:1100px}
h1{font-size:18pt;margin-bottom:.2em}h2{font-size:13pt;margin-top:1.6em;
border-bottom:1px solid #999;break-after:avoid}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:9pt;break-inside:auto}
th,td{border:1px solid #bbb;padding:2px 6px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#eee}
tr{break-inside:avoid}th small{color:#555;font-weight:normal}
.hidden{color:#777;font-style:italic}.meta{color:#333}.empty{color:#777}
svg.chart{max-width:100%;height:auto;border:1px solid #ddd;margin:.4em 0}
svg.bars{max-width:480px}
@page{size:A4;margin:12mm}
@media print{body{margin:0;font-size:9pt}table{font-size:7pt;width:100%}
th,td{padding:1px 3px}svg.chart{max-width:170mm}svg.bars{max-width:110mm}}
"""


def _cell_text(value: Value, k: int, tz: tzinfo) -> str:
    if isinstance(value, Suppressed):
        return SUPPRESSED_MARK.format(k=k)
    if value is None:
        return "–"
    if isinstance(value, datetime):
        return value.astimezone(tz).strftime("%H:%M")
    if isinstance(value, float):
        return f"{value:.1%}" if value <= 1.0 else f"{value:.2f}"
    return str(value)


def _html_table(table: Table, k: int, tz: tzinfo, lang: str) -> str:
    head = "".join(
        f"<th>{escape(word('c_' + c.key, lang))}"
        + (f" <small>{c.definition}</small>" if c.definition else "")
        + "</th>"
        for c in table.columns
    )
    body = []
    kinds = [c.key == "kind" for c in table.columns]
    for row in table.rows:
        cells = []
        for value, is_kind in zip(row, kinds, strict=True):
            text = escape(_cell_text(value, k, tz))
            if is_kind and isinstance(value, str):
                # Unit and incident kinds in the page's language (CSV/JSON keep the codes).
                named = word(f"k_{value}", lang)
                text = escape(value if named == f"k_{value}" else named)
            if isinstance(value, Suppressed):
                cells.append(f'<td class="n hidden">{text}</td>')
            elif isinstance(value, int | float):
                cells.append(f'<td class="n">{text}</td>')
            else:
                cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        body.append(
            f'<tr><td colspan="{len(table.columns)}" class="empty">'
            f"{escape(word('none', lang))}</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html(figures: Figures, *, title: str, tz: tzinfo, lang: str, generated: datetime) -> str:
    """The whole report as one HTML document (no external resource, no script).

    Args:
        figures: the computed figures.
        title: the event's title.
        tz: the event's time zone (times are shown in it).
        lang: ``nl`` or ``en``.
        generated: when the report was made (shown in the header).
    """
    k = figures.k

    def w(key: str) -> str:
        return escape(word(key, lang))

    k_note = word("k_note", lang).format(k=k, mark=SUPPRESSED_MARK.format(k=k))
    parts = [
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)} — {w('report')}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)} — {w('report')}</h1>",
        f'<p class="meta">{w("range")}: {figures.range_from.astimezone(tz):%Y-%m-%d %H:%M}'
        f" – {figures.range_to.astimezone(tz):%Y-%m-%d %H:%M} ({tz}) · "
        f"{figures.events} {w('events')} · {w('generated')} "
        f"{generated.astimezone(tz):%Y-%m-%d %H:%M}</p>",
        f'<p class="meta">{escape(k_note)} {w("definitions")}</p>',
    ]
    if figures.unknown_kinds:
        kinds = ", ".join(f"{kind} ({n})" for kind, n in sorted(figures.unknown_kinds.items()))
        parts.append(f'<p class="meta">{escape(word("unknown", lang).format(kinds=kinds))}</p>')
    parts.append(f"<h2>{w('concurrency_chart')} <small>R8</small></h2>")
    parts.append(
        line_chart(
            figures.concurrency, tz, title=word("concurrency_chart", lang), empty=word("none", lang)
        )
    )
    day = next((r for r in figures.table("watch_time").rows if r[0] == "day"), None)
    if day is not None:
        labels = [f"{lo}–{hi}" if hi else f"≥{lo}" for lo, hi in WATCH_BINS]
        values = [v if isinstance(v, int) else None for v in day[2:]]
        parts.append(f"<h2>{w('watch_chart')} <small>R10</small></h2>")
        parts.append(bar_chart(labels, values, title=word("watch_chart", lang)))
    parts += _series_charts(figures, tz, lang)
    for table in figures.tables:
        if table.id in CHART_ONLY:
            continue  # per minute they are long: drawn above, tables in CSV and JSON
        parts.append(
            f"<h2>{w('t_' + table.id)} <small>{table.definition}</small></h2>"
            + _html_table(table, k, tz, lang)
        )
    parts.append("</body></html>")
    return "\n".join(parts)


# Tables with a row per minute (or 5 minutes) and unit: charts in the page, tables in the
# CSV and JSON files.
CHART_ONLY = frozenset({"concurrency", "retention", "reactions"})


def _series_charts(figures: Figures, tz: tzinfo, lang: str) -> list[str]:
    """Retention per item (people of the cohort, by clock time) and reactions per stage."""
    out: list[str] = []
    retention: dict[str, list[tuple[int, int | Suppressed]]] = {}
    for unit, offset, people, _share in figures.table("retention").rows:
        if isinstance(unit, str) and isinstance(offset, int):
            value = people if isinstance(people, int | Suppressed) else 0
            retention.setdefault(unit, []).append((offset, value))
    if retention:
        base = datetime(2000, 1, 1, tzinfo=tz)
        series = tuple(
            Series(
                unit,
                unit.removeprefix("item:"),
                tuple((base + timedelta(minutes=o), v) for o, v in points),
            )
            for unit, points in sorted(retention.items())
        )
        out.append(f"<h2>{escape(word('t_retention', lang))} <small>R11</small></h2>")
        out.append(
            line_chart(
                series,
                tz,
                title=word("t_retention", lang),
                empty=word("none", lang),
                elapsed=True,
                legend=lambda s: s.title,
            )
        )
    reactions: dict[str, list[tuple[datetime, int | Suppressed]]] = {}
    for unit, start, count in figures.table("reactions").rows:
        if isinstance(unit, str) and isinstance(start, datetime) and isinstance(count, int):
            reactions.setdefault(unit, []).append((start, count))
    for unit, points in reactions.items():
        # A 5-minute bucket without reactions has no row; it is a zero, not a gap to
        # draw across.
        counts = dict(points)
        filled: list[tuple[datetime, int | Suppressed]] = []
        t, last = points[0][0], points[-1][0]
        while t <= last:
            filled.append((t, counts.get(t, 0)))
            t += timedelta(minutes=5)
        reactions[unit] = filled
    if reactions:
        out.append(f"<h2>{escape(word('t_reactions', lang))} <small>R13</small></h2>")
        out.append(
            line_chart(
                tuple(Series(u, u, tuple(p)) for u, p in sorted(reactions.items())),
                tz,
                title=word("t_reactions", lang),
                empty=word("none", lang),
            )
        )
    return out


def _csv_value(value: Value) -> object:
    if isinstance(value, Suppressed):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def csv_text(table: Table, *, delimiter: str = ",") -> str:
    """One table as CSV (header row = column keys).

    A hidden cell is empty and its row's ``suppressed`` column names the hidden
    columns (R19). Text cells are defused against formula injection.
    """
    return csv_document(
        [c.key for c in table.columns] + ["suppressed"],
        (
            [_csv_value(v) for v in row]
            + [
                " ".join(
                    c.key
                    for c, v in zip(table.columns, row, strict=True)
                    if isinstance(v, Suppressed)
                )
            ]
            for row in table.rows
        ),
        delimiter=delimiter,
    )


def _json_value(value: Value) -> Any:
    if isinstance(value, Suppressed):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def json_bytes(figures: Figures, *, title: str, generated: datetime) -> bytes:
    """Every figure with its definition's id (R-number), as JSON.

    Each table is ``{"definition", "columns": [{"key", "definition"}], "rows": [...]}``;
    a row is an object by column key, and ``"suppressed": [keys]`` when it hides cells.
    """
    tables: dict[str, Any] = {}
    for table in figures.tables:
        rows = []
        for row in table.rows:
            record = {c.key: _json_value(v) for c, v in zip(table.columns, row, strict=True)}
            hidden = [
                c.key for c, v in zip(table.columns, row, strict=True) if isinstance(v, Suppressed)
            ]
            if hidden:
                record["suppressed"] = hidden
            rows.append(record)
        tables[table.id] = {
            "definition": table.definition,
            "columns": [{"key": c.key, "definition": c.definition} for c in table.columns],
            "rows": rows,
        }
    return orjson.dumps(
        {
            "title": title,
            "generated": generated.isoformat(),
            "range": {"from": figures.range_from.isoformat(), "to": figures.range_to.isoformat()},
            "k": figures.k,
            "events": figures.events,
            "unknown_kinds": figures.unknown_kinds,
            "definitions": "docs/report-definitions.md",
            "tables": tables,
        },
        option=orjson.OPT_INDENT_2,
    )
