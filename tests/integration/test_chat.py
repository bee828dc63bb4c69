"""Chat on a stage with real sockets and a real PostgreSQL: viewers, a moderator, the rules."""

from __future__ import annotations

import asyncio

import pytest

from hybridcon.core.tokens import Role
from support import WsClient, bearer, issue, services_of


async def people(client):
    ann = await WsClient.connect(
        client, issue(client, Role.VIEWER, name="Ann", scopes=("stage:plenary",))
    )
    bob = await WsClient.connect(client, issue(client, Role.VIEWER, name="Bob"))
    mod = await WsClient.connect(
        client, issue(client, Role.MODERATOR, name="Mo", scopes=("stage:plenary",))
    )
    return ann, bob, mod


async def test_two_viewers_and_a_moderator_chat_and_moderate(client):
    ann, bob, mod = await people(client)
    for person in (ann, bob, mod):
        snap = await person.ok("subscribe", topic="stage:plenary")
        assert snap["topic"] == "stage:plenary"
        assert snap["reset"] is False
    await mod.ok("subscribe", topic="mod:stage:plenary")

    sent = await ann.ok("chat.send", topic="stage:plenary", text="Goeiemorgen! <script>x</script>")
    assert sent["held"] is False
    for person in (ann, bob, mod):
        msg = await person.push("chat.message")
        assert msg["msg_id"] == sent["msg_id"]
        assert msg["text"] == "Goeiemorgen! <script>x</script>"  # data, never markup
        assert msg["author"]["name"] == "Ann" and msg["author"]["role"] == "viewer"
        first_seq = msg["seq"]

    await bob.ok("chat.send", topic="stage:plenary", text="Dag Ann")
    second = await ann.push("chat.message")
    assert second["seq"] == first_seq + 1

    # The moderator deletes Bob's line; everyone hears of it.
    await mod.ok("chat.delete", topic="stage:plenary", msg_id=second["msg_id"])
    for person in (ann, bob):
        assert (await person.push("chat.deleted"))["msg_id"] == second["msg_id"]

    # ... and times Bob out: his sends fail with `muted` until then.
    await mod.ok("chat.timeout", topic="stage:plenary", user_id=bob.user["id"], seconds=300)
    reply = await bob.request("chat.send", topic="stage:plenary", text="Hallo?")
    assert reply["type"] == "error" and reply["code"] == "muted"

    # A late joiner's snapshot has Ann's line but not the deleted one.
    late = await WsClient.connect(client, issue(client, Role.VIEWER))
    snap = await late.ok("subscribe", topic="stage:plenary")
    assert [m["msg_id"] for m in snap["snapshot"]["chat"]] == [sent["msg_id"]]

    # Every moderation action is audited and visible to organisers.
    audit = await (
        await client.get("/api/v1/audit", headers=bearer(issue(client, Role.ORGANISER)))
    ).json()
    actions = [e["action"] for e in audit["entries"]]
    assert "chat.delete" in actions and "chat.timeout" in actions
    timeout_row = next(e for e in audit["entries"] if e["action"] == "chat.timeout")
    assert timeout_row["actor_role"] == "moderator"
    assert timeout_row["target"] == bob.user["id"]

    # Storage agrees: the deleted line is marked, not gone.
    pool = services_of(client).db()
    rows = await pool.fetch("SELECT msg_id, deleted_at FROM chat_messages ORDER BY seq")
    assert [(r["msg_id"], r["deleted_at"] is not None) for r in rows] == [
        (sent["msg_id"], False),
        (second["msg_id"], True),
    ]
    for person in (ann, bob, mod, late):
        await person.close()


async def test_scopes_decide_what_may_be_subscribed(client):
    ann = await WsClient.connect(client, issue(client, Role.VIEWER, scopes=("stage:plenary",)))
    reply = await ann.request("subscribe", topic="stage:diversiteit")
    assert reply["code"] == "forbidden"
    reply = await ann.request("subscribe", topic="mod:stage:plenary")
    assert reply["code"] == "forbidden"
    reply = await ann.request("subscribe", topic="stage:nowhere")
    assert reply["code"] == "not_found"
    reply = await ann.request("subscribe", topic="stage:Plenary")
    assert reply["code"] == "invalid"
    reply = await ann.request("chat.send", topic="stage:diversiteit", text="hoi")
    assert reply["code"] == "forbidden"
    assert (await ann.ok("subscribe", topic="event"))["topic"] == "event"
    reply = await ann.request("chat.send", topic="event", text="iedereen hallo")
    assert reply["code"] == "forbidden"
    reply = await ann.request("subscribe", topic="mod:event")
    assert reply["code"] == "forbidden"
    await ann.close()


async def test_staff_moderate_event_announcements_in_mod_event(client):
    """Any moderator or organiser may follow ``mod:event``; what is done there reaches it."""
    host = await WsClient.connect(client, issue(client, Role.ORGANISER, scopes=("*",)))
    mod = await WsClient.connect(client, issue(client, Role.MODERATOR, scopes=("stage:plenary",)))
    snapshot = await mod.ok("subscribe", topic="mod:event")
    assert snapshot["snapshot"]["held"] == []
    sent = await host.ok("chat.send", topic="event", text="Welkom op de conferentie")
    await mod.ok("chat.delete", topic="event", msg_id=sent["msg_id"])
    assert (await mod.push("chat.deleted"))["msg_id"] == sent["msg_id"]
    viewer = await WsClient.connect(client, issue(client, Role.VIEWER, scopes=("*",)))
    reply = await viewer.request("chat.delete", topic="event", msg_id=sent["msg_id"])
    assert reply["code"] == "forbidden"


async def test_a_reconnecting_client_gets_what_it_missed_with_since(client):
    ann = await WsClient.connect(client, issue(client, Role.VIEWER))
    bob = await WsClient.connect(client, issue(client, Role.VIEWER))
    await ann.ok("subscribe", topic="stage:plenary")
    await bob.ok("subscribe", topic="stage:plenary")
    await bob.ok("chat.send", topic="stage:plenary", text="een")
    seen = (await ann.push("chat.message"))["seq"]
    await ann.close()  # a network blip
    for text in ("twee", "drie"):
        await bob.ok("chat.send", topic="stage:plenary", text=text)
    back = await WsClient.connect(client, issue(client, Role.VIEWER))
    result = await back.ok("subscribe", topic="stage:plenary", since=seen)
    assert [m["text"] for m in result["missed"]] == ["twee", "drie"]
    assert [m["seq"] for m in result["missed"]] == [seen + 1, seen + 2]
    assert result["seq"] == seen + 2 and result["reset"] is False
    # Too old a `since` is a reset: the snapshot replaces local state.
    result = await back.ok("subscribe", topic="stage:diversiteit", since=5)
    assert result["reset"] is True
    await bob.close()
    await back.close()


async def test_slow_mode_hold_approve_report_and_ban(client):
    ann, bob, mod = await people(client)
    for person in (ann, bob, mod):
        await person.ok("subscribe", topic="stage:plenary")
    await mod.ok("subscribe", topic="mod:stage:plenary")

    settings = await mod.ok("chat.slowmode", topic="stage:plenary", seconds=30)
    assert settings == {"slowmode": 30, "hold_first": False}
    assert (await ann.push("chat.settings"))["slowmode"] == 30
    await ann.ok("chat.send", topic="stage:plenary", text="een")
    assert (await ann.push("chat.message"))["text"] == "een"
    reply = await ann.request("chat.send", topic="stage:plenary", text="twee")
    assert reply["code"] == "rate_limited" and "slow mode" in reply["message"]
    await mod.ok("chat.slowmode", topic="stage:plenary", seconds=0)

    # First-message hold: Bob's first line waits for the moderator.
    await mod.ok("chat.hold", topic="stage:plenary", enabled=True)
    held = await bob.ok("chat.send", topic="stage:plenary", text="Mag ik iets vragen?")
    assert held == {"msg_id": held["msg_id"], "held": True, "reason": "first_message"}
    queued = await mod.push("chat.held")
    assert queued["msg_id"] == held["msg_id"] and queued["topic"] == "mod:stage:plenary"
    await mod.ok("chat.approve", topic="stage:plenary", msg_id=held["msg_id"])
    released = await ann.push("chat.message")
    assert released["msg_id"] == held["msg_id"]
    assert (await bob.ok("chat.send", topic="stage:plenary", text="Dank!"))["held"] is False

    # Filtered words are held too, and say what matched.
    filtered = await bob.ok("chat.send", topic="stage:plenary", text="wat een klootzak")
    assert filtered["held"] is True and filtered["reason"] == "filter"
    assert (await mod.push("chat.held"))["matched"] == ["klootzak"]

    # Anyone can report a line to the moderators.
    line = await ann.push("chat.message")  # Bob's "Dank!"
    await ann.ok("chat.report", topic="stage:plenary", msg_id=line["msg_id"], reason="ongepast")
    report = await mod.push("chat.reported")
    assert report["msg_id"] == line["msg_id"] and report["reason"] == "ongepast"

    # A ban holds, across a moderator's new snapshot too.
    await mod.ok("chat.ban", topic="stage:plenary", user_id=bob.user["id"])
    reply = await bob.request("chat.send", topic="stage:plenary", text="nog eens")
    assert reply["code"] == "banned"
    # Viewers cannot moderate.
    reply = await ann.request("chat.ban", topic="stage:plenary", user_id=mod.user["id"])
    assert reply["code"] == "forbidden"
    for person in (ann, bob, mod):
        await person.close()


async def test_moderation_state_survives_a_restart(make_settings):
    from aiohttp.test_utils import TestClient, TestServer

    from hybridcon.app import create_app

    settings = make_settings()
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as first:
        mod = await WsClient.connect(first, issue(first, Role.MODERATOR))
        bob = await WsClient.connect(first, issue(first, Role.VIEWER, sub="u:bob"))
        await bob.ok("chat.send", topic="stage:plenary", text="voor de herstart")
        await mod.ok("chat.ban", topic="stage:plenary", user_id="u:bob")
        await mod.ok("chat.slowmode", topic="stage:plenary", seconds=15)
        await mod.close()
        await bob.close()
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as second:
        bob = await WsClient.connect(second, issue(second, Role.VIEWER, sub="u:bob"))
        snap = await bob.ok("subscribe", topic="stage:plenary")
        assert snap["snapshot"]["settings"]["slowmode"] == 15
        assert [m["text"] for m in snap["snapshot"]["chat"]] == ["voor de herstart"]
        reply = await bob.request("chat.send", topic="stage:plenary", text="na de herstart")
        assert reply["code"] == "banned"
        await bob.close()


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"topic": "stage:plenary", "text": ""}, "empty"),
        ({"topic": "stage:plenary", "text": "x" * 501}, "500"),
        ({"topic": "stage:plenary"}, "text"),
        ({"topic": "stage:plenary", "text": 5}, "text"),
    ],
)
async def test_bad_chat_requests_get_clear_errors(client, fields, fragment):
    ann = await WsClient.connect(client, issue(client))
    reply = await ann.request("chat.send", **fields)
    assert reply["type"] == "error" and reply["code"] == "invalid"
    assert fragment in reply["message"]
    await ann.close()


async def test_a_moderator_joining_while_lines_are_held_sees_each_line_once(client):
    """The snapshot's held list plus the ``chat.held`` pushes after it are every held line,
    each exactly once, even when the moderator subscribes while lines are being held."""
    first = await WsClient.connect(client, issue(client, Role.MODERATOR, scopes=("stage:plenary",)))
    await first.ok("chat.hold", topic="stage:plenary", enabled=True)
    viewers = [
        await WsClient.connect(client, issue(client, Role.VIEWER, scopes=("stage:plenary",)))
        for _ in range(24)
    ]
    mod = await WsClient.connect(client, issue(client, Role.MODERATOR, scopes=("stage:plenary",)))

    async def send(i: int) -> str:
        reply = await viewers[i].ok("chat.send", topic="stage:plenary", text=f"vraag {i}")
        assert reply["held"] is True
        return str(reply["msg_id"])

    # Half the lines go before the subscribe, half race it.
    early = [await send(i) for i in range(4)]
    racing = [asyncio.ensure_future(send(i)) for i in range(4, 24)]
    snapshot = await mod.ok("subscribe", topic="mod:stage:plenary")
    held_ids = early + list(await asyncio.gather(*racing))
    in_snapshot = [m["msg_id"] for m in snapshot["snapshot"]["held"]]
    assert set(early) <= set(in_snapshot)

    # A marker held last: once its push is here, every earlier push is too (topic order).
    marker_viewer = await WsClient.connect(
        client, issue(client, Role.VIEWER, scopes=("stage:plenary",))
    )
    marker = await marker_viewer.ok("chat.send", topic="stage:plenary", text="laatste")
    pushed: list[str] = []
    while (msg := await mod.push("chat.held"))["msg_id"] != marker["msg_id"]:
        pushed.append(msg["msg_id"])
    seen = in_snapshot + pushed
    assert sorted(seen) == sorted(held_ids), "each held line once: in the snapshot or pushed"


async def test_the_moderators_held_list_follows_approvals_and_deletions(client):
    ann, bob, mod = await people(client)
    await mod.ok("chat.hold", topic="stage:plenary", enabled=True)
    kept = await ann.ok("chat.send", topic="stage:plenary", text="een vraag")
    approved = await bob.ok("chat.send", topic="stage:plenary", text="nog een vraag")
    await mod.ok("chat.approve", topic="stage:plenary", msg_id=approved["msg_id"])
    deleted = await bob.ok("chat.send", topic="stage:plenary", text="wat een klootzak")
    assert deleted["held"] is True
    await mod.ok("chat.delete", topic="stage:plenary", msg_id=deleted["msg_id"])
    late = await WsClient.connect(
        client, issue(client, Role.MODERATOR, name="Late", scopes=("stage:plenary",))
    )
    snapshot = await late.ok("subscribe", topic="mod:stage:plenary")
    assert [m["msg_id"] for m in snapshot["snapshot"]["held"]] == [kept["msg_id"]]
    assert snapshot["snapshot"]["held"][0]["text"] == "een vraag"
