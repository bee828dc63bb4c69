"""Hall participation: a QR link per room, phones join without registering."""

from __future__ import annotations

from hybridcon.core.tokens import Role
from support import WsClient, bearer, issue, services_of


async def test_an_organiser_prints_a_link_and_phones_join_and_vote_apart(client):
    organiser = bearer(issue(client, Role.ORGANISER))
    resp = await client.post("/api/v1/halls/plenary/links", headers=organiser)
    assert resp.status == 201
    link = await resp.json()
    assert link["link"].endswith(f"/hall#code={link['code']}")
    assert link["qr_svg"].startswith("<svg") and "</svg>" in link["qr_svg"]
    listed = await (await client.get("/api/v1/halls", headers=organiser)).json()
    assert [entry["code"] for entry in listed["links"]] == [link["code"]]

    joined = await (await client.post("/api/v1/halls/join", json={"code": link["code"]})).json()
    claims = services_of(client).auth().verify(joined["token"])
    assert claims.role is Role.VIEWER and claims.scopes == ("hall:plenary",)
    assert joined["topic"] == "stage:plenary"
    # The same phone rejoining is the same person; another phone is another.
    again = await (
        await client.post(
            "/api/v1/halls/join", json={"code": link["code"], "device": joined["device"]}
        )
    ).json()
    assert services_of(client).auth().verify(again["token"]).sub == claims.sub
    other = await (
        await client.post(
            "/api/v1/halls/join", json={"code": link["code"], "device": "another-phone-1"}
        )
    ).json()
    assert services_of(client).auth().verify(other["token"]).sub != claims.sub

    # The phone follows the plenary and votes; its vote counts under the hall.
    mod = await WsClient.connect(client, issue(client, Role.MODERATOR))
    poll = await mod.ok(
        "poll.create",
        topics=["stage:plenary"],
        question="In de zaal?",
        kind="single",
        options=["Ja", "Nee"],
        open=True,
    )
    phone = await WsClient.connect(client, joined["token"])
    await phone.ok("subscribe", topic="stage:plenary")
    reply = await phone.request("subscribe", topic="stage:impact")
    assert reply["code"] == "forbidden"
    await phone.ok("poll.vote", poll_id=poll["poll_id"], choice="b")
    results = (await mod.ok("poll.results", poll_id=poll["poll_id"]))["results"]
    assert results["by_origin"] == {"hall:plenary": {"counts": {"a": 0, "b": 1}, "voters": 1}}
    await phone.close()
    await mod.close()


async def test_links_are_for_organisers_and_wrong_codes_are_limited(client):
    resp = await client.post(
        "/api/v1/halls/plenary/links", headers=bearer(issue(client, Role.MODERATOR))
    )
    assert resp.status == 403
    resp = await client.post(
        "/api/v1/halls/nowhere/links", headers=bearer(issue(client, Role.ORGANISER))
    )
    assert resp.status == 404
    statuses = []
    for _ in range(12):
        resp = await client.post("/api/v1/halls/join", json={"code": "AAAA-BBBB-CCCC-DDDD"})
        statuses.append(resp.status)
    assert statuses[:10] == [404] * 10
    assert statuses[10:] == [429, 429]


async def test_a_withdrawn_link_joins_nobody(client):
    organiser = bearer(issue(client, Role.ORGANISER))
    link = await (await client.post("/api/v1/halls/radio/links", headers=organiser)).json()
    assert (await client.post("/api/v1/halls/join", json={"code": link["code"]})).status == 200
    resp = await client.delete(f"/api/v1/halls/links/{link['link_id']}", headers=organiser)
    assert resp.status == 200
    resp = await client.post("/api/v1/halls/join", json={"code": link["code"]})
    assert resp.status == 409
    assert "no longer valid" in (await resp.json())["error"]["message"]
    again = await client.delete(f"/api/v1/halls/links/{link['link_id']}", headers=organiser)
    assert again.status == 404
