"""Polls across stages with real sockets (the client SDK) and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import timedelta

import pytest

from hybridcon.core.tokens import Role
from hybridcon_client import HybridconClient, HybridconError
from support import WsClient, issue, services_of

THEMES = ["diversiteit", "impact", "nabijheid", "eerstelijn", "identiteit", "politiserend"]


def ws_url(client) -> str:
    return str(client.make_url("/ws")).replace("http", "ws", 1)


async def test_one_poll_on_all_stages_hundreds_vote_exact_live_and_coalesced(client):
    mod = await WsClient.connect(client, issue(client, Role.MODERATOR, name="Mo"))
    topics = ["stage:plenary", *(f"stage:{t}" for t in THEMES)]
    poll = await mod.ok(
        "poll.create",
        topics=topics,
        question="Doet sociaal werk ertoe?",
        kind="single",
        options=["Ja", "Zeker", "Twijfel"],
    )
    assert [o["id"] for o in poll["options"]] == ["a", "b", "c"]
    assert poll["state"] == "draft"
    await mod.ok("subscribe", topic="mod:stage:plenary")

    # An observer on the plenary counts the results pushes.
    observer = await WsClient.connect(client, issue(client))
    await observer.ok("subscribe", topic="stage:plenary")
    await mod.ok("poll.open", poll_id=poll["poll_id"])
    opened = await observer.push("poll.opened")
    assert opened["poll_id"] == poll["poll_id"] and opened["kind"] == "single"

    rng = random.Random(7)
    voters = 500
    truth: Counter[str] = Counter()
    by_topic: Counter[str] = Counter()
    url = ws_url(client)

    async def voter(i: int) -> None:
        topic = "stage:plenary" if i % 2 else "stage:impact"
        token = issue(client, Role.VIEWER, sub=f"u:voter-{i}")
        choice = rng.choice(["a", "b", "c"])
        truth[choice] += 1
        by_topic[topic] += 1
        async with HybridconClient(url, token, reconnect=False) as sdk:
            await sdk.subscribe(topic)
            first = await sdk.vote(poll["poll_id"], choice)
            assert first["outcome"] == "counted"
            # Retries and a second device: counted once.
            for _ in range(rng.randint(1, 2)):
                assert (await sdk.vote(poll["poll_id"], choice))["outcome"] == "unchanged"
            if i % 10 == 0:
                async with HybridconClient(url, token, reconnect=False) as phone:
                    again = await phone.vote(poll["poll_id"], choice)
                    assert again["outcome"] == "unchanged"
            if i % 25 == 0:  # this poll allows no change of mind
                other = next(c for c in "abc" if c != choice)
                with pytest.raises(HybridconError) as refused:
                    await sdk.vote(poll["poll_id"], other)
                assert refused.value.code == "conflict"

    started = time.monotonic()
    for start in range(0, voters, 100):  # a hundred at a time: 2 cores, one process
        await asyncio.gather(*(voter(i) for i in range(start, min(start + 100, voters))))
    elapsed = time.monotonic() - started

    # The last push the observer gets shows exactly the truth.
    results = []
    while not results or results[-1]["voters"] < voters:
        results.append(await observer.push("poll.results", timeout=5))
    assert results[-1]["counts"] == {k: truth[k] for k in "abc"}
    # Coalesced: never once per vote, at most four a second.
    assert len(results) <= 4 * (elapsed + 1) + 1
    assert len(results) < voters / 5

    # The moderator sees the split per stage; storage agrees with memory.
    split = await mod.ok("poll.results", poll_id=poll["poll_id"])
    origins = split["results"]["by_origin"]
    assert {o: v["voters"] for o, v in origins.items()} == dict(by_topic)
    pool = services_of(client).db()
    stored = await pool.fetch("SELECT choice #>> '{}' AS c, count(*) FROM votes GROUP BY 1")
    assert {r["c"]: r["count"] for r in stored} == dict(truth)

    closed = await mod.ok("poll.close", poll_id=poll["poll_id"])
    assert closed["results"]["voters"] == voters
    final = await observer.push("poll.closed")
    assert final["results"]["counts"] == {k: truth[k] for k in "abc"}
    reply = await observer.request("poll.vote", poll_id=poll["poll_id"], choice="a")
    assert reply["code"] == "closed"
    await mod.close()
    await observer.close()


async def test_a_restart_mid_poll_keeps_the_counts(make_settings):
    from aiohttp.test_utils import TestClient, TestServer

    from hybridcon.app import create_app

    settings = make_settings()
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as first:
        mod = await WsClient.connect(first, issue(first, Role.MODERATOR))
        poll = await mod.ok(
            "poll.create",
            topics=["stage:plenary"],
            question="Schaal?",
            kind="scale",
            scale_max=10,
            open=True,
            allow_change=True,
        )
        for i, score in enumerate([7, 8, 8, 10]):
            person = await WsClient.connect(first, issue(first, sub=f"u:{i}"))
            await person.ok("poll.vote", poll_id=poll["poll_id"], choice=score)
            await person.close()
        await mod.close()
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as second:
        mod = await WsClient.connect(second, issue(second, Role.MODERATOR))
        person = await WsClient.connect(second, issue(second, sub="u:0"))
        snap = await person.ok("subscribe", topic="stage:plenary")
        [shown] = snap["snapshot"]["polls"]
        assert shown["voted"] is True
        assert shown["results"]["counts"]["8"] == 2 and shown["results"]["voters"] == 4
        # The poll goes on: a change of mind and a new voter.
        await person.ok("poll.vote", poll_id=poll["poll_id"], choice=9)
        newcomer = await WsClient.connect(second, issue(second, sub="u:new"))
        await newcomer.ok("poll.vote", poll_id=poll["poll_id"], choice=10)
        results = (await mod.ok("poll.results", poll_id=poll["poll_id"]))["results"]
        assert results["counts"] == {
            "1": 0,
            "2": 0,
            "3": 0,
            "4": 0,
            "5": 0,
            "6": 0,
            "7": 0,
            "8": 2,
            "9": 1,
            "10": 2,
        }
        assert results["voters"] == 5 and results["mean"] == 9.0
        for ws in (mod, person, newcomer):
            await ws.close()


@pytest.mark.parametrize(
    ("kind", "extra", "choice", "code", "fragment"),
    [
        ("single", {"options": ["Ja", "Nee"]}, "z", "invalid", "option ids"),
        ("multi", {"options": ["Ja", "Nee"]}, [], "invalid", "non-empty"),
        ("scale", {}, 6, "invalid", "1 to 5"),
        ("scale", {}, True, "invalid", "choice"),
        ("wordcloud", {}, "de het een", "invalid", "stop-words"),
        ("open", {}, "x" * 281, "invalid", "280"),
    ],
)
async def test_bad_votes_get_clear_errors(client, kind, extra, choice, code, fragment):
    mod = await WsClient.connect(client, issue(client, Role.MODERATOR))
    poll = await mod.ok(
        "poll.create", topics=["stage:plenary"], question="?", kind=kind, open=True, **extra
    )
    viewer = await WsClient.connect(client, issue(client))
    reply = await viewer.request("poll.vote", poll_id=poll["poll_id"], choice=choice)
    assert reply["type"] == "error" and reply["code"] == code
    assert fragment in reply["message"]
    await mod.close()
    await viewer.close()


async def test_scope_draft_and_moderator_rules(client):
    mod = await WsClient.connect(client, issue(client, Role.MODERATOR, scopes=("stage:impact",)))
    reply = await mod.request(
        "poll.create", topics=["stage:plenary"], question="?", kind="single", options=["a", "b"]
    )
    assert reply["code"] == "forbidden"
    poll = await mod.ok(
        "poll.create", topics=["stage:impact"], question="Wat telt?", kind="wordcloud"
    )
    outsider = await WsClient.connect(client, issue(client, scopes=("stage:plenary",)))
    reply = await outsider.request("poll.vote", poll_id=poll["poll_id"], choice="nabijheid")
    assert reply["code"] == "forbidden"
    insider = await WsClient.connect(client, issue(client, scopes=("stage:impact",)))
    reply = await insider.request("poll.vote", poll_id=poll["poll_id"], choice="nabijheid")
    assert reply["code"] == "closed" and "not open" in reply["message"]
    reply = await insider.request("poll.open", poll_id=poll["poll_id"])
    assert reply["code"] == "forbidden"
    reply = await insider.request("poll.vote", poll_id="0" * 32, choice="x")
    assert reply["code"] == "not_found"
    reply = await mod.request(
        "poll.create", topics=["stage:impact"], question="?", kind="poll-of-polls"
    )
    assert reply["code"] == "invalid" and "unknown poll kind" in reply["message"]
    for ws in (mod, outsider, insider):
        await ws.close()


async def test_wordcloud_counts_normalised_words(client):
    mod = await WsClient.connect(client, issue(client, Role.MODERATOR))
    poll = await mod.ok(
        "poll.create",
        topics=["stage:nabijheid"],
        question="Eén woord?",
        kind="wordcloud",
        open=True,
    )
    for i, answer in enumerate(["Nabijheid", "nabijheid!", "NÁBIJHEID", "de verbinding", "Café"]):
        person = await WsClient.connect(client, issue(client, sub=f"u:w{i}"))
        await person.ok("poll.vote", poll_id=poll["poll_id"], choice=answer)
        await person.close()
    results = (await mod.ok("poll.results", poll_id=poll["poll_id"]))["results"]
    assert results["counts"] == {"nabijheid": 3, "cafe": 1, "verbinding": 1}
    await mod.close()


async def test_a_scheduled_poll_opens_by_itself(client):
    services = services_of(client)
    mod = await WsClient.connect(client, issue(client, Role.MODERATOR))
    viewer = await WsClient.connect(client, issue(client))
    await viewer.ok("subscribe", topic="stage:identiteit")
    opens_at = (services.clock() + timedelta(seconds=1)).isoformat()
    poll = await mod.ok(
        "poll.create",
        topics=["stage:identiteit"],
        question="Klaar?",
        kind="single",
        options=["Ja", "Nee"],
        opens_at=opens_at,
    )
    assert poll["state"] == "draft" and poll["opens_at"] == opens_at
    opened = await viewer.push("poll.opened", timeout=5)
    assert opened["poll_id"] == poll["poll_id"] and opened["state"] == "open"
    await mod.close()
    await viewer.close()


async def test_hall_votes_count_apart_from_online_ones(client):
    mod = await WsClient.connect(client, issue(client, Role.MODERATOR))
    poll = await mod.ok(
        "poll.create",
        topics=["stage:plenary"],
        question="Hier?",
        kind="single",
        options=["Ja", "Nee"],
        open=True,
    )
    online = await WsClient.connect(client, issue(client, scopes=("stage:plenary",)))
    hall = await WsClient.connect(client, issue(client, scopes=("hall:plenary",)))
    await online.ok("poll.vote", poll_id=poll["poll_id"], choice="a")
    await hall.ok("poll.vote", poll_id=poll["poll_id"], choice="a")
    results = (await mod.ok("poll.results", poll_id=poll["poll_id"]))["results"]
    assert results["counts"] == {"a": 2, "b": 0}
    assert results["by_origin"]["hall:plenary"]["voters"] == 1
    assert results["by_origin"]["stage:plenary"]["voters"] == 1
    for ws in (mod, online, hall):
        await ws.close()


async def test_open_answers_reach_the_wall_only_through_a_moderator(client):
    mod = await WsClient.connect(client, issue(client, Role.MODERATOR))
    poll = await mod.ok(
        "poll.create",
        topics=["stage:diversiteit"],
        question="Wat neem je mee?",
        kind="open",
        open=True,
        allow_change=True,
    )
    viewer = await WsClient.connect(client, issue(client, sub="u:open-1"))
    await viewer.ok("subscribe", topic="stage:diversiteit")
    await viewer.ok("poll.vote", poll_id=poll["poll_id"], choice="Meer tijd voor nabijheid")
    other = await WsClient.connect(client, issue(client, sub="u:open-2"))
    await other.ok("poll.vote", poll_id=poll["poll_id"], choice="Samen sterker")

    results = (await mod.ok("poll.results", poll_id=poll["poll_id"]))["results"]
    assert results["wall"] == []
    answers = {a["text"]: a for a in results["answers"]}
    assert set(answers) == {"Meer tijd voor nabijheid", "Samen sterker"}
    assert "u:open-1" not in str(results)  # answer ids do not reveal who wrote them

    shown = await mod.ok(
        "poll.show", poll_id=poll["poll_id"], answer_id=answers["Samen sterker"]["answer_id"]
    )
    assert shown["wall"] == ["Samen sterker"]
    assert (await viewer.push("poll.wall"))["text"] == "Samen sterker"
    snap = await (await WsClient.connect(client, issue(client))).ok(
        "subscribe", topic="stage:diversiteit"
    )
    assert snap["snapshot"]["polls"][0]["results"]["wall"] == ["Samen sterker"]

    # A changed answer leaves the wall until shown again.
    await other.ok("poll.vote", poll_id=poll["poll_id"], choice="Samen nog sterker")
    results = (await mod.ok("poll.results", poll_id=poll["poll_id"]))["results"]
    assert results["wall"] == []
    reply = await viewer.request(
        "poll.show", poll_id=poll["poll_id"], answer_id=answers["Samen sterker"]["answer_id"]
    )
    assert reply["code"] == "forbidden"
    for ws in (mod, viewer, other):
        await ws.close()
