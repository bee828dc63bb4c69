"""The fault suite's one way of counting: what was sent, stored, delivered and doubled.

Every fault test counts its lines, votes or events here, from three places:

* **sent**: what the server acknowledged to the clients that sent it (a ``result``);
* **stored**: what PostgreSQL holds of those (rows, or engagement events);
* **delivered**: what the other clients received of those, after applying the
  documented client rule (a push whose ``seq`` is not above the last applied is
  ignored), i.e. what their users saw; the smallest over the receivers;
* **doubled**: anything stored twice, or seen twice by one receiver.

``lost`` is what was acknowledged but is missing from storage or from a receiver. The
counts of a run are collected per session and printed as one table at its end
(``conftest.py``), and written to ``tests/artifacts/faults.json`` for docs/reliability.md.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "faults.json"


@dataclass
class Count:
    """One row of the table: one kind of thing under one fault."""

    fault: str
    what: str  # "chat lines", "votes", "events", ...
    sent: int
    stored: int
    delivered: int | None  # None: nobody receives this kind (e.g. engagement events)
    doubled: int
    lost_stored: int
    lost_delivered: int
    note: str = ""
    # Acknowledged ones missing from storage that the fault may take by design (SIGKILL:
    # what the engagement writer held in memory); reported, asserted by the test itself.
    allowed_loss: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.lost_stored + self.lost_delivered


RESULTS: list[Count] = []


def count(
    fault: str,
    what: str,
    *,
    sent: Collection[str],
    stored: Iterable[str],
    received: Mapping[str, Iterable[str]] | None = None,
    totals: Mapping[str, int] | None = None,
    note: str = "",
) -> Count:
    """Count one kind of thing under one fault and keep the row for the table.

    Args:
        fault: the fault's name in the table.
        what: what is counted.
        sent: keys of what the server acknowledged (unique per thing: a text, a voter).
        stored: the keys found in PostgreSQL, one per row (a key twice is a double).
        received: per receiving client, the keys it saw after the client rule, one per
            time seen (a key twice is a double); None when nothing is delivered.
        totals: instead of ``received``, per receiving client the total it was shown
            (a poll's ``voters``): below the acknowledged is a loss, above what is stored
            a double.
        note: said in the table's last column.

    Returns:
        The row (also kept for the session's table).
    """
    acked = set(sent)
    assert len(acked) == len(sent), "sent keys must be unique"
    rows = Counter(stored)
    doubled = sum(n - 1 for n in rows.values() if n > 1)
    lost_stored = len(acked - rows.keys())
    delivered: int | None = None
    lost_delivered = 0
    if received is not None:
        per_client = []
        for keys in received.values():
            seen = Counter(keys)
            doubled += sum(n - 1 for key, n in seen.items() if n > 1 and key in acked)
            got = len(acked & seen.keys())
            per_client.append(got)
            lost_delivered = max(lost_delivered, len(acked) - got)
        delivered = min(per_client) if per_client else 0
    elif totals is not None:
        delivered = min(totals.values()) if totals else 0
        lost_delivered = max(0, len(acked) - delivered)
        doubled += sum(max(0, shown - len(rows)) for shown in totals.values())
    row = Count(
        fault=fault,
        what=what,
        sent=len(acked),
        stored=len(acked & rows.keys()),
        delivered=delivered,
        doubled=doubled,
        lost_stored=lost_stored,
        lost_delivered=lost_delivered,
        note=note,
        extra={"stored_not_acknowledged": len(rows.keys() - acked)},
    )
    RESULTS.append(row)
    return row


def table(rows: Iterable[Count]) -> str:
    """The rows as a Markdown table (the form docs/reliability.md shows)."""
    lines = [
        "| fault | what | sent | stored | delivered | doubled | lost | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        delivered = "–" if r.delivered is None else str(r.delivered)
        lines.append(
            f"| {r.fault} | {r.what} | {r.sent} | {r.stored} | {delivered} | {r.doubled} "
            f"| {r.lost} | {r.note} |"
        )
    return "\n".join(lines)


def write_artifact(rows: list[Count]) -> None:
    """Keep the run's rows as JSON beside the other test artifacts."""
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
