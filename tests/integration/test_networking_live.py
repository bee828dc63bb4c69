"""Networking over real WebSockets: a table of six refuses the seventh, roulette pairs an
odd number of people, leaving and reporting (to the moderators on ``mod:event``)."""

from __future__ import annotations

from hybridcon.core.tokens import Role
from support import WsClient, issue, services_of


async def people(client, names: list[str]) -> list[WsClient]:
    return [
        await WsClient.connect(client, issue(client, sub=f"u:{n}", name=n.title())) for n in names
    ]


async def test_six_at_a_table_and_the_seventh_refused(client):
    guests = await people(client, ["a", "b", "c", "d", "e", "f", "g"])
    first = await guests[0].ok("network.join")
    assert first["state"] == "table" and first["table"] == "t1"
    for guest in guests[1:6]:
        seated = await guest.ok("network.join", table="t1")
        assert seated["table"] == "t1"
    full = await guests[0].push("network.table")
    while len(full["people"]) < 6:
        full = await guests[0].push("network.table")
    assert [p["name"] for p in full["people"]] == ["A", "B", "C", "D", "E", "F"]
    refused = await guests[6].request("network.join", table="t1")
    assert refused["code"] == "conflict" and "table t1 is full (6 people)" in refused["message"]
    assert (await guests[6].ok("network.join"))["table"] == "t2"
    listing = await guests[6].ok("network.tables")
    assert listing["tables"] == [
        {"table": "t1", "people": 6, "seats": 6},
        {"table": "t2", "people": 1, "seats": 6},
    ]
    bad = await guests[6].request("network.join", table="kitchen")
    assert bad["code"] == "invalid"
    # Someone leaves (by closing the page): the others at the table hear of it.
    await guests[5].close()
    while len((await guests[0].push("network.table"))["people"]) != 5:
        pass
    for guest in guests[:5] + guests[6:]:
        await guest.close()


async def test_roulette_pairs_an_odd_number_and_reports_reach_the_moderators(client):
    mod = await WsClient.connect(client, issue(client, Role.MODERATOR, sub="u:mod"))
    await mod.ok("subscribe", topic="mod:event")
    a, b, c = await people(client, ["ann", "bob", "cas"])
    assert (await a.ok("network.roulette"))["state"] == "waiting"
    paired = await b.ok("network.roulette")
    assert paired["state"] == "paired" and paired["partner"]["id"] == "u:ann"
    assert (await a.push("network.paired"))["partner"]["name"] == "Bob"
    assert (await c.ok("network.roulette"))["state"] == "waiting"  # odd one out
    again = await c.request("network.roulette")
    assert again["code"] == "conflict"

    # Ann reports Bob: the pairing ends, Bob is out of the roulette, Ann meets Cas.
    reported = await a.ok("network.report", user_id="u:bob", reason="ongepast")
    assert reported["where"].startswith("pair:net~p")
    assert (await b.push("network.unpaired"))["reason"] == "reported"
    assert (await c.push("network.paired"))["partner"]["id"] == "u:ann"
    assert (await a.push("network.unpaired"))["reason"] == "reported"
    assert (await a.push("network.paired"))["partner"]["id"] == "u:cas"
    report = await mod.push("network.reported")
    assert report["reported"] == {"id": "u:bob", "name": "Bob"}
    assert report["reporter"]["id"] == "u:ann" and report["reason"] == "ongepast"
    audit = (
        await services_of(client)
        .db()
        .fetchrow("SELECT action, target FROM audit_log WHERE action = 'network.report'")
    )
    assert audit is not None and audit["target"] == "u:bob"
    nobody = await c.request("network.report", user_id="u:bob")
    assert nobody["code"] == "not_found"

    # Leaving a pairing sends the partner back to waiting.
    assert (await c.ok("network.leave"))["state"] == "out"
    assert (await a.push("network.unpaired"))["reason"] == "left"
    not_in = await c.request("network.leave")
    assert not_in["code"] == "invalid"
    for ws in (mod, a, b, c):
        await ws.close()
