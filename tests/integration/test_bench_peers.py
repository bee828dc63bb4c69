"""The peer comparison of the fan-out benchmark (issue 14), small, so that it cannot rot:
the one command (``python -m tests.bench --peers ...``) with 200 viewers for 2 s, every
peer once and hybridcon at its defaults, as one node and as three nodes over one Valkey
(``--nodes 3``). It asserts only that each server relayed every
line to every viewer and that the ratios were printed, never a figure: this machine is
shared, and a benchmark never fails on noise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PEERS = ("ws", "websockets", "socketio", "baseline")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def test_every_peer_and_hybridcon_on_one_and_three_nodes_relay_every_line_to_every_viewer(
    tmp_path: Path,
) -> None:
    assert (REPO / "tests/bench/peers/node_modules/ws").is_dir(), (
        "the ws peer's package is not installed: make bench-deps"
    )
    out = tmp_path / "peers.json"
    # --settle only shortens the waits before the RSS readings.
    command = [
        sys.executable,
        "-m",
        "tests.bench",
        "--peers",
        ",".join(PEERS),
        "-n",
        "200",
        "-m",
        "10",
        "--duration",
        "2",
        "--warmup",
        "0.5",
        "--settle",
        "0.2",
        "--nodes",
        "3",
        "--json",
        str(out),
    ]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=360, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert sorted((r["kind"], r["nodes"]) for r in results) == sorted(
        [*((p, 1) for p in PEERS), ("hybridcon", 1), ("hybridcon", 3)]
    )
    for r in results:
        where = f"{r['server']}: {r['notes']} {r['sender_errors']}\n{done.stderr[-2000:]}"
        assert r["connected"] == 200 and r["failed"] == 0, where
        assert r["lines_published_in_window"] > 0, where
        assert r["expected"] == r["lines_published_in_window"] * 200, where
        assert r["received"] == r["expected"], where  # every line to every viewer
        assert r["closed_by_server"] == 0 and not r["sender_errors"], where
    assert "hybridcon's CPU per delivery against each peer" in done.stdout, done.stdout
    assert "Several nodes over Valkey against one node" in done.stdout, done.stdout
