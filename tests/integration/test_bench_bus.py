"""The Redis bus benchmark (issue 13), small, so that it cannot rot: the one command
(``python -m tests.bench.bus``) with two listening nodes at 300 messages/s for 2 s, bare
pub/sub and hybridcon's bus on one real Valkey. It asserts only that every message was
acknowledged and delivered on every node and that the table was printed, never a figure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_every_message_reaches_every_node_on_both_kinds() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench.bus",
            "--rates",
            "300",
            "--seconds",
            "2",
            "--nodes",
            "2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = re.findall(
        r"^\| (bare|hybridcon) \| 300 \| [\d,]+ \| ([\d,]+) \| ([\d,]+) \| (\d+) \|",
        done.stdout,
        re.M,
    )
    assert [kind for kind, *_ in rows] == ["bare", "hybridcon"], done.stdout
    for kind, acked, delivered, lost in rows:
        assert acked == delivered == "600" and lost == "0", (kind, done.stdout)
    assert "x bare pub/sub" in done.stdout
    assert "caveat" not in done.stdout
