"""The embedded PostgreSQL killed (SIGKILL of its postmaster) under load: during a chat
burst, a vote burst, and while the engagement writer is flushing. The node starts it
again; nothing acknowledged is lost, nothing is stored or seen twice."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid

import pytest
import tally
from harness import (
    Burst,
    Node,
    Peer,
    chat_events,
    chat_lines,
    chat_rows,
    connect_all,
    heartbeat_rows,
    heartbeats,
)

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
    burst = Burst(senders, chat_lines(TOPIC))
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


async def test_postgres_killed_during_a_vote_burst(node):
    n: Node = node()
    await n.start()
    (mod_token,) = n.tokens(Role.MODERATOR, 1)
    moderator = Peer(mod_token, "mod")
    voters = [Peer(t, f"v{i}") for i, t in enumerate(n.tokens(Role.VIEWER, 240))]
    watchers = [Peer(t, f"w{i}") for i, t in enumerate(n.tokens(Role.VIEWER, 3))]
    await connect_all([moderator, *voters, *watchers], n.url, TOPIC)
    poll = await moderator.ok(
        "poll.create",
        topics=[TOPIC],
        question="Doet sociaal werk ertoe?",
        kind="single",
        options=["Ja", "Nee"],
        open=True,
    )
    poll_id = poll["poll_id"]
    acked: list[str] = []
    refused = 0

    async def vote(i: int, voter: Peer) -> None:
        nonlocal refused
        await asyncio.sleep(i * 0.012)  # a burst over ~3 s, the kill inside it
        while True:
            reply = await voter.request("poll.vote", poll_id=poll_id, choice="a" if i % 3 else "b")
            if reply["type"] == "result":
                acked.append(voter.user["id"])
                return
            assert reply["code"] == "unavailable", reply  # safe to retry: the same vote
            refused += 1
            await asyncio.sleep(0.1)

    voting = asyncio.gather(*(vote(i, v) for i, v in enumerate(voters)))
    await until(lambda: len(acked) >= 60, "60 votes before the fault")
    old = n.kill_postgres()
    await n.postgres_back(old)
    await voting
    assert refused > 0, "the fault was not felt: no vote was refused"
    closed = await moderator.ok("poll.close", poll_id=poll_id)
    assert closed["results"]["voters"] == len(acked)

    def final(w: Peer) -> int | None:
        for push in w.pushes:
            if push["type"] == "poll.closed" and push["poll_id"] == poll_id:
                return int(push["results"]["voters"])
        return None

    await until(lambda: all(final(w) is not None for w in watchers), "poll.closed on watchers")
    rows = await n.fetch("SELECT voter FROM votes WHERE poll_id = $1", uuid.UUID(poll_id))
    actors = {n.actor(sub): sub for sub in acked}

    async def events() -> list[str]:
        found = await n.fetch(
            "SELECT actor FROM engagement_events WHERE kind = 'poll_vote' AND data->>'poll_id' = $1",
            poll_id,
        )
        return [actors.get(r["actor"], r["actor"]) for r in found]

    await until(lambda: _has_all(events, acked), "every vote's engagement event stored")
    fault = "PostgreSQL SIGKILL during a vote burst"
    note = f"{refused} votes refused `unavailable` and retried"
    votes = tally.count(
        fault,
        "votes",
        sent=acked,
        stored=[r["voter"] for r in rows],
        totals={w.name: final(w) or 0 for w in watchers},
        note=note,
    )
    logged = tally.count(fault, "vote events", sent=acked, stored=await events())
    for row in (votes, logged):
        assert row.lost == 0 and row.doubled == 0, row


async def _has_all(fetch, keys) -> bool:
    return set(keys) <= set(await fetch())


async def test_postgres_killed_while_the_engagement_writer_flushes(node):
    # Heartbeats as fast as 16 people may send them: the writer stores a batch every
    # 0.25 s (or every 2,000 events), so the kill lands on a flush in progress or due.
    n: Node = node(HYBRIDCON_WS_RATE="200", HYBRIDCON_WS_BURST="400")
    await n.start()
    peers = [Peer(t, f"h{i}") for i, t in enumerate(n.tokens(Role.VIEWER, 16))]
    await connect_all(peers, n.url, TOPIC)
    burst = Burst(peers, heartbeats(TOPIC), pause=0.005)
    burst.start()
    await until(lambda: len(burst.acked) >= 3000, "3,000 heartbeats before the fault")
    old = n.kill_postgres()
    at_kill = len(burst.acked)
    await n.postgres_back(old)
    await until(lambda: len(burst.acked) >= at_kill + 3000, "3,000 heartbeats after the fault")
    await burst.stop()
    acked = burst.acked
    await until(
        lambda: _has_all(lambda: heartbeat_rows(n, TOPIC), acked),
        "every heartbeat stored",
        timeout=60,
    )
    spooled = _metric(n.port, 'hybridcon_engagement_events_total{outcome="spooled"}')
    row = tally.count(
        "PostgreSQL SIGKILL during the writer's flush",
        "heartbeat events",
        sent=acked,
        stored=await heartbeat_rows(n, TOPIC),
        note=f"{int(spooled)} went through the spool",
    )
    assert spooled > 0, "nothing was spooled: the kill did not meet the writer"
    assert row.lost == 0 and row.doubled == 0, row


def _metric(port: int, name: str) -> float:

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0
