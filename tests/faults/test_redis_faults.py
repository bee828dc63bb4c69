"""Redis (a real Valkey) under load, with three ``hybridcon serve`` nodes on it and on one
PostgreSQL: SIGKILLed and started again empty on the same port during a chat burst and
during a vote burst, and paused (SIGSTOP: it hangs, it does not refuse) during a chat
burst. Every acknowledged line is stored once and seen once by every viewer on every
node, every vote is counted once on every node, and what a client and an operator see
meanwhile is measured (the table's notes; docs/reliability.md)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest
import tally
from harness import Burst, Node, Peer, Redis, chat_lines, connect_all, readiness

from hybridcon.core.tokens import Role
from support import eventually

pytestmark = pytest.mark.slow

TOPIC = "stage:plenary"
PAUSE_SECONDS = 8.0  # longer than a publish may wait for Redis (4 s)
# A reply waits for Redis at most the bus's publish timeout (4 s), plus room for a
# loaded machine.
REPLY_BOUND = 6.0
AFTER_REFUSAL = 0.5  # seconds Redis stays away after the first refused send


async def until(condition, what: str, timeout: float = 30.0) -> None:
    await eventually(condition, timeout=timeout, what=what)


async def redis_check(nodes: list[Node]) -> list[str]:
    """What each node's ``/readyz`` says of Redis."""
    checks = await asyncio.gather(*(asyncio.to_thread(readiness, n.port) for n in nodes))
    return [c.get("redis", "no answer") for c in checks]


async def visible_rows(node: Node) -> list[str]:
    """The texts of the chat lines stored and not deleted (nor withdrawn), one per row."""
    found = await node.fetch(
        "SELECT text FROM chat_messages WHERE topic = $1 AND deleted_at IS NULL", TOPIC
    )
    return [r["text"] for r in found]


async def all_say(nodes: list[Node], state: str) -> bool:
    return all(check == state for check in await redis_check(nodes))


def events(node: Node, *names: str) -> Counter[str]:
    """How many times this node logged each of ``names`` (its JSON log lines)."""
    assert node.server is not None
    return Counter(e["event"] for e in node.server.events() if e.get("event") in names)


def warnings(node: Node) -> dict[str, int]:
    """How many warning and error lines this node logged, per event."""
    assert node.server is not None
    return dict(
        Counter(
            str(e["event"]) for e in node.server.events() if e.get("level") in ("warning", "error")
        )
    )


def people(nodes: list[Node], role: Role, per_node: int, tag: str) -> list[tuple[Peer, Node]]:
    """``per_node`` people on each node, named ``n<node><tag><i>``."""
    return [
        (Peer(token, f"n{k}{tag}{i}"), n)
        for k, n in enumerate(nodes)
        for i, token in enumerate(n.tokens(role, per_node))
    ]


async def connect_on(pairs: Iterable[tuple[Peer, Node]], topic: str | None = TOPIC) -> None:
    await asyncio.gather(*(connect_all([p], n.url, topic) for p, n in pairs))


class Chatting:
    """Three senders and two watchers on each node, chatting on :data:`TOPIC`."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.senders = people(nodes, Role.VIEWER, 3, "s")
        self.watchers = people(nodes, Role.VIEWER, 2, "w")
        self.burst = Burst([p for p, _ in self.senders], chat_lines(TOPIC))

    async def start(self, lines: int) -> None:
        await connect_on([*self.senders, *self.watchers])
        self.burst.start()
        await until(lambda: len(self.burst.acked) >= lines, f"{lines} lines before the fault")

    async def finish(self, lines: int, receivers: list[Peer]) -> None:
        """``lines`` more, then wait (30 s at most) until every receiver saw every line."""
        burst = self.burst
        at = len(burst.acked)
        await until(lambda: len(burst.acked) >= at + lines, f"{lines} lines after the fault")
        await burst.stop()
        with contextlib.suppress(AssertionError):  # what is missing is counted below
            await until(
                lambda: all(set(burst.acked) <= set(r.seen_chat) for r in receivers),
                "every receiver saw every line",
            )

    def waits(self, start: float, end: float) -> list[float]:
        """Seconds each request sent between ``start`` and ``end`` waited for its reply."""
        return [w for _, sent, w, _ in self.burst.replies if start <= sent <= end]

    def refused(self) -> list[str]:
        return [key for key, _, _, outcome in self.burst.replies if outcome == "unavailable"]


async def test_redis_killed_during_a_chat_burst_through_three_nodes(cluster, redis):
    nodes: list[Node] = cluster
    r: Redis = redis
    chat = Chatting(nodes)
    # Away from the kill until after the restart, then back on another node with `since`.
    (roamer_token,) = nodes[0].tokens(Role.VIEWER, 1)
    roamer = Peer(roamer_token, "roamer")
    await connect_on([(roamer, nodes[0])])
    await chat.start(100)
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    r.kill()
    await roamer.close()
    await until(
        lambda: all_say(nodes, "unavailable: disconnected"),
        "every node's /readyz saying Redis is away",
        timeout=10,
    )
    unready_after = loop.time() - killed_at
    # Away for longer than a publish may wait (4 s): some sends are refused.
    await until(lambda: chat.refused(), "a send refused `unavailable`", timeout=20)
    # Away a little longer (part of the fault): the sends after the refusals wait for
    # Redis, and are delivered once it is back.
    await asyncio.sleep(AFTER_REFUSAL)
    restarting_at = loop.time()
    await asyncio.to_thread(r.start_again)
    restarted_at = loop.time()
    await until(lambda: all_say(nodes, "ok"), "every node ready again", timeout=20)
    ready_after = loop.time() - restarted_at
    await roamer.connect(nodes[1].url)  # subscribes again with `since`
    receivers = [p for p, _ in chat.watchers] + [roamer]
    await chat.finish(100, receivers)

    burst = chat.burst
    rows = await visible_rows(nodes[0])
    refused = chat.refused()
    kept = sorted(set(refused) & set(rows))
    shown = sorted({k for r in receivers for k in r.seen_chat} & set(refused))
    waits = chat.waits(killed_at, restarted_at)
    logged = [events(n, "redis_bus_reconnected", "shared_state_reloaded") for n in nodes]
    # Lines sent while Redis was away and acknowledged once it was back: when the
    # viewers, on every node and the sender's own, saw them.
    away = {
        k
        for k, sent, _, outcome in burst.replies
        if killed_at <= sent <= restarting_at and outcome == "result"
    }
    assert away, "no line sent while Redis was away was acknowledged after it"
    seen_at = [r.seen_at[k] for r in receivers for k in away if k in r.seen_at]
    row = tally.count(
        "Redis SIGKILL (restarted empty) during a chat burst, 3 nodes",
        "chat lines",
        sent=burst.acked,
        stored=rows,
        received={p.name: p.seen_chat for p in receivers},
        note=(
            f"away {restarted_at - killed_at:.1f} s; /readyz 503 within {unready_after:.1f} s, "
            f"200 {ready_after:.1f} s after the restart; {len(refused)} sends refused "
            f"`unavailable`; replies meanwhile waited up to {max(waits):.1f} s; the "
            f"{len(away)} lines sent while away were seen "
            f"{min(seen_at) - restarting_at:.1f}–{max(seen_at) - restarting_at:.1f} s after "
            f"the restart; {roamer.resets} resets"
        ),
    )
    row.extra.update(refused=len(refused), refused_kept=len(kept), refused_shown=len(shown))
    for k, n in enumerate(nodes):
        row.extra.update({f"node{k} {event}": c for event, c in warnings(n).items()})
    assert row.lost == 0 and row.doubled == 0, row
    assert not burst.unknown, f"{len(burst.unknown)} requests got no reply"
    assert max(waits) <= REPLY_BOUND, f"a reply waited {max(waits):.1f} s for Redis"
    assert roamer.resets == 0
    # Nothing is delivered while Redis is away, not even on the sender's node: every
    # push goes through it.
    assert min(seen_at) >= restarting_at, "a line sent while Redis was away was seen before"
    # `unavailable` means "not done, safe to retry": a refused line is not kept, or the
    # retry would say it twice (and a resync would show the first one from storage).
    assert not kept, f"{len(kept)} lines refused `unavailable` are kept: {kept[:3]}"
    assert not shown, f"{len(shown)} lines refused `unavailable` were delivered: {shown[:3]}"
    for n, seen in zip(nodes, logged, strict=True):
        assert seen["redis_bus_reconnected"] >= 1 and seen["shared_state_reloaded"] >= 1, (
            n.port,
            seen,
        )


async def test_redis_killed_during_a_vote_burst_through_three_nodes(cluster, redis):
    nodes: list[Node] = cluster
    r: Redis = redis
    moderators = people(nodes, Role.MODERATOR, 1, "mod")
    voters = people(nodes, Role.VIEWER, 60, "v")
    watchers = people(nodes, Role.VIEWER, 1, "w")
    await connect_on([*moderators, *voters, *watchers])
    poll = await moderators[0][0].ok(
        "poll.create",
        topics=[TOPIC],
        question="Doet sociaal werk ertoe?",
        kind="single",
        options=["Ja", "Nee"],
        open=True,
    )
    poll_id = poll["poll_id"]
    acked: list[str] = []
    refused: Counter[str] = Counter()

    async def vote(i: int, voter: Peer) -> None:
        await asyncio.sleep(i * 0.015)  # over ~2.7 s, the kill inside it
        while True:
            reply = await voter.request("poll.vote", poll_id=poll_id, choice="a" if i % 3 else "b")
            if reply["type"] == "result":
                assert reply["data"]["outcome"] == "counted", reply
                acked.append(voter.user["id"])
                return
            refused[reply["code"]] += 1
            assert reply["code"] == "unavailable", reply  # safe to retry: the same vote
            await asyncio.sleep(0.1)

    # Interleaved over the nodes: each moment of the burst votes through all three.
    order = [pair for trio in zip(*(voters[k::3] for k in range(3)), strict=True) for pair in trio]
    voting = asyncio.gather(*(vote(i, v) for i, (v, _) in enumerate(order)))
    await until(lambda: len(acked) >= 50, "50 votes before the fault")
    loop = asyncio.get_running_loop()
    r.kill()
    await until(
        lambda: all_say(nodes, "unavailable: disconnected"), "/readyz saying Redis is away", 10
    )
    r.start_again()
    await until(lambda: all_say(nodes, "ok"), "every node ready again", timeout=20)
    await voting
    voted_at = loop.time()

    def latest(w: Peer, kind: str) -> dict[str, Any] | None:
        """The results in the last ``kind`` push of the poll that ``w`` applied."""
        pushes = [p for p in w.pushes if p["type"] == kind and p.get("poll_id") == poll_id]
        if not pushes:
            return None
        if kind == "poll.closed":
            return dict(pushes[-1]["results"])
        return {k: v for k, v in pushes[-1].items() if k not in ("type", "topic", "poll_id")}

    with contextlib.suppress(AssertionError):
        await until(
            lambda: all(
                (latest(w, "poll.results") or {}).get("voters") == len(acked) for w, _ in watchers
            ),
            "poll.results with every vote on every node",
        )
    agreed_after = loop.time() - voted_at
    live = [latest(w, "poll.results") for w, _ in watchers]
    closed = await moderators[2][0].ok("poll.close", poll_id=poll_id)
    await until(
        lambda: all(latest(w, "poll.closed") is not None for w, _ in watchers),
        "poll.closed on every node",
    )
    finals = [latest(w, "poll.closed") for w, _ in watchers]
    rows = await nodes[0].fetch("SELECT voter FROM votes WHERE poll_id = $1", uuid.UUID(poll_id))
    row = tally.count(
        "Redis SIGKILL (restarted empty) during a vote burst, 3 nodes",
        "votes",
        sent=acked,
        stored=[r["voter"] for r in rows],
        totals={
            w.name: (f or {}).get("voters", 0) for (w, _), f in zip(watchers, finals, strict=True)
        },
        note=(
            f"{sum(refused.values())} votes refused `unavailable` and retried; every node "
            f"pushed the full tally {agreed_after:.1f} s after the last vote"
        ),
    )
    assert row.lost == 0 and row.doubled == 0, row
    assert closed["results"]["voters"] == len(acked)
    assert all(f == finals[0] for f in finals), finals
    assert all(lv is not None and lv.get("voters") == len(acked) for lv in live), live
    assert all(lv == live[0] for lv in live), "the nodes pushed different live results"
    for n in nodes:  # the fault was felt: every node lost Redis and read its polls again
        seen = events(n, "redis_bus_reconnected", "shared_state_reloaded")
        assert seen["redis_bus_reconnected"] >= 1 and seen["shared_state_reloaded"] >= 1, seen


async def test_redis_paused_during_a_chat_burst_through_three_nodes(cluster, redis):
    nodes: list[Node] = cluster
    r: Redis = redis
    chat = Chatting(nodes)
    await chat.start(100)
    loop = asyncio.get_running_loop()
    paused_at = loop.time()
    r.pause()
    seen_while_paused: set[str] = set()
    unready_after = -1.0
    # The fault itself lasts this long (a hang, not a condition to wait for); meanwhile
    # what /readyz says is sampled.
    while loop.time() - paused_at < PAUSE_SECONDS:
        now = await redis_check(nodes)
        if unready_after < 0 and all(c == "unavailable: disconnected" for c in now):
            unready_after = loop.time() - paused_at
        seen_while_paused.update(now)
        await asyncio.sleep(0.25)
    r.resume()
    resumed_at = loop.time()
    await until(lambda: all_say(nodes, "ok"), "every node ready again", timeout=20)
    ready_after = loop.time() - resumed_at
    receivers = [p for p, _ in chat.watchers]
    await chat.finish(100, receivers)

    burst = chat.burst
    rows = await visible_rows(nodes[0])
    refused = chat.refused()
    waits = chat.waits(paused_at, resumed_at)
    # Refused, but carried out by Redis when it resumed (then taken back): in doubt.
    doubtful = {k for r in receivers for k in r.seen_chat} & set(refused)
    row = tally.count(
        f"Redis paused (SIGSTOP) {PAUSE_SECONDS:.0f} s during a chat burst, 3 nodes",
        "chat lines",
        sent=burst.acked,
        stored=rows,
        received={p.name: p.seen_chat for p in receivers},
        note=(
            f"/readyz 503 on every node {unready_after:.1f} s after the pause, 200 "
            f"{ready_after:.1f} s after it ended; {len(refused)} sends refused `unavailable` ({len(doubtful)} of them "
            f"carried out on resume, then deleted); replies meanwhile waited up to "
            f"{max(waits):.1f} s"
        ),
    )
    assert row.lost == 0 and row.doubled == 0, row
    assert not burst.unknown, f"{len(burst.unknown)} requests got no reply"
    # A hang is an absence: /readyz says so, and no reply waits longer than for a
    # Redis that refuses.
    assert unready_after >= 0, f"/readyz said {sorted(seen_while_paused)} while paused"
    for k, n in enumerate(nodes):
        row.extra.update({f"node{k} {event}": c for event, c in warnings(n).items()})
    assert max(waits) <= REPLY_BOUND, f"a reply waited {max(waits):.1f} s for Redis"
    # A refused line is not kept; one that Redis carried out when it resumed is taken
    # back from every client that saw it (`chat.deleted`).
    assert not set(refused) & set(rows), "a line refused `unavailable` is stored"
    not_taken_back = [
        (r.name, k)
        for r in receivers
        for k in r.seen_chat
        if k in refused and k not in r.deleted_chat
    ]
    assert not not_taken_back, not_taken_back[:3]
