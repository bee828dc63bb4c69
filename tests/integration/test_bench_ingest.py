"""The ingest benchmark (issue 14), small, so that it cannot rot: the one command
(``python -m tests.bench.ingest``) at a few thousand events per second for a second. It
asserts only behaviour, never a figure: every event made was stored, the raw copy stored
the same rows, and after a SIGTERM mid-ingest every event handed to the writer is in the
table exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_events_are_stored_once_and_none_is_lost_on_sigterm(tmp_path: Path) -> None:
    out = tmp_path / "ingest.json"
    command = [
        sys.executable,
        "-m",
        "tests.bench.ingest",
        "--rate",
        "3000",
        "--seconds",
        "1",
        "--rounds",
        "1",
        "--people",
        "200",
        "--sigterm-after",
        "1",
        "--writer-cpu",
        "-1",
        "--pg-cpu",
        "-1",
        "--json",
        str(out),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    f = json.loads(out.read_text())
    offered = f["offered"]
    assert offered["produced"] > 0
    assert offered["confirmed"] == offered["produced"] and offered["unconfirmed"] == 0
    assert offered["dropped"] == 0
    (round_,) = f["rounds"]
    assert round_["capacity"]["confirmed"] == round_["capacity"]["produced"] > 0
    assert round_["raw"]["stored"] == round_["raw"]["rows"] == round_["capacity"]["confirmed"]
    sigterm = f["sigterm"]
    assert sigterm["acknowledged"] == sigterm["logged"] > 0
    assert sigterm["found"] == sigterm["acknowledged"]
    assert sigterm["lost"] == 0 and sigterm["doubled"] == 0
    assert sigterm["dropped"] == 0
    for goal in ("events/s sustained", "each flushed within", "of a raw copy", "lost on SIGTERM"):
        assert goal in done.stdout, done.stdout
