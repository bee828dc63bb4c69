"""Q&A and reactions over real sockets and a real PostgreSQL."""

from __future__ import annotations

import time

from hybridcon.core.tokens import Role
from support import WsClient, issue, services_of


async def test_the_questions_queue(client):
    mod = await WsClient.connect(client, issue(client, Role.MODERATOR, name="Mo"))
    ann = await WsClient.connect(client, issue(client, name="Ann", sub="u:ann"))
    bob = await WsClient.connect(client, issue(client, name="Bob", sub="u:bob"))
    await mod.ok("subscribe", topic="mod:stage:eerstelijn")
    for person in (ann, bob):
        await person.ok("subscribe", topic="stage:eerstelijn")

    # Moderated by default: a new question waits in mod:<topic>.
    q1 = await ann.ok(
        "qa.ask", topic="stage:eerstelijn", text="Hoe werken we samen met huisartsen?"
    )
    assert q1["state"] == "pending" and q1["author"]["name"] == "Ann"
    assert q1["origin"] == "stage:eerstelijn"
    assert (await mod.push("qa.question"))["question_id"] == q1["question_id"]
    snap = await bob.ok("subscribe", topic="stage:eerstelijn")
    assert snap["snapshot"]["questions"] == []

    await mod.ok("qa.approve", question_id=q1["question_id"])
    shown = await bob.push("qa.question")
    assert shown["question_id"] == q1["question_id"] and shown["state"] == "approved"

    # One upvote per person, however often.
    for _ in range(3):
        up = await bob.ok("qa.upvote", question_id=q1["question_id"])
    assert up["upvotes"] == 1

    # Anonymous asking is a per-topic setting.
    reply = await bob.request(
        "qa.ask", topic="stage:eerstelijn", text="Mag dit anoniem?", anonymous=True
    )
    assert reply["code"] == "forbidden"
    await mod.ok("qa.settings", topic="stage:eerstelijn", moderated=True, anonymous=True)
    q2 = await bob.ok(
        "qa.ask", topic="stage:eerstelijn", text="Hoe met de huisarts samenwerken?", anonymous=True
    )
    assert q2["author"] is None
    await mod.ok("qa.approve", question_id=q2["question_id"])
    await ann.ok("qa.upvote", question_id=q2["question_id"])
    carol = await WsClient.connect(client, issue(client, sub="u:carol"))
    await carol.ok("qa.upvote", question_id=q2["question_id"])
    await carol.ok("qa.upvote", question_id=q1["question_id"])

    # Merge the near-duplicate: upvoters join, each person once (Bob, Ann, Carol).
    merged = await mod.ok("qa.merge", question_id=q2["question_id"], into=q1["question_id"])
    assert merged["upvotes"] == 3
    listing = (await WsClient.connect(client, issue(client))).ok
    snap = await listing("subscribe", topic="stage:eerstelijn")
    assert [q["question_id"] for q in snap["snapshot"]["questions"]] == [q1["question_id"]]
    assert snap["snapshot"]["questions"][0]["upvotes"] == 3

    await mod.ok("qa.answer", question_id=q1["question_id"])
    reply = await carol.request("qa.upvote", question_id=q1["question_id"])
    assert reply["code"] == "conflict" and "answered" in reply["message"]
    reply = await ann.request("qa.dismiss", question_id=q1["question_id"])
    assert reply["code"] == "forbidden"
    reply = await ann.request("qa.ask", topic="stage:eerstelijn", text="x" * 301)
    assert reply["code"] == "invalid" and "300" in reply["message"]

    pool = services_of(client).db()
    row = await pool.fetchrow("SELECT state, upvotes FROM questions WHERE text LIKE 'Hoe werken%'")
    assert (row["state"], row["upvotes"]) == ("answered", 3)
    for ws in (mod, ann, bob, carol):
        await ws.close()


async def test_reactions_are_aggregated_and_pushed_at_most_once_a_second(client):
    watcher = await WsClient.connect(client, issue(client))
    await watcher.ok("subscribe", topic="stage:politiserend")
    fans = [await WsClient.connect(client, issue(client)) for _ in range(5)]
    started = time.monotonic()
    for fan in fans:
        for emoji in ("👏", "👏", "❤️"):
            await fan.ok("react", topic="stage:politiserend", emoji=emoji)
    totals: dict[str, int] = {}
    pushes = 0
    while totals.get("👏", 0) < 10 or totals.get("❤️", 0) < 5:
        counts = (await watcher.push("reactions", timeout=5))["counts"]
        pushes += 1
        for emoji, n in counts.items():
            totals[emoji] = totals.get(emoji, 0) + n
    assert totals == {"👏": 10, "❤️": 5}
    assert pushes <= int(time.monotonic() - started) + 1
    reply = await fans[0].request("react", topic="stage:politiserend", emoji="💩")
    assert reply["code"] == "invalid"
    for ws in (watcher, *fans):
        await ws.close()
