"""Fuzzing the WebSocket protocol: random sequences of valid and invalid requests from
several roles against the real application and a real PostgreSQL.

Invariants, whatever the sequence:
- no reply is ``internal`` (a bug), and every bad frame gets an ``error`` naming it;
- each poll's tally counts exactly the distinct people whose vote was accepted;
- on every topic a connection follows, the sequenced pushes it gets are numbered without
  a gap or a repeat from the ``seq`` its subscribe returned.

Each example starts the application afresh on the test's database (state piles up across
examples, as it would over a day). The budget is small for ``make test``;
``HYPOTHESIS_PROFILE=long`` runs more.
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridcon.app import create_app
from hybridcon.core.tokens import Role
from support import WsClient, issue

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
TOPICS = ["stage:plenary", "stage:impact", "event", "stage:nowhere", "mod:stage:plenary"]
ACTORS = 4  # 0-2 viewers, 3 a moderator

GARBAGE = st.sampled_from(
    [
        "{not json",
        "[]",
        '{"type": "ping"}',
        '{"id": "1", "type": "ping"}',
        '{"id": true, "type": "ping"}',
        '{"id": 1, "type": "teleport"}',
        '{"id": 1, "type": "chat.send", "topic": 5, "text": "x"}',
        '{"id": 1, "type": "poll.vote", "poll_id": "zz", "choice": []}',
        '{"id": 1, "type": "subscribe", "topic": "stage:" }',
        '{"id": 1, "type": "qa.upvote", "question_id": "' + "0" * 32 + '"}',
        '{"id": 9007199254740993, "type": "ping"}',
        '{"id": 1, "type": "react", "topic": "stage:plenary", "emoji": "💩"}',
    ]
)


def actions() -> st.SearchStrategy[list[tuple[Any, ...]]]:
    actor = st.integers(0, ACTORS - 1)
    topic = st.sampled_from(TOPICS)
    text = st.text(min_size=0, max_size=20)
    choice = st.one_of(st.integers(-1, 3), st.sampled_from(["a", "b", "x"]), st.just(["a"]))
    one = st.one_of(
        st.tuples(st.just("subscribe"), actor, topic),
        st.tuples(st.just("unsubscribe"), actor, topic),
        st.tuples(st.just("chat"), actor, topic, text),
        st.tuples(st.just("poll"), st.sampled_from(["single", "multi", "scale", "open"])),
        st.tuples(st.just("vote"), actor, st.integers(0, 3), choice),
        st.tuples(st.just("ask"), actor, topic, text),
        st.tuples(st.just("upvote"), actor, st.integers(0, 3)),
        st.tuples(st.just("react"), actor, topic, st.sampled_from(["👏", "🎉", "x"])),
        st.tuples(st.just("beat"), actor, topic),
        st.tuples(st.just("garbage"), actor, GARBAGE),
    )
    return st.lists(one, min_size=1, max_size=40 if LONG else 25)


async def raw(ws: WsClient, frame: str) -> dict[str, Any]:
    """Send a frame as it is; the error reply to it (pushes that come first are kept)."""
    await ws.ws.send_str(frame)
    while True:
        msg = dict(await ws.ws.receive_json(timeout=5))
        if msg["type"] == "error":
            return msg
        if msg["type"] == "result":  # a frame that happened to be valid
            return msg
        ws.pushes.append(msg)


async def scenario(settings_: Any, steps: list[tuple[Any, ...]]) -> None:
    app = create_app(settings_)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        people = [
            await WsClient.connect(client, issue(client, scopes=("stage:plenary",)))
            for _ in range(ACTORS - 1)
        ]
        people.append(
            await WsClient.connect(client, issue(client, Role.MODERATOR, scopes=("stage:plenary",)))
        )
        mod = people[-1]
        replies: list[dict[str, Any]] = []
        subscribed: dict[tuple[int, str], int] = {}
        polls: list[str] = []
        voted: dict[str, set[int]] = defaultdict(set)
        questions: list[str] = []

        async def request(who: int, msg_type: str, /, **fields: Any) -> dict[str, Any]:
            reply = await people[who].request(msg_type, **fields)
            replies.append(reply)
            return reply

        for step in steps:
            match step:
                case ("subscribe", who, topic):
                    reply = await request(who, "subscribe", topic=topic)
                    if reply["type"] == "result" and (who, topic) not in subscribed:
                        subscribed[(who, topic)] = reply["data"]["seq"]
                case ("unsubscribe", who, topic):
                    await request(who, "unsubscribe", topic=topic)
                    # What it got while subscribed is checked; after this, nothing more.
                    if (who, topic) in subscribed:
                        subscribed[(who, topic)] = -1
                case ("chat", who, topic, text):
                    await request(who, "chat.send", topic=topic, text=text)
                case ("poll", kind):
                    options = [] if kind in ("scale", "open") else ["ja", "nee", "misschien"]
                    reply = await request(
                        ACTORS - 1,
                        "poll.create",
                        topics=["stage:plenary"],
                        question="Wat denk je?",
                        kind=kind,
                        options=options,
                        open=True,
                    )
                    if reply["type"] == "result":
                        polls.append(reply["data"]["poll_id"])
                case ("vote", who, n, choice):
                    if polls:
                        poll_id = polls[n % len(polls)]
                        reply = await request(who, "poll.vote", poll_id=poll_id, choice=choice)
                        if reply["type"] == "result":
                            voted[poll_id].add(who)
                case ("ask", who, topic, text):
                    reply = await request(who, "qa.ask", topic=topic, text=text)
                    if reply["type"] == "result":
                        questions.append(reply["data"]["question_id"])
                case ("upvote", who, n):
                    if questions:
                        await request(who, "qa.upvote", question_id=questions[n % len(questions)])
                case ("react", who, topic, emoji):
                    await request(who, "react", topic=topic, emoji=emoji)
                case ("beat", who, topic):
                    await request(
                        who, "presence.heartbeat", topic=topic, playing=True, visible=True
                    )
                case ("garbage", who, frame):
                    reply = await raw(people[who], frame)
                    replies.append(reply)
                    assert reply["type"] == "error" and reply["message"], reply

        internal = [r for r in replies if r.get("code") == "internal"]
        assert not internal, internal

        for poll_id in polls:
            results = await mod.ok("poll.results", poll_id=poll_id)
            assert results["results"]["voters"] == len(voted[poll_id]), (poll_id, voted)

        # A last line on every followed topic, from the moderator: once a connection has
        # it, it has every sequenced push before it (pushes keep seq order).
        markers: dict[str, str] = {}
        for topic in {t.removeprefix("mod:") for (_, t), s in subscribed.items() if s >= 0}:
            if topic == "stage:nowhere":
                continue
            sent = await mod.ok("chat.send", topic=topic, text=f"einde {topic}")
            markers[topic] = sent["msg_id"]
        for (who, topic), since in subscribed.items():
            if since < 0 or topic.startswith("mod:"):
                continue
            ws = people[who]
            seqs = [p["seq"] for p in ws.pushes if p.get("topic") == topic and "seq" in p]
            while not any(
                p.get("msg_id") == markers[topic] and p.get("topic") == topic for p in ws.pushes
            ):
                msg = dict(await ws.ws.receive_json(timeout=5))
                ws.pushes.append(msg)
                if msg.get("topic") == topic and "seq" in msg:
                    seqs.append(msg["seq"])
            assert seqs == list(range(since + 1, since + 1 + len(seqs))), (topic, since, seqs)
        for ws in people:
            await ws.close()


@settings(
    max_examples=60 if LONG else 8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=actions())
def test_random_request_sequences_keep_the_invariants(make_settings, steps) -> None:
    asyncio.run(scenario(make_settings(), steps))
