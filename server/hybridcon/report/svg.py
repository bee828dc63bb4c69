"""Inline SVG charts: no script, no external file, readable when printed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, tzinfo
from html import escape

from hybridcon.core.report.figures import Series, Suppressed

PALETTE = ("#1b5e9f", "#c0392b", "#2e7d32", "#8e44ad", "#d35400", "#00838f", "#6d4c41", "#455a64")


def line_chart(
    series: Sequence[Series],
    tz: tzinfo,
    *,
    title: str,
    empty: str,
    elapsed: bool = False,
    legend: Callable[[Series], str] | None = None,
) -> str:
    """Counts over time, one line per series (suppressed points are gaps).

    Args:
        elapsed: label the time axis in minutes from the first point (retention), not
            by the clock.
        legend: a series' label (default: its unit without ``stage:``).
    """
    width, height, left, bottom, top, right = 760, 260, 48, 28, 12, 170
    points = [(m, n) for s in series for m, n in s.points if not isinstance(n, Suppressed)]
    if not points:
        return f'<p class="empty">{escape(empty)}</p>'
    t0 = min(m for m, _ in points)
    t1 = max(m for m, _ in points)
    span = max((t1 - t0).total_seconds(), 60.0)
    top_value = max(max(n for _, n in points), 1)
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(m: datetime) -> float:
        return left + (m - t0).total_seconds() / span * plot_w

    def y(n: int) -> float:
        return top + plot_h - n / top_value * plot_h

    parts = [
        f'<svg viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" class="chart">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#333"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">{top_value}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>',
        f'<text x="{left}" y="{height - 8}" font-size="11">'
        f"{'0 min' if elapsed else f'{t0.astimezone(tz):%H:%M}'}</text>",
        f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end" font-size="11">'
        f"{f'{span / 60:.0f} min' if elapsed else f'{t1.astimezone(tz):%H:%M}'}</text>",
    ]
    name = legend or (lambda s: s.unit.removeprefix("stage:"))
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for m, n in s.points:
            if isinstance(n, Suppressed):
                runs.append([])
            else:
                runs[-1].append(f"{x(m):.1f},{y(n):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="1.5" fill="{colour}"/>')
            elif run:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                    f'points="{" ".join(run)}"/>'
                )
        ly = top + 12 + i * 16
        parts.append(
            f'<rect x="{width - right + 12}" y="{ly - 9}" width="10" height="10" '
            f'fill="{colour}"/><text x="{width - right + 27}" y="{ly}" font-size="11">'
            f"{escape(name(s))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(labels: Sequence[str], values: Sequence[int | None], *, title: str) -> str:
    """Vertical bars with their values (None: a hidden cell, drawn as an empty slot)."""
    width, height, left, bottom, top = 480, 200, 20, 30, 16
    shown = [v for v in values if v is not None]
    top_value = max([*shown, 1])
    slot = (width - 2 * left) / max(len(values), 1)
    plot_h = height - top - bottom
    parts = [
        f'<svg viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" class="chart bars">'
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = left + i * slot + slot * 0.15
        if value is not None:
            h = value / top_value * plot_h
            parts.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{h:.1f}" fill="#1b5e9f"/>'
                f'<text x="{x + slot * 0.35:.1f}" y="{top + plot_h - h - 3:.1f}" '
                f'text-anchor="middle" font-size="11">{value}</text>'
            )
        parts.append(
            f'<text x="{x + slot * 0.35:.1f}" y="{height - 10}" text-anchor="middle" '
            f'font-size="11">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
