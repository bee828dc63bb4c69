"""make test runs plain ``pytest``: every folder of tests must be in pyproject's testpaths,
or its tests would silently never run (tests/faults was added this way)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_folder_with_tests_is_collected_by_make_test() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    testpaths = set(config["tool"]["pytest"]["ini_options"]["testpaths"])
    folders = {
        str(path.parent.relative_to(REPO))
        for path in (REPO / "tests").rglob("test_*.py")
        if "bench" not in path.parts
    }
    assert folders <= testpaths, f"not in testpaths: {sorted(folders - testpaths)}"
    assert "tests/faults" in testpaths


def test_make_test_fails_when_pytest_collects_nothing() -> None:
    # pytest exits 5 when nothing was collected; make stops on any non-zero exit, so the
    # test target must not swallow it (no `|| true`, no `-` prefix).
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "$(BIN)/pytest" in recipe
    assert "|| true" not in recipe and "\t-$(BIN)/pytest" not in recipe
