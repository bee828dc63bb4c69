"""Hall participation: a QR link per room, phones join without registering."""

from __future__ import annotations

from hybridcon.core.tokens import Role
from hybridcon.report import build as report_build
from support import WsClient, bearer, eventually, issue, services_of


async def test_an_organiser_prints_a_link_and_phones_join_and_vote_apart(client):
    organiser = bearer(issue(client, Role.ORGANISER))
    resp = await client.post("/api/v1/halls/plenary/links", headers=organiser)
    assert resp.status == 201
    link = await resp.json()
    assert link["link"].endswith(f"/hall#code={link['code']}")
    assert link["qr_svg"].startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert link["qr_svg"].endswith("</svg>")
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


async def test_workshops_and_walks_get_check_in_links_and_the_report_counts_them(client):
    organiser = bearer(issue(client, Role.ORGANISER))
    made = {}
    for session in ("ws-impact-1", "wandeling-01"):
        resp = await client.post(f"/api/v1/halls/sessions/{session}/links", headers=organiser)
        assert resp.status == 201
        made[session] = await resp.json()
        assert made[session]["session"] == session and made[session]["stage"] is None
    # Not for a session that happens online only, nor for one that is not in the programme.
    resp = await client.post("/api/v1/halls/sessions/online-1/links", headers=organiser)
    assert resp.status == 400
    assert "online only" in (await resp.json())["error"]["message"]
    resp = await client.post("/api/v1/halls/sessions/nergens/links", headers=organiser)
    assert resp.status == 404
    resp = await client.post(
        "/api/v1/halls/sessions/ws-impact-1/links", headers=bearer(issue(client, Role.MODERATOR))
    )
    assert resp.status == 403
    listed = (await (await client.get("/api/v1/halls", headers=organiser)).json())["links"]
    assert {entry["session"] for entry in listed} == {"ws-impact-1", "wandeling-01"}

    # Two phones scan the walk's code (one of them twice), one the workshop's.
    services = services_of(client)
    scans = [
        ("wandeling-01", "phone-of-an-1"),
        ("wandeling-01", "phone-of-an-1"),
        ("wandeling-01", "phone-of-bo-1"),
        ("ws-impact-1", "phone-of-cas-1"),
    ]
    for session, device in scans:
        resp = await client.post(
            "/api/v1/halls/join", json={"code": made[session]["code"], "device": device}
        )
        joined = await resp.json()
        assert joined["topic"] == f"session:{session}"
        claims = services.auth().verify(joined["token"])
        assert claims.scopes == (f"session:{session}",)
    # The phone follows its session's topic and no stage.
    phone = await WsClient.connect(client, joined["token"])
    await phone.ok("subscribe", topic="session:ws-impact-1")
    assert (await phone.request("subscribe", topic="stage:impact"))["code"] == "forbidden"
    await phone.close()

    async def logged() -> bool:
        n = await services.db().fetchval(
            "SELECT count(*) FROM engagement_events WHERE kind = 'checkin'"
        )
        return bool(n == len(scans))

    await eventually(logged, what="every scan logged")
    figures = await report_build.build(services.db(), services.programme, start=None, end=None, k=1)
    table = figures.table("checkins")
    people, title = table.column("people"), table.column("title")
    assert {row[0]: (row[title], row[people]) for row in table.rows} == {
        "session:wandeling-01": (services.programme.session("wandeling-01").title, 2),
        "session:ws-impact-1": (services.programme.session("ws-impact-1").title, 1),
    }
