"""The units the report gives figures for (R4): the day, stages, items, themes.

A unit is a set of windows ``(topic, from, to)``; an event belongs to the unit when its
topic is one of them and its time lies in that window. PostgreSQL receives the windows
as arrays and joins the log to them, so a unit counts a person once however many of its
topics they appear in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hybridcon.core.programme import Programme, SessionKind


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit of the report.

    Attributes:
        id: ``day``, ``stage:<id>``, ``item:<id>`` or ``theme:<id>``.
        kind: ``day``, ``stage``, ``item``, ``online_workshop`` or ``theme``.
        title: the programme's title.
        starts_at: for an item, its start (else the range's start).
        ends_at: for an item, its end (else the range's end).
        windows: ``(topic, from, to)`` triples; ``topic`` ``*`` means every stage and
            session topic.
    """

    id: str
    kind: str
    title: str
    starts_at: datetime
    ends_at: datetime
    windows: tuple[tuple[str, datetime, datetime], ...]


def units(programme: Programme, start: datetime, end: datetime) -> tuple[Unit, ...]:
    """Every unit of ``programme`` over the range ``[start, end)`` (R4).

    Items whose window falls outside the range keep their windows clipped to it; a
    window that becomes empty is dropped (the unit then simply counts nothing).
    """

    def clip(topic: str, a: datetime, b: datetime) -> tuple[tuple[str, datetime, datetime], ...]:
        lo, hi = max(a, start), min(b, end)
        return ((topic, lo, hi),) if lo < hi else ()

    out: list[Unit] = [Unit("day", "day", programme.event.title, start, end, (("*", start, end),))]
    stage_windows: dict[str, tuple[tuple[str, datetime, datetime], ...]] = {}
    for stage in programme.stages:
        windows = clip(f"stage:{stage.id}", start, end)
        stage_windows[stage.id] = windows
        out.append(Unit(f"stage:{stage.id}", "stage", stage.title, start, end, windows))
    item_windows: dict[str, tuple[tuple[str, datetime, datetime], ...]] = {}
    for session in programme.sessions:
        windows = clip(f"session:{session.id}", start, end)
        if session.stage is not None:
            windows += clip(f"stage:{session.stage}", session.starts_at, session.ends_at)
        item_windows[session.id] = windows
        kind = "online_workshop" if session.kind is SessionKind.ONLINE_WORKSHOP else "item"
        out.append(
            Unit(
                f"item:{session.id}",
                kind,
                session.title,
                session.starts_at,
                session.ends_at,
                windows,
            )
        )
    for theme in programme.themes:
        windows = tuple(
            w for s in programme.stages if s.theme == theme.id for w in stage_windows[s.id]
        ) + tuple(w for s in programme.sessions if s.theme == theme.id for w in item_windows[s.id])
        out.append(Unit(f"theme:{theme.id}", "theme", theme.title, start, end, windows))
    return tuple(out)


def window_arrays(
    all_units: tuple[Unit, ...],
) -> tuple[list[str], list[str], list[datetime], list[datetime]]:
    """The units' windows as four parallel arrays (unit, topic, from, to) for SQL."""
    unit_ids: list[str] = []
    topics: list[str] = []
    froms: list[datetime] = []
    tos: list[datetime] = []
    for unit in all_units:
        for topic, a, b in unit.windows:
            unit_ids.append(unit.id)
            topics.append(topic)
            froms.append(a)
            tos.append(b)
    return unit_ids, topics, froms, tos
