"""The votes benchmark (issue 14), small, so that it cannot rot: the one command
(``python -m tests.bench.votes``) with 300 voters against a real ``hybridcon serve``. It
asserts only behaviour, never a figure: every vote got its ack, each outcome is the one the
protocol gives a first and a second vote, and the tally the moderator closed, the last
push a viewer saw and the rows in PostgreSQL all equal the truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_300_voters_voting_twice_are_counted_exactly(tmp_path: Path) -> None:
    out = tmp_path / "votes.json"
    # No pinning: the suite's processes share this machine's cores as they come.
    command = [
        sys.executable,
        "-m",
        "tests.bench.votes",
        "--voters",
        "300",
        "--agents",
        "2",
        "--server-cpu",
        "-1",
        "--client-cpu",
        "-1",
        "--json",
        str(out),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    f = json.loads(out.read_text())
    assert f["connected"] == 300 and f["failed"] == 0
    assert f["sent"] == f["expected_votes"] == 600
    assert f["acked"] == 600 and f["errors"] == {}, f
    # A first vote counts; half change their mind, half send the same answer again.
    assert f["outcomes"] == {"1:counted": 300, "2:changed": 150, "2:unchanged": 150}
    assert f["unexpected_outcomes"] == 0
    assert sum(f["truth"].values()) == f["truth_voters"] == 300
    assert f["closed_counts"] == f["truth"] and f["closed_voters"] == 300
    assert f["pushed_counts"] == f["truth"] and f["pushed_voters"] == 300
    assert f["stored_counts"] == f["truth"]
    assert f["stored_rows"] == f["stored_voters"] == 300
    assert f["pushes"] > 0 and f["closed_by_server"] == 0
    for goal in ("counted exactly", "every ack within", "vote messages/s", "results pushed at"):
        assert goal in done.stdout, done.stdout
