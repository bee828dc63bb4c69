"""State that must agree across nodes (issue 13): two nodes over one real Valkey and one
PostgreSQL, clients on both. Poll tallies, Q&A upvotes, chat moderation and viewer
counts are the same whichever node a person is on, and a restarted Redis is ridden out.
"""

from __future__ import annotations

from typing import Any

from aiohttp import WSMsgType
from test_redis_bus import bus_of, two_nodes, valkey  # noqa: F401  (fixtures)

from hybridcon.core.tokens import Role
from hybridcon.services import SERVICES
from hybridcon.store import chat as chat_store
from support import WsClient, eventually, issue

TOPIC = "stage:plenary"


async def results_until(ws: WsClient, voters: int, timeout: float = 15.0) -> dict[str, Any]:
    """The first ``poll.results`` push that counts ``voters`` people."""
    while True:
        msg = await ws.push("poll.results", timeout=timeout)
        if msg["voters"] == voters:
            return msg


async def viewer(client: Any, token: str, topic: str = TOPIC) -> WsClient:
    ws = await WsClient.connect(client, token)
    await ws.ok("subscribe", topic=topic)
    return ws


async def test_a_poll_counts_every_vote_once_on_every_node_through_a_redis_restart(
    two_nodes,  # noqa: F811
    valkey,  # noqa: F811
):
    a, b = two_nodes
    mod_token = issue(a, Role.MODERATOR, scopes=(TOPIC,))
    moderator_a = await WsClient.connect(a, mod_token)
    moderator_b = await WsClient.connect(b, mod_token)
    poll = await moderator_a.ok(
        "poll.create",
        topics=[TOPIC],
        question="Koffie?",
        kind="single",
        options=["ja", "nee"],
        open=True,
    )
    poll_id = poll["poll_id"]
    here = await viewer(a, issue(a, scopes=(TOPIC,)))
    there = await viewer(b, issue(a, scopes=(TOPIC,)))
    # Node B learnt of the poll opened on A: a newcomer's snapshot there shows it.
    await eventually(lambda: _polls_in(b, poll_id), what="the poll in node B's snapshot")

    # One person, two devices on two nodes: the second, different vote is refused.
    person = issue(a, scopes=(TOPIC,))
    on_a = await viewer(a, person)
    on_b = await viewer(b, person)
    assert (await on_a.ok("poll.vote", poll_id=poll_id, choice="a"))["outcome"] == "counted"

    async def counted_on_b() -> bool:
        found = await moderator_b.ok("poll.results", poll_id=poll_id)
        return bool(found["results"]["voters"] == 1)

    await eventually(counted_on_b, what="node B counting the vote taken on A")
    refused = await on_b.request("poll.vote", poll_id=poll_id, choice="b")
    assert refused["type"] == "error" and refused["code"] == "conflict", refused
    again = await on_b.ok("poll.vote", poll_id=poll_id, choice="a")
    assert again["outcome"] == "unchanged"
    other = await viewer(b, issue(a, scopes=(TOPIC,)))
    assert (await other.ok("poll.vote", poll_id=poll_id, choice="b"))["outcome"] == "counted"

    # Both nodes push the same results: two people, one for each option.
    pushed_a = await results_until(here, 2)
    pushed_b = await results_until(there, 2)
    assert pushed_a == pushed_b
    assert pushed_b["counts"] == {"a": 1, "b": 1}
    again_snap = await on_b.ok("subscribe", topic=TOPIC)
    assert [p["voted"] for p in again_snap["snapshot"]["polls"] if p["poll_id"] == poll_id] == [
        True
    ]

    # Redis restarts with nothing kept; a vote taken on A meanwhile reaches B's tally.
    port = valkey.port
    valkey.stop()
    late = await viewer(a, issue(a, scopes=(TOPIC,)))
    assert (await late.ok("poll.vote", poll_id=poll_id, choice="b"))["outcome"] == "counted"
    valkey._desired_port = port
    valkey.start()
    assert (await results_until(there, 3, timeout=20))["counts"] == {"a": 1, "b": 2}
    assert (await results_until(here, 3))["counts"] == {"a": 1, "b": 2}
    split = await moderator_b.ok("poll.results", poll_id=poll_id)
    assert split["results"]["voters"] == 3

    # Closed on B: the final results A's viewers get count all three.
    await eventually(lambda: bus_of(b).connected, what="node B connected", timeout=15)
    await moderator_b.ok("poll.close", poll_id=poll_id)
    closed = await here.push("poll.closed", timeout=10)
    assert closed["results"]["voters"] == 3
    late_vote = await on_a.request("poll.vote", poll_id=poll_id, choice="a")
    assert late_vote["type"] == "error" and late_vote["code"] == "closed", late_vote
    for ws in (moderator_a, moderator_b, here, there, on_a, on_b, other, late):
        await ws.close()


async def _polls_in(client: Any, poll_id: str) -> bool:
    ws = await WsClient.connect(client, issue(client, scopes=(TOPIC,)))
    try:
        snap = await ws.ok("subscribe", topic=TOPIC)
        return [p["poll_id"] for p in snap["snapshot"]["polls"]] == [poll_id]
    finally:
        await ws.close()


async def updates_until(ws: WsClient, question_id: str, **want: Any) -> dict[str, Any]:
    """The first ``qa.updated`` push of the question with the fields wanted."""
    while True:
        msg = await ws.push("qa.updated", timeout=10)
        if msg["question_id"] == question_id and all(msg.get(k) == v for k, v in want.items()):
            return msg


async def test_upvotes_and_question_states_agree_across_nodes(two_nodes):  # noqa: F811
    a, b = two_nodes
    here = await viewer(a, issue(a, scopes=(TOPIC,)))
    there = await viewer(b, issue(a, scopes=(TOPIC,)))
    asker = await WsClient.connect(a, issue(a, scopes=(TOPIC,), name="Ann"))
    question = await asker.ok("qa.ask", topic=TOPIC, text="Wanneer is de pauze?")
    qid = question["question_id"]
    # Asked on A (held for the moderators), approved by a moderator on B.
    moderator = await WsClient.connect(b, issue(a, Role.MODERATOR, scopes=(TOPIC,)))
    await moderator.ok("qa.approve", question_id=qid)
    await here.push("qa.question")

    # One upvote on each node, and the first person again through the other node.
    person = issue(a, scopes=(TOPIC,))
    first = await WsClient.connect(a, person)
    second = await WsClient.connect(b, issue(a, scopes=(TOPIC,)))
    assert (await first.ok("qa.upvote", question_id=qid))["upvotes"] == 1
    assert (await second.ok("qa.upvote", question_id=qid))["upvotes"] == 2
    same = await WsClient.connect(b, person)
    assert (await same.ok("qa.upvote", question_id=qid))["upvotes"] == 2
    await updates_until(here, qid, upvotes=2)
    await updates_until(there, qid, upvotes=2)

    # Answered by the moderator on B: a newcomer on A no longer sees it among the open ones.
    await moderator.ok("qa.answer", question_id=qid)
    await updates_until(here, qid, state="answered")

    async def gone_on_a() -> bool:
        ws = await WsClient.connect(a, issue(a, scopes=(TOPIC,)))
        try:
            snap = await ws.ok("subscribe", topic=TOPIC)
            return qid not in [q["question_id"] for q in snap["snapshot"]["questions"]]
        finally:
            await ws.close()

    await eventually(gone_on_a, what="node A knowing the question was answered")
    for ws in (here, there, asker, first, second, same, moderator):
        await ws.close()


async def snapshot_on(client: Any, token: str, topic: str) -> dict[str, Any]:
    """What a newcomer subscribing to ``topic`` on this node is shown."""
    ws = await WsClient.connect(client, token)
    try:
        return (await ws.ok("subscribe", topic=topic))["snapshot"]
    finally:
        await ws.close()


async def test_chat_moderation_holds_on_every_node(two_nodes):  # noqa: F811
    a, b = two_nodes
    mod_token = issue(a, Role.MODERATOR, scopes=(TOPIC,))
    moderator_a = await WsClient.connect(a, mod_token)
    moderator_b = await WsClient.connect(b, mod_token)
    await moderator_b.ok("subscribe", topic=f"mod:{TOPIC}")
    person = await viewer(b, issue(a, scopes=(TOPIC,), name="Piet"))

    # First-line hold switched on at A holds a line sent on B; A's moderators see it.
    await moderator_a.ok("chat.hold", topic=TOPIC, enabled=True)

    async def held_on_b() -> bool:
        sent = await person.ok("chat.send", topic=TOPIC, text="mag ik iets vragen?")
        return bool(sent["held"])

    await eventually(held_on_b, what="node B holding first lines")
    held = await moderator_b.push("chat.held")

    async def held_on_a() -> bool:
        snap = await snapshot_on(a, issue(a, Role.MODERATOR, scopes=(TOPIC,)), f"mod:{TOPIC}")
        return held["msg_id"] in [line["msg_id"] for line in snap["held"]]

    await eventually(held_on_a, what="the held line in a moderator's snapshot on A")

    # Approved on A: on B it is no longer held, and it is among the recent lines.
    await moderator_a.ok("chat.approve", topic=TOPIC, msg_id=held["msg_id"])

    async def approved_on_b() -> bool:
        snap = await snapshot_on(b, issue(a, Role.MODERATOR, scopes=(TOPIC,)), f"mod:{TOPIC}")
        recent = await snapshot_on(b, issue(a, scopes=(TOPIC,)), TOPIC)
        return held["msg_id"] not in [line["msg_id"] for line in snap["held"]] and held[
            "msg_id"
        ] in [line["msg_id"] for line in recent["chat"]]

    await eventually(approved_on_b, what="node B knowing the line was approved")

    # A line said on A is in a newcomer's recent lines on B.
    said = await moderator_a.ok("chat.send", topic=TOPIC, text="welkom allemaal")

    async def recent_on_b() -> bool:
        snap = await snapshot_on(b, issue(a, scopes=(TOPIC,)), TOPIC)
        return said["msg_id"] in [line["msg_id"] for line in snap["chat"]]

    await eventually(recent_on_b, what="the line said on A in B's recent lines")

    # Banned on A: refused on B.
    await moderator_a.ok("chat.ban", topic=TOPIC, user_id=person.user["id"])

    async def refused_on_b() -> bool:
        reply = await person.request("chat.send", topic=TOPIC, text="nog iets")
        return reply["type"] == "error" and reply["code"] == "banned"

    await eventually(refused_on_b, what="node B refusing a person banned on A")
    for ws in (moderator_a, moderator_b, person):
        await ws.close()


async def counts_until(ws: WsClient, viewers: int) -> None:
    while (await ws.push("presence.count", timeout=10))["viewers"] != viewers:
        pass


async def test_viewer_counts_add_up_across_nodes(two_nodes):  # noqa: F811
    a, b = two_nodes
    on_a = [await viewer(a, issue(a, scopes=(TOPIC,))) for _ in range(2)]
    on_b = [await viewer(b, issue(a, scopes=(TOPIC,))) for _ in range(3)]
    # Everyone, on either node, is told there are five.
    for ws in (*on_a, *on_b):
        await counts_until(ws, 5)
    await on_a[0].close()
    for ws in (on_a[1], *on_b):
        await counts_until(ws, 4)
    beat = await on_b[0].ok("presence.heartbeat", topic=TOPIC, playing=True, visible=True)
    assert beat["viewers"] == 4
    for ws in (on_a[1], *on_b):
        await ws.close()


async def test_the_connection_cap_counts_a_persons_connections_on_every_node(
    two_nodes,  # noqa: F811
):
    """``max_connections_per_person`` is 2: a third connection, on the other node,
    closes the person's oldest with 4008."""
    a, b = two_nodes
    token = issue(a, scopes=(TOPIC,))
    oldest = await WsClient.connect(a, token)
    await oldest.ok("subscribe", topic=TOPIC)
    second = await WsClient.connect(a, token)
    await second.ok("subscribe", topic=TOPIC)
    third = await WsClient.connect(b, token)
    await third.ok("subscribe", topic=TOPIC)
    while True:
        msg = await oldest.ws.receive(timeout=10)
        if msg.type is WSMsgType.CLOSE:
            break
    assert (msg.data, msg.extra) == (4008, "too many connections for this person")
    # The other two stay open.
    assert (await second.ok("subscribe", topic="event"))["reset"] is False
    assert (await third.ok("subscribe", topic="event"))["reset"] is False
    for ws in (second, third):
        await ws.close()


async def test_slow_mode_is_per_person_whichever_node_the_lines_go_through(
    two_nodes,  # noqa: F811
):
    a, b = two_nodes
    moderator = await WsClient.connect(a, issue(a, Role.MODERATOR, scopes=(TOPIC,)))
    await moderator.ok("chat.slowmode", topic=TOPIC, seconds=30)

    async def slow_on_b() -> bool:
        snap = await snapshot_on(b, issue(a, scopes=(TOPIC,)), TOPIC)
        return bool(snap["settings"]["slowmode"] == 30)

    await eventually(slow_on_b, what="node B knowing of slow mode")
    token = issue(a, scopes=(TOPIC,), name="Snel")
    on_a = await WsClient.connect(a, token)
    on_b = await WsClient.connect(b, token)
    assert (await on_a.ok("chat.send", topic=TOPIC, text="eerste"))["held"] is False
    refused = await on_b.request("chat.send", topic=TOPIC, text="tweede")
    assert refused["type"] == "error" and refused["code"] == "rate_limited", refused
    assert "30 s" in refused["message"]
    for ws in (moderator, on_a, on_b):
        await ws.close()


async def test_readiness_follows_redis_while_open_sockets_keep_being_served(
    two_nodes,  # noqa: F811
    valkey,  # noqa: F811
):
    a, _ = two_nodes
    ready = await a.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"node": "ok", "postgres": "ok", "redis": "ok"}
    here = await viewer(a, issue(a, scopes=(TOPIC,)))
    port = valkey.port
    valkey.stop()

    async def unready() -> bool:
        reply = await a.get("/readyz")
        body = await reply.json()
        return reply.status == 503 and body["checks"]["redis"] == "unavailable: disconnected"

    await eventually(unready, what="/readyz saying Redis is away", timeout=10)
    # A client already here is still answered.
    assert (await here.request("ping"))["type"] == "result"
    valkey._desired_port = port
    valkey.start()

    async def ready_again() -> bool:
        return (await a.get("/readyz")).status == 200

    await eventually(ready_again, what="/readyz ready again", timeout=15)
    await here.close()


async def test_a_moderator_subscribing_during_a_burst_sees_each_held_line_once(
    two_nodes,  # noqa: F811
):
    """Over Redis a push reaches the node a moment after the line was held: a moderator
    subscribing in that moment must get the line in the snapshot or as a push, never
    both and never neither."""
    a, _ = two_nodes
    moderator = await WsClient.connect(a, issue(a, Role.MODERATOR, scopes=(TOPIC,)))
    await moderator.ok("chat.hold", topic=TOPIC, enabled=True)
    senders = [
        await WsClient.connect(a, issue(a, scopes=(TOPIC,), name=f"S{i}")) for i in range(40)
    ]
    # Each sender's first line is held; all are sent at once, as moderators subscribe.
    for i, sender in enumerate(senders):
        await sender.ws.send_json({"id": 1, "type": "chat.send", "topic": TOPIC, "text": f"h{i}"})
    watchers = []
    snapshots = []
    for _ in range(8):
        ws = await WsClient.connect(a, issue(a, Role.MODERATOR, scopes=(TOPIC,)))
        snap = await ws.ok("subscribe", topic=f"mod:{TOPIC}")
        watchers.append(ws)
        snapshots.append([line["msg_id"] for line in snap["snapshot"]["held"]])
    for sender in senders:
        while (await sender.ws.receive_json(timeout=10)).get("id") != 1:
            pass
    last = await senders[0].ok("chat.send", topic=TOPIC, text="nog eens")  # held too
    for ws, snapshot in zip(watchers, snapshots, strict=True):
        pushed = []
        while True:
            msg = await ws.push("chat.held", timeout=10)
            pushed.append(msg["msg_id"])
            if msg["msg_id"] == last["msg_id"]:
                break
        seen = snapshot + pushed
        assert len(seen) == len(set(seen)) == 41
    for ws in (moderator, *senders, *watchers):
        await ws.close()


async def test_an_approval_refused_while_redis_is_away_can_be_made_again(
    two_nodes,  # noqa: F811
    valkey,  # noqa: F811
):
    """The approval's push could not reach Redis: the moderator is told `unavailable`,
    the line stays held (not shown, not lost), and approving it again once Redis is back
    publishes it on every node."""
    a, b = two_nodes
    moderator = await WsClient.connect(a, issue(a, Role.MODERATOR, scopes=(TOPIC,)))
    await moderator.ok("chat.hold", topic=TOPIC, enabled=True)
    person = await viewer(b, issue(a, scopes=(TOPIC,), name="Piet"))
    watcher = await viewer(b, issue(a, scopes=(TOPIC,)))

    async def held_on_b() -> bool:
        return bool((await person.ok("chat.send", topic=TOPIC, text="mag ik?"))["held"])

    await eventually(held_on_b, what="node B holding first lines")
    [held] = await chat_store.held(a.server.app[SERVICES].db(), TOPIC)
    port = valkey.port
    valkey.stop()
    refused = await moderator.request("chat.approve", topic=TOPIC, msg_id=held.msg_id)
    assert refused["type"] == "error" and refused["code"] == "unavailable", refused
    valkey._desired_port = port
    valkey.start()
    await eventually(
        lambda: bus_of(a).connected and bus_of(b).connected, what="both nodes back", timeout=15
    )
    await moderator.ok("chat.approve", topic=TOPIC, msg_id=held.msg_id)
    while (line := await watcher.push("chat.message", timeout=10))["msg_id"] != held.msg_id:
        pass
    assert line["text"] == "mag ik?"
    for ws in (moderator, person, watcher):
        await ws.close()
