"""The media benchmark (issue 5), small, so that it cannot rot: its WHEP fan-out step
(``python -m tests.bench.media --only fanout``) with no viewer and one, on one stage, for
3 s, with its agents (the JSON-lines processes of tests/bench/agents.py) publishing and
watching over real WebRTC. It asserts only that the viewer received the stage's media
and that the slope line was printed, never a figure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def test_one_whep_viewer_receives_the_stage_in_the_fanout_step() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench.media",
            "--only",
            "fanout",
            "--viewers",
            "0,1",
            "--stages",
            "1",
            "--window",
            "3",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=350,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    one = re.search(r"^\| 1 \|.*\| ([\d.]+) / ([\d.]+) \| \d+ \|$", done.stdout, re.M)
    assert one is not None, done.stdout
    assert float(one.group(1)) > 0.5, one.group(0)  # deliveries per sent packet, least
    assert "slope over valid steps" in done.stdout
