"""Viewer counts (coalesced), heartbeats, and the engagement rows behind the report."""

from __future__ import annotations

import time

from hybridcon.core.engagement import actor_hash
from hybridcon.core.tokens import Role
from support import WsClient, eventually, issue, services_of


async def test_viewer_counts_are_pushed_coalesced_at_most_once_a_second(client):
    first = await WsClient.connect(client, issue(client))
    await first.ok("subscribe", topic="stage:impact")
    started = time.monotonic()
    others = [await WsClient.connect(client, issue(client)) for _ in range(4)]
    for other in others:
        await other.ok("subscribe", topic="stage:impact")
    counts = []
    while not counts or counts[-1] != 5:
        counts.append((await first.push("presence.count", timeout=5))["viewers"])
    elapsed = time.monotonic() - started
    # Five people joined; far fewer than five pushes, never more than one per second.
    assert len(counts) <= int(elapsed) + 2
    assert counts[-1] == 5
    # The same person on two devices counts once.
    again = await WsClient.connect(client, issue(client, sub=others[0].user["id"]))
    await again.ok("subscribe", topic="stage:impact")
    await others[1].close()
    while (await first.push("presence.count", timeout=5))["viewers"] != 4:
        pass
    for person in (first, again, *others[2:]):
        await person.close()


async def test_engagement_rows_match_what_happened(client):
    services = services_of(client)
    viewer_token = issue(client, Role.VIEWER, sub="u:els")
    mod_token = issue(client, Role.MODERATOR, sub="u:mo")
    els = await WsClient.connect(client, viewer_token)
    mo = await WsClient.connect(client, mod_token)
    await els.ok("subscribe", topic="stage:plenary")
    await mo.ok("subscribe", topic="stage:plenary")
    hb = await els.ok(
        "presence.heartbeat",
        topic="stage:plenary",
        playing=True,
        visible=True,
        muted=False,
        quality="720p",
    )
    assert hb["viewers"] == 2
    sent = await els.ok("chat.send", topic="stage:plenary", text="Sterk sociaal werk!")
    await mo.ok("chat.delete", topic="stage:plenary", msg_id=sent["msg_id"])
    reply = await els.request(
        "presence.heartbeat", topic="stage:diversiteit", playing=True, visible=False
    )
    assert reply["code"] == "invalid"  # not subscribed there
    await els.close()
    await mo.close()

    pool = services.db()

    async def rows():
        return await pool.fetch(
            "SELECT kind, actor, topic, data FROM engagement_events ORDER BY ts, id"
        )

    async def all_in() -> bool:
        kinds = [r["kind"] for r in await rows()]
        return kinds.count("leave") == 2

    await eventually(all_in, what="the engagement rows of both sessions")
    got = await rows()
    els_hash = actor_hash(services.actor_key, "u:els")
    mo_hash = actor_hash(services.actor_key, "u:mo")
    mine = [(r["kind"], r["topic"]) for r in got if r["actor"] == els_hash]
    assert mine == [
        ("join", "stage:plenary"),
        ("heartbeat", "stage:plenary"),
        ("chat", "stage:plenary"),
        ("leave", "stage:plenary"),
    ]
    theirs = [(r["kind"], r["topic"]) for r in got if r["actor"] == mo_hash]
    assert theirs == [
        ("join", "stage:plenary"),
        ("chat_moderated", "stage:plenary"),
        ("leave", "stage:plenary"),
    ]
    heartbeat = next(r for r in got if r["kind"] == "heartbeat")
    assert '"quality": "720p"' in heartbeat["data"] and '"playing": true' in heartbeat["data"]
    # Keyed hashes only: no raw subject anywhere in the log.
    dump = " ".join(f"{r['actor']} {r['data']}" for r in got)
    assert "u:els" not in dump and "u:mo" not in dump
