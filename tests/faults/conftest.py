"""The fault suite: real ``hybridcon serve`` processes on their own embedded PostgreSQL,
faults injected while clients chat, vote and react; every test counts with
:mod:`tally` and the session ends with one table of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tally
from harness import Node

from hybridcon.settings import Settings
from serve_process import Server


@pytest.fixture
def node(make_settings: Callable[..., Settings], own_data_dir: Path, servers: list[Server]):
    """A node (not started) on its own data directory and embedded PostgreSQL; extra
    ``HYBRIDCON_*`` settings through ``node(**env)``."""

    def make(**env: str) -> Node:
        return Node(make_settings(data_dir=own_data_dir), servers, **env)

    return make


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not tally.RESULTS:
        return
    terminalreporter.section("fault suite: sent / stored / delivered / doubled")
    terminalreporter.write_line(tally.table(tally.RESULTS))
    tally.write_artifact(tally.RESULTS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed fault test shows the nodes' error lines (the tracebacks are there)."""
    report = yield
    if report.failed and "servers" in getattr(item, "funcargs", {}):
        for server in item.funcargs["servers"]:
            errors = [line for line in server.stderr().splitlines() if '"level": "error"' in line]
            if errors:
                report.sections.append(("node errors", "\n".join(errors[-5:])))
    return report
