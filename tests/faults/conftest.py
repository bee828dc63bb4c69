"""The fault suite: real ``hybridcon serve`` processes on their own embedded PostgreSQL,
faults injected while clients chat, vote and react; every test counts with
:mod:`tally` and the session ends with one table of them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tally
from harness import Node, Redis

from hybridcon.settings import Settings
from serve_process import Server


@pytest.fixture
def node(
    make_settings: Callable[..., Settings], own_data_dir: Path, servers: list[Server]
) -> Iterator[Callable[..., Node]]:
    """A node (not started) on its own data directory and embedded PostgreSQL; extra
    ``HYBRIDCON_*`` settings through ``node(**env)``.

    At the end its processes are stopped, and so is the embedded PostgreSQL if it is
    still running: after a SIGKILL of hybridcon the wheel's list of processes holding
    the cluster keeps the dead one, and nothing would stop it.
    """

    def make(**env: str) -> Node:
        return Node(make_settings(data_dir=own_data_dir), servers, **env)

    yield make
    for server in servers:
        server.stop()
    pid_file = own_data_dir / "postgres" / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown: the test's data is thrown away


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    """A Valkey of the test's own; stopped at the end (continued first if paused)."""
    server = Redis(tmp_path / "valkey")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def cluster(redis: Redis, node: Callable[..., Node]) -> list[Node]:
    """Three nodes over ``redis``, on one data directory (its embedded PostgreSQL, which
    the first starts, and its keys), started and ready.

    ``redis`` comes first so that it is stopped after the nodes are."""
    nodes = [node(HYBRIDCON_REDIS_URL=redis.url) for _ in range(3)]
    await nodes[0].start()
    await asyncio.gather(nodes[1].start(), nodes[2].start())
    return nodes


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not tally.RESULTS:
        return
    terminalreporter.section("fault suite: sent / stored / delivered / doubled")
    terminalreporter.write_line(tally.table(tally.RESULTS))
    tally.write_artifact(tally.RESULTS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed fault test shows each node's warnings and errors (the tracebacks are
    there), or its last lines when it logged none: enough to tell why from CI's log."""
    report = yield
    if report.failed and "servers" in getattr(item, "funcargs", {}):
        for i, server in enumerate(item.funcargs["servers"]):
            lines = server.stderr().splitlines()
            worth = [
                line for line in lines if '"level": "error"' in line or '"level": "warning"' in line
            ]
            shown = worth[-12:] or lines[-8:]
            if shown:
                report.sections.append((f"node {i} log", "\n".join(shown)))
    return report
