"""The report's figures from the aggregates, by the rules of ``docs/report-definitions.md``.

Pure: :func:`compute` takes :class:`~hybridcon.core.report.aggregates.Aggregates` (what
PostgreSQL summed up), the units (from the programme) and *k*, and returns tables whose
cells are numbers, texts, times or :data:`SUPPRESSED` (R19). Every table and column
names the definition it follows, so the JSON can carry it beside each figure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from hybridcon.core.report.aggregates import Aggregates, PersonGroup
from hybridcon.core.report.units import Unit

DEFAULT_K: Final = 5
STAYED_MINUTES: Final = 5  # R12
TOP_QUESTIONS: Final = 10  # R15
WATCH_BINS: Final = ((1, 4), (5, 14), (15, 29), (30, 59), (60, None))  # R10


class Suppressed:
    """A cell hidden because it counts fewer than k people (R19)."""

    _instance: Suppressed | None = None

    def __new__(cls) -> Suppressed:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "SUPPRESSED"


SUPPRESSED: Final = Suppressed()
Value = int | float | str | datetime | Suppressed | None


@dataclass(frozen=True, slots=True)
class Column:
    """A column: its key (also the CSV header and JSON field) and its definition id."""

    key: str
    definition: str | None = None


@dataclass(frozen=True, slots=True)
class Table:
    """One table of the report (one CSV file, one HTML table, one JSON list)."""

    id: str
    definition: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Value, ...], ...]

    def column(self, key: str) -> int:
        """The index of column ``key``.

        Raises:
            KeyError: no such column.
        """
        for i, column in enumerate(self.columns):
            if column.key == key:
                return i
        raise KeyError(key)

    def records(self) -> list[dict[str, Value]]:
        """The rows as dicts by column key."""
        keys = [c.key for c in self.columns]
        return [dict(zip(keys, row, strict=True)) for row in self.rows]


@dataclass(frozen=True, slots=True)
class Series:
    """A stage's concurrent viewers per minute (R8), for the charts."""

    unit: str
    title: str
    points: tuple[tuple[datetime, int | Suppressed], ...]


@dataclass(frozen=True, slots=True)
class Figures:
    """Every figure of a report.

    Attributes:
        range_from, range_to: the range reported.
        k: the suppression threshold used.
        events: log rows in the range.
        unknown_kinds: kinds ignored, with their counts.
        tables: the tables, in the report's order.
        concurrency: one series per stage with anyone present.
    """

    range_from: datetime
    range_to: datetime
    k: int
    events: int
    unknown_kinds: dict[str, int]
    tables: tuple[Table, ...]
    concurrency: tuple[Series, ...]

    def table(self, table_id: str) -> Table:
        """The table ``table_id``.

        Raises:
            KeyError: no such table.
        """
        for table in self.tables:
            if table.id == table_id:
                return table
        raise KeyError(table_id)


def hide(count: int, k: int) -> int | Suppressed:
    """A count of people as shown: :data:`SUPPRESSED` when ``1 <= count < k`` (R19)."""
    return SUPPRESSED if 0 < count < k else count


def hide_split(parts: Sequence[int], k: int) -> list[int | Suppressed]:
    """Parts of one split: if any part is hidden, every part is (R19, secondary)."""
    if any(0 < p < k for p in parts):
        return [SUPPRESSED for _ in parts]
    return list(parts)


def lower_median(histogram: Iterable[tuple[int, int]]) -> int | None:
    """The lower median of values given as ``(value, how many)`` pairs (R10).

    Returns:
        The ⌈n/2⌉-th smallest value, or None when there are none.
    """
    pairs = sorted((v, n) for v, n in histogram if n > 0)
    total = sum(n for _, n in pairs)
    if total == 0:
        return None
    rank = (total + 1) // 2
    seen = 0
    for value, n in pairs:
        seen += n
        if seen >= rank:
            return value
    raise AssertionError("unreachable: rank is within the total")


@dataclass
class _UnitPeople:
    online: int = 0
    onsite: int = 0
    minutes: int = 0
    stayed: int = 0
    took_part: int = 0

    @property
    def reached(self) -> int:
        return self.online + self.onsite


def _people(
    groups: Iterable[PersonGroup],
) -> tuple[dict[str, _UnitPeople], dict[str, dict[int, int]]]:
    by_unit: dict[str, _UnitPeople] = defaultdict(_UnitPeople)
    histogram: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for g in groups:
        u = by_unit[g.unit]
        if g.onsite:
            u.onsite += g.people
        else:
            u.online += g.people
        u.minutes += g.minutes * g.people
        if g.minutes >= STAYED_MINUTES:
            u.stayed += g.people
            if g.took_part:
                u.took_part += g.people
        if g.minutes > 0:
            histogram[g.unit][g.minutes] += g.people
    return by_unit, histogram


def _bin(minutes: int) -> int:
    for i, (lo, hi) in enumerate(WATCH_BINS):
        if minutes >= lo and (hi is None or minutes <= hi):
            return i
    raise ValueError(minutes)


def compute(agg: Aggregates, all_units: Sequence[Unit], k: int = DEFAULT_K) -> Figures:
    """Every figure of the report (R7-R19).

    Args:
        agg: the aggregates of the range.
        all_units: the units, as :func:`hybridcon.core.report.units.units` gives them.
        k: the smallest number of people a split cell may show (R19).

    Returns:
        The figures, suppressed where R19 says.

    Raises:
        ValueError: ``k`` is below 1.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    titles = {u.id: u.title for u in all_units}
    people, histogram = _people(agg.people)
    peaks: dict[str, tuple[int, datetime | None]] = {}
    series_points: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for row in sorted(agg.minutes, key=lambda r: (r.unit, r.minute)):
        best = peaks.get(row.unit, (0, None))
        if row.present > best[0]:
            peaks[row.unit] = (row.present, row.minute)
        if row.unit.startswith("stage:"):
            series_points[row.unit].append((row.minute, row.present))

    def unit_row(unit: Unit, is_day: bool) -> tuple[Value, ...]:
        p = people.get(unit.id, _UnitPeople())
        peak, peak_at = peaks.get(unit.id, (0, None))
        median = lower_median(histogram.get(unit.id, {}).items())
        if is_day:  # day totals are shown (R19)
            return (
                unit.id,
                unit.kind,
                titles[unit.id],
                p.reached,
                p.online,
                p.onsite,
                peak,
                peak_at,
                p.minutes,
                median,
                p.stayed,
                p.took_part,
            )
        online, onsite = hide_split([p.online, p.onsite], k)
        small = 0 < p.reached < k
        return (
            unit.id,
            unit.kind,
            titles[unit.id],
            hide(p.reached, k),
            online,
            onsite,
            hide(peak, k),
            None if peak == 0 or 0 < peak < k else peak_at,
            SUPPRESSED if small else p.minutes,
            SUPPRESSED if small else median,
            hide(p.stayed, k),
            hide(p.took_part, k),
        )

    reach_columns = (
        Column("unit", "R4"),
        Column("kind", "R4"),
        Column("title"),
        Column("reached", "R7"),
        Column("online", "R3"),
        Column("onsite", "R3"),
        Column("peak", "R8"),
        Column("peak_at", "R8"),
        Column("attentive_minutes", "R9"),
        Column("median_minutes", "R10"),
        Column("stayed", "R12"),
        Column("took_part", "R12"),
    )
    groups = (
        ("reach", ("day", "stage", "theme")),
        ("items", ("item",)),
        ("online_workshops", ("online_workshop",)),
    )
    tables: list[Table] = [
        Table(
            table_id,
            "R7",
            reach_columns,
            tuple(unit_row(u, u.kind == "day") for u in all_units if u.kind in kinds),
        )
        for table_id, kinds in groups
    ]

    watch_rows: list[tuple[Value, ...]] = []
    for unit in all_units:
        if unit.kind not in ("day", "stage", "theme"):
            continue
        bins = [0] * len(WATCH_BINS)
        for minutes, n in histogram.get(unit.id, {}).items():
            bins[_bin(minutes)] += n
        shown: list[Value] = list(bins) if unit.kind == "day" else [hide(b, k) for b in bins]
        watch_rows.append((unit.id, titles[unit.id], *shown))
    tables.append(
        Table(
            "watch_time",
            "R10",
            (
                Column("unit", "R4"),
                Column("title"),
                *(Column(f"min_{lo}_{hi if hi else 'plus'}", "R10") for lo, hi in WATCH_BINS),
            ),
            tuple(watch_rows),
        )
    )

    retention_rows: list[tuple[Value, ...]] = []
    cohorts = {r.unit: r.people for r in agg.retention if r.offset == -1}
    for r in sorted(agg.retention, key=lambda r: (r.unit, r.offset)):
        if r.offset < 0:
            continue
        cohort = cohorts.get(r.unit, 0)
        if 0 < cohort < k or 0 < r.people < k:
            retention_rows.append((r.unit, r.offset, SUPPRESSED, SUPPRESSED))
        else:
            kept = round(r.people / cohort, 4) if cohort else None
            retention_rows.append((r.unit, r.offset, r.people, kept))
    tables.append(
        Table(
            "retention",
            "R11",
            (
                Column("unit", "R4"),
                Column("minute", "R11"),
                Column("people", "R11"),
                Column("share", "R11"),
            ),
            tuple(retention_rows),
        )
    )

    concurrency_rows = tuple(
        (row.unit, row.minute, hide(row.present, k), hide(row.attentive, k))
        for row in sorted(agg.minutes, key=lambda r: (r.unit, r.minute))
        if row.unit.startswith("stage:")
    )
    tables.append(
        Table(
            "concurrency",
            "R8",
            (
                Column("unit", "R4"),
                Column("minute", "R2"),
                Column("present", "R5"),
                Column("attentive", "R6"),
            ),
            concurrency_rows,
        )
    )

    counts = {c.unit: c for c in agg.counts}
    chat_rows: list[tuple[Value, ...]] = []
    for unit in all_units:
        c = counts.get(unit.id)
        if c is None:
            continue
        chatters = c.chatters if unit.kind == "day" else hide(c.chatters, k)
        chat_rows.append((unit.id, titles[unit.id], c.chat_lines, chatters, c.questions))
    tables.append(
        Table(
            "chat",
            "R13",
            (
                Column("unit", "R4"),
                Column("title"),
                Column("chat_lines", "R13"),
                Column("chatters", "R13"),
                Column("questions", "R15"),
            ),
            tuple(chat_rows),
        )
    )
    tables.append(
        Table(
            "moderation",
            "R13",
            (Column("unit", "R4"), Column("action", "R13"), Column("count", "R13")),
            tuple(
                (m.unit, m.action, m.count)
                for m in sorted(agg.moderation, key=lambda m: (m.unit, m.action))
            ),
        )
    )
    tables.append(
        Table(
            "reactions",
            "R13",
            (Column("unit", "R4"), Column("start", "R13"), Column("count", "R13")),
            tuple(
                (r.unit, r.start, r.count)
                for r in sorted(agg.reactions, key=lambda r: (r.unit, r.start))
            ),
        )
    )

    poll_rows: list[tuple[Value, ...]] = []
    result_rows: list[tuple[Value, ...]] = []
    for poll in sorted(agg.polls, key=lambda p: (p.opened_at, p.poll_id)):
        online = hide(poll.voters_online, k)
        attentive = hide(poll.attentive_at_open, k)
        if isinstance(online, Suppressed) or isinstance(attentive, Suppressed):
            share: Value = SUPPRESSED
        else:
            share = (
                round(poll.voters_online / poll.attentive_at_open, 4)
                if poll.attentive_at_open
                else None
            )
        poll_rows.append(
            (
                poll.poll_id,
                poll.question,
                poll.kind,
                poll.state,
                poll.opened_at,
                " ".join(poll.topics),
                attentive,
                online,
                hide(poll.voters_hall, k),
                share,
            )
        )
        for res in sorted(poll.results, key=lambda r: (r.origin, -r.people, r.choice)):
            result_rows.append((poll.poll_id, res.origin, res.choice, hide(res.people, k)))
    tables.append(
        Table(
            "polls",
            "R14",
            (
                Column("poll_id"),
                Column("question"),
                Column("kind"),
                Column("state"),
                Column("opened_at", "R14"),
                Column("topics"),
                Column("attentive_at_open", "R14"),
                Column("voters_online", "R14"),
                Column("voters_hall", "R14"),
                Column("participation", "R14"),
            ),
            tuple(poll_rows),
        )
    )
    tables.append(
        Table(
            "poll_results",
            "R14",
            (Column("poll_id"), Column("origin", "R14"), Column("choice"), Column("people", "R14")),
            tuple(result_rows),
        )
    )
    top = sorted(agg.questions, key=lambda q: (-q.upvoters, q.question_id))[:TOP_QUESTIONS]
    tables.append(
        Table(
            "top_questions",
            "R15",
            (
                Column("question_id"),
                Column("topic"),
                Column("text", "R15"),
                Column("upvoters", "R15"),
            ),
            tuple((q.question_id, q.topic, q.text, hide(q.upvoters, k)) for q in top),
        )
    )
    tables.append(
        Table(
            "checkins",
            "R16",
            (Column("topic", "R16"), Column("title"), Column("people", "R16")),
            tuple(
                (c.topic, _topic_title(c.topic, titles), hide(c.people, k))
                for c in sorted(agg.checkins, key=lambda c: c.topic)
            ),
        )
    )
    tables.append(
        Table(
            "hall_votes",
            "R17",
            (Column("topic", "R17"), Column("title"), Column("votes", "R17")),
            tuple(
                (h.topic, _topic_title(h.topic, titles), hide(h.people, k))
                for h in sorted(agg.hall_votes, key=lambda h: h.topic)
            ),
        )
    )
    tables.append(
        Table(
            "incidents",
            "R18",
            (
                Column("unit", "R4"),
                Column("kind", "R18"),
                Column("start", "R18"),
                Column("end", "R18"),
                Column("seconds", "R18"),
                Column("touched", "R18"),
            ),
            tuple(
                (
                    i.unit,
                    i.kind,
                    i.start,
                    i.end,
                    round((i.end - i.start).total_seconds()),
                    hide(i.touched, k),
                )
                for i in sorted(agg.incidents, key=lambda i: (i.start, i.unit, i.kind))
            ),
        )
    )
    series = tuple(
        Series(unit, titles.get(unit, unit), tuple((m, hide(n, k)) for m, n in points))
        for unit, points in sorted(series_points.items())
    )
    return Figures(
        range_from=agg.range_from,
        range_to=agg.range_to,
        k=k,
        events=agg.events,
        unknown_kinds=dict(agg.unknown_kinds),
        tables=tuple(tables),
        concurrency=series,
    )


def _topic_title(topic: str, titles: dict[str, str]) -> str:
    kind, _, ident = topic.partition(":")
    key = f"item:{ident}" if kind == "session" else topic
    return titles.get(key, topic)
