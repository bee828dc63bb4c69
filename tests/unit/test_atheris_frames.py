"""A short atheris run on the frame parsing (tests/unit/atheris_frames.py): it must end
without a crash. ``ATHERIS_SECONDS`` sets the budget (10 s in make test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris has no wheel for this Python")

TARGET = Path(__file__).with_name("atheris_frames.py")
SECONDS = int(os.environ.get("ATHERIS_SECONDS", "10"))


@pytest.mark.slow
def test_the_frame_parsing_survives_a_fuzzing_run(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            f"-max_total_time={SECONDS}",
            "-rss_limit_mb=1024",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 60,
        cwd=tmp_path,
        check=False,
    )
    tail = run.stderr[-3000:]
    assert run.returncode == 0, f"atheris found a crash:\n{tail}"
    runs = [line for line in run.stderr.splitlines() if line.startswith("Done ")]
    assert runs, f"atheris did not report a finished run:\n{tail}"
    print(runs[-1])
