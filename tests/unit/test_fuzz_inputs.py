"""Fuzzing the two files people hand to hybridcon: the ticketing CSV and the programme TOML.

Whatever the bytes, the parser answers with the documented refusal (``Invalid`` for the
CSV, ``ConfigError`` for the programme) naming the problem, or with a result that holds
its own rules; never another exception. Budgets are small: this runs in every
``make test``; raise ``HYPOTHESIS_PROFILE=long`` for a longer run.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridcon.core.invites import parse_registrations
from hybridcon.core.programme import parse_programme
from hybridcon.errors import ConfigError, Invalid

PROGRAMME = Path(__file__).resolve().parents[2] / "config" / "sociaalwerkconferentie-2022.toml"
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
BUDGET = settings(
    max_examples=2000 if LONG else 150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Cells that look like what spreadsheets and people produce, and what attackers try.
CELL = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "Ann",
            "ann@example.org",
            '=HYPERLINK("http://x")',
            "+cmd|' /C calc'!A0",
            "@SUM(1+1)",
            "viewer",
            "moderator",
            "organiser",
            "stage:plenary",
            "hall:plenary",
            "*",
            "a" * 200,
            '"quoted, with comma"',
            "\ufeff",
            "\x00",
        ]
    ),
)
COLUMN = st.sampled_from(
    ["ticket_id", "name", "first_name", "last_name", "email", "role", "scopes"]
) | st.text(max_size=10)
# Half the headers are the usable ones with extras, so rows get checked too.
HEADERS = st.lists(COLUMN, min_size=1, max_size=7) | st.lists(COLUMN, max_size=3).map(
    lambda extra: ["ticket_id", "name", *extra]
)


@st.composite
def csv_files(draw: st.DrawFn) -> str:
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    header = draw(HEADERS)
    rows = draw(st.lists(st.lists(CELL, min_size=0, max_size=len(header) + 1), max_size=8))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [delimiter.join(header), *(delimiter.join(row) for row in rows)]
    return draw(st.sampled_from(["", "\ufeff"])) + newline.join(lines)


T = TypeVar("T")


def attempt(call: Callable[[], T], refusal: type[Exception]) -> T | Exception:
    """What ``call`` returns, or the documented refusal it raised (anything else raises)."""
    try:
        return call()
    except refusal as exc:
        return exc


@BUDGET
@given(csv_files())
def test_the_invite_importer_refuses_clearly_or_gives_sound_registrations(text: str) -> None:
    registrations = attempt(lambda: parse_registrations(text), Invalid)
    if isinstance(registrations, Invalid):
        assert registrations.message  # names the problem
        return
    assert isinstance(registrations, list) and registrations
    tickets = [r.ticket_id for r in registrations]
    assert len(set(tickets)) == len(tickets)
    for r in registrations:
        assert r.ticket_id.strip() and r.name.strip()


@BUDGET
@given(st.text(max_size=400))
def test_the_invite_importer_survives_any_text(text: str) -> None:
    outcome = attempt(lambda: parse_registrations(text), Invalid)
    assert not isinstance(outcome, Invalid) or outcome.message


def _mutations() -> st.SearchStrategy[str]:
    """The real programme with one line dropped, duplicated or changed."""
    lines = PROGRAMME.read_text("utf-8").splitlines()
    # Only lines that say something (the file is mostly comments).
    data = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]

    @st.composite
    def mutate(draw: st.DrawFn) -> str:
        out = list(lines)
        for _ in range(draw(st.integers(1, 3))):
            i = min(draw(st.sampled_from(data)), len(out) - 1)
            how = draw(st.sampled_from(["drop", "dup", "text", "swap-digits", "truncate"]))
            if how == "drop":
                del out[i]
            elif how == "dup":
                out.insert(i, out[i])
            elif how == "text":
                out[i] = draw(st.text(max_size=40))
            elif how == "swap-digits":
                out[i] = out[i].translate(str.maketrans("0123456789", "9876543210"))
            else:
                out[i] = out[i][: draw(st.integers(0, max(0, len(out[i]) - 1)))]
        return "\n".join(out)

    return mutate()


@BUDGET
@given(_mutations())
def test_the_programme_loader_refuses_clearly_or_gives_a_sound_programme(text: str) -> None:
    programme = attempt(lambda: parse_programme(text, source="fuzzed.toml"), ConfigError)
    if isinstance(programme, ConfigError):
        assert "fuzzed.toml" in str(programme)
        return
    # Accepted: it must still be valid TOML and hold its own rules.
    tomllib.loads(text)
    ids = [stage.id for stage in programme.stages]
    assert len(set(ids)) == len(ids)
    for session in programme.sessions:
        assert session.starts_at < session.ends_at


@BUDGET
@given(st.text(max_size=300))
def test_the_programme_loader_survives_any_text(text: str) -> None:
    outcome = attempt(lambda: parse_programme(text, source="fuzzed.toml"), ConfigError)
    assert not isinstance(outcome, ConfigError) or "fuzzed.toml" in str(outcome)
