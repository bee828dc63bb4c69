"""The engagement spool's disk full while PostgreSQL is away: at its size limit, and on a
real full file system (a 64 KiB tmpfs, where the test may mount one). The spool refuses;
events wait in memory (up to 50,000) and are all stored once PostgreSQL is back."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import tally
from harness import Burst, Node, Peer, connect_all, heartbeat_rows, heartbeats

from hybridcon.core.tokens import Role
from support import eventually

pytestmark = pytest.mark.slow

TOPIC = "stage:nabijheid"


@pytest.fixture
def small_tmpfs(own_data_dir: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted where the node keeps its spool (root only)."""
    spool = own_data_dir / "spool"
    spool.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(spool)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield spool
    subprocess.run(["umount", "-l", str(spool)], check=False)


async def spool_full_while_postgres_is_away(n: Node, fault: str) -> None:
    await n.start()
    peers = [Peer(t, f"h{i}") for i, t in enumerate(n.tokens(Role.VIEWER, 12))]
    await connect_all(peers, n.url, TOPIC)
    burst = Burst(peers, heartbeats(TOPIC), pause=0.005)
    burst.start()
    await eventually(lambda: len(burst.acked) >= 1000, timeout=30, what="1,000 heartbeats")
    old = n.kill_postgres()
    await n.postgres_back(old)
    at_back = len(burst.acked)
    await eventually(lambda: len(burst.acked) >= at_back + 1000, timeout=30, what="1,000 more")
    await burst.stop()
    acked = burst.acked

    async def stored() -> bool:
        return set(acked) <= set(await heartbeat_rows(n, TOPIC))

    await eventually(stored, timeout=60, what="every heartbeat stored")
    assert n.server is not None
    refusals = [e for e in n.server.events() if e.get("event") == "engagement_spool_write_failed"]
    assert refusals, "the spool never refused: the outage did not fill it"
    # Said once per episode, not once per flush (an outage must not flood the log).
    assert len(refusals) <= 3, f"{len(refusals)} error lines for one full spool"
    row = tally.count(
        fault,
        "heartbeat events",
        sent=acked,
        stored=await heartbeat_rows(n, TOPIC),
        note=f"spool refused ({refusals[0]['error'][:40]}…); events held in memory",
    )
    assert row.lost == 0 and row.doubled == 0, row


async def test_the_spool_at_its_size_limit_while_postgres_is_away(node):
    n: Node = node(
        HYBRIDCON_ENGAGEMENT_SPOOL_MAX_BYTES="4096",
        HYBRIDCON_WS_RATE="200",
        HYBRIDCON_WS_BURST="400",
    )
    await spool_full_while_postgres_is_away(
        n, "spool at its size limit (4 KiB), PostgreSQL SIGKILL"
    )


async def test_the_spool_on_a_full_disk_while_postgres_is_away(node, small_tmpfs):
    n: Node = node(HYBRIDCON_WS_RATE="200", HYBRIDCON_WS_BURST="400")
    await spool_full_while_postgres_is_away(n, "spool on a full 64 KiB tmpfs, PostgreSQL SIGKILL")
