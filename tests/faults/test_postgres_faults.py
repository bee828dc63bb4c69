"""The embedded PostgreSQL killed (SIGKILL of its postmaster) under load: during a chat
burst, a vote burst, and while the engagement writer is flushing. The node starts it
again; nothing acknowledged is lost, nothing is stored or seen twice."""

from __future__ import annotations

import pytest
import tally
from harness import Burst, Node, Peer, chat_events, chat_rows, connect_all

from hybridcon.core.tokens import Role
from support import eventually

pytestmark = pytest.mark.slow

TOPIC = "stage:plenary"


async def until(condition, what: str, timeout: float = 30.0) -> None:
    await eventually(condition, timeout=timeout, what=what)


async def test_postgres_killed_during_a_chat_burst(node):
    n: Node = node()
    await n.start()
    senders = [Peer(t, f"s{i}") for i, t in enumerate(n.tokens(Role.VIEWER, 12))]
    watchers = [Peer(t, f"w{i}") for i, t in enumerate(n.tokens(Role.VIEWER, 4))]
    await connect_all(senders + watchers, n.url, TOPIC)
    burst = Burst(senders, TOPIC, lambda p, i: f"{p.name}-{i}")
    burst.start()
    await until(lambda: len(burst.acked) >= 150, "150 lines before the fault")
    old = n.kill_postgres()
    await n.postgres_back(old)
    before = len(burst.acked)
    await until(lambda: len(burst.acked) >= before + 150, "150 lines after the fault")
    await burst.stop()
    acked = burst.acked

    await until(
        lambda: all(set(acked) <= set(w.seen_chat) for w in watchers), "watchers got every line"
    )
    rows = await chat_rows(n, TOPIC)

    async def events_in() -> bool:
        return set(acked) <= set(await chat_events(n, TOPIC))

    await until(events_in, "every line's engagement event stored")
    events = await chat_events(n, TOPIC)
    note = f"{burst.refused['unavailable']} sends refused `unavailable` meanwhile"
    fault = "PostgreSQL SIGKILL during a chat burst"
    lines = tally.count(
        fault,
        "chat lines",
        sent=acked,
        stored=rows,
        received={w.name: w.seen_chat for w in watchers},
        note=note,
    )
    logged = tally.count(fault, "chat events", sent=acked, stored=events)
    assert burst.refused["unavailable"] > 0, "the fault was not felt: no send was refused"
    for row in (lines, logged):
        assert row.lost == 0 and row.doubled == 0, row
