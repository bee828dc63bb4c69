"""The soak benchmark (issue 15), small, so that it cannot rot: the one command
(``python -m tests.bench.soak``) with 60 people for 80 s and a fault every 15 s (the
embedded PostgreSQL killed, hybridcon stopped with SIGTERM and started again, PostgreSQL
killed again), the samples every 5 s. It asserts only behaviour: everyone connected, every
acknowledged chat line seen by every viewer, faults injected and samples printed; never a
figure (the growth verdict needs the 30-minute run)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_short_soak_loses_nothing_across_faults() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench.soak",
            "--viewers",
            "60",
            "--chatters",
            "3",
            "--minutes",
            str(80 / 60),
            "--fault-every",
            "15",
            "--sample-every",
            "5",
            "--processes",
            "2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=250,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    faults = re.search(r"^faults: (.*)$", done.stdout, re.M)
    assert faults is not None and "hybridcon-sigterm" in faults.group(1), done.stdout
    audience = re.search(r"^audience: (\{.*\})$", done.stdout, re.M)
    assert audience is not None, done.stdout
    totals = ast.literal_eval(audience.group(1))
    assert totals["connected"] == 60 and totals["failed"] == 0, totals
    assert totals["lines"] > 0, totals
    assert totals["chat_seen_min"] == totals["chat_seen_max"] == totals["lines"], totals
    samples = re.findall(r"^\s+\d+\s+\d+\s+[\d.]+\s+\d+", done.stdout, re.M)
    assert len(samples) >= 5, done.stdout
    assert "growth:" in done.stdout
