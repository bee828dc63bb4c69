"""The organisers' live view moving as the day happens, hall check-ins in the log, and
the identified attendance export (organisers only, audited)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from hybridcon.core.engagement import actor_hash
from hybridcon.core.invites import parse_registrations
from hybridcon.core.tokens import Role
from hybridcon.store import invites
from support import WsClient, bearer, eventually, issue, services_of


async def live_until(org: WsClient, check, timeout: float = 15.0) -> dict[str, Any]:
    """The first ``live`` push whose view passes ``check`` (pushes come about once a second)."""
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while datetime.now(UTC) < deadline:
        push = await org.push("live", timeout=timeout)
        stages = {s["stage"]: s for s in push["stages"]}
        if check(push, stages):
            return push
    raise AssertionError("the live view did not show it in time")


async def test_the_live_view_moves_as_the_day_happens(client):
    organiser = issue(client, Role.ORGANISER)
    # Only organisers follow org.
    mod = await WsClient.connect(client, issue(client, Role.MODERATOR))
    assert (await mod.request("subscribe", topic="org"))["code"] == "forbidden"
    resp = await client.get("/api/v1/live", headers=bearer(issue(client, Role.MODERATOR)))
    assert resp.status == 403

    org = await WsClient.connect(client, organiser)
    snapshot = await org.ok("subscribe", topic="org")
    assert "live" in snapshot["snapshot"]
    quiet = await live_until(org, lambda _p, s: s["plenary"]["viewers"] == 0)
    assert quiet["backlog"] == {"held_lines": 0, "pending_questions": 0}

    anna = await WsClient.connect(client, issue(client, Role.VIEWER, name="Anna"))
    await anna.ok("subscribe", topic="stage:plenary")
    await anna.ok("presence.heartbeat", topic="stage:plenary", playing=True, visible=True)
    one = await live_until(org, lambda _p, s: s["plenary"]["viewers"] == 1)
    plenary = {s["stage"]: s for s in one["stages"]}["plenary"]
    assert plenary["attentive_share"] == 1.0 and plenary["peak"] == 1

    bert = await WsClient.connect(client, issue(client, Role.VIEWER, name="Bert"))
    await bert.ok("subscribe", topic="stage:plenary")
    await bert.ok("presence.heartbeat", topic="stage:plenary", playing=True, visible=False)
    await bert.ok("chat.send", topic="stage:plenary", text="Goeiemorgen!")
    await bert.ok("qa.ask", topic="stage:plenary", text="Wanneer is de pauze?")
    two = await live_until(
        org,
        lambda p, s: (
            s["plenary"]["viewers"] == 2
            and s["plenary"]["chat_per_minute"] == 1
            and p["backlog"]["pending_questions"] == 1
        ),
    )
    plenary = {s["stage"]: s for s in two["stages"]}["plenary"]
    assert plenary["attentive_share"] == 0.5 and plenary["peak"] == 2

    poll = await mod.ok(
        "poll.create",
        topics=["stage:plenary"],
        question="Koffie?",
        kind="single",
        options=["Ja", "Nee"],
        open=True,
    )
    await anna.ok("poll.vote", poll_id=poll["poll_id"], choice="a")
    voted = await live_until(
        org, lambda p, _s: bool(p["polls"]) and p["polls"][0]["voters_online"] == 1
    )
    assert voted["polls"][0]["poll_id"] == poll["poll_id"]

    # The HTTP route gives the same view.
    resp = await client.get("/api/v1/live", headers=bearer(organiser))
    assert resp.status == 200
    body = await resp.json()
    assert {s["stage"]: s for s in body["stages"]}["plenary"]["viewers"] == 2
    for ws in (anna, bert, org, mod):
        await ws.close()


async def test_a_hall_join_is_logged_as_a_checkin(client):
    organiser = bearer(issue(client, Role.ORGANISER))
    link = await (await client.post("/api/v1/halls/plenary/links", headers=organiser)).json()
    joined = await (await client.post("/api/v1/halls/join", json={"code": link["code"]})).json()
    services = services_of(client)
    expected = actor_hash(services.actor_key, joined["user"]["id"])

    async def logged() -> bool:
        row = await services.db().fetchrow(
            "SELECT actor, topic, data FROM engagement_events WHERE kind = 'checkin'"
        )
        if row is None:
            return False
        assert (row["actor"], row["topic"]) == (expected, "stage:plenary")
        assert orjson.loads(row["data"]) == {"role": "viewer", "link_id": link["link_id"]}
        return True

    await eventually(logged, what="the checkin row")


async def test_identified_attendance_is_for_organisers_and_audited(client):
    services = services_of(client)
    regs = parse_registrations(
        "ticket_id,name,email\nT-1,An Peeters,an@example.org\nT-2,=Bert,\n",
        default_role=Role.VIEWER,
        default_scopes=("*",),
    )
    db = services.db()
    async with db.acquire() as conn:
        await invites.import_registrations(
            conn, regs, secret=services.invite_secret, valid_until=datetime(2030, 1, 1, tzinfo=UTC)
        )
    an_id = await db.fetchval("SELECT id FROM invites WHERE ticket_id = 'T-1'")
    an = actor_hash(services.actor_key, f"i:{an_id.hex}")
    day = datetime(2022, 5, 5, 9, 0, tzinfo=UTC)
    rows = []
    for minute in range(7):  # 7 attentive minutes, twice each (two devices), one idle minute
        for second in (5, 35):
            rows.append(
                (
                    uuid.uuid4(),
                    day + timedelta(minutes=minute, seconds=second),
                    "heartbeat",
                    an,
                    "stage:impact",
                    '{"role":"viewer","playing":true,"visible":true}',
                )
            )
    rows.append(
        (
            uuid.uuid4(),
            day + timedelta(minutes=8),
            "heartbeat",
            an,
            "stage:impact",
            '{"role":"viewer","playing":true,"visible":false}',
        )
    )
    await db.copy_records_to_table(
        "engagement_events",
        records=rows,
        columns=("event_id", "ts", "kind", "actor", "topic", "data"),
    )
    viewer = await client.get("/api/v1/attendance", headers=bearer(issue(client, Role.VIEWER)))
    assert viewer.status == 403
    resp = await client.get("/api/v1/attendance", headers=bearer(issue(client, Role.ORGANISER)))
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["from"] == "2022-05-05"
    people = {p["ticket_id"]: p for p in body["people"]}
    assert people["T-1"]["attentive_minutes"] == 7 and people["T-1"]["name"] == "An Peeters"
    assert people["T-2"]["attentive_minutes"] == 0
    audit = await db.fetch(
        "SELECT actor_role, action, detail FROM audit_log WHERE action = 'attendance.export'"
    )
    assert len(audit) == 1 and audit[0]["actor_role"] == "organiser"
    assert orjson.loads(audit[0]["detail"])["count"] == 2
    bad = await client.get(
        "/api/v1/attendance?from=gisteren", headers=bearer(issue(client, Role.ORGANISER))
    )
    assert bad.status == 400


async def test_the_report_downloads_as_one_html_page_for_organisers(client):
    organiser = bearer(issue(client, Role.ORGANISER))
    # Nothing logged yet: nothing to report, and it says so.
    empty = await client.get("/api/v1/report", headers=organiser)
    assert empty.status == 404
    assert "nothing to report" in (await empty.json())["error"]["message"]

    ann = await WsClient.connect(client, issue(client, scopes=("stage:plenary",)))
    await ann.ok("subscribe", topic="stage:plenary")
    await ann.ok("chat.send", topic="stage:plenary", text="Goeiemorgen")

    async def downloaded() -> bool:
        resp = await client.get("/api/v1/report?lang=en", headers=organiser)
        return resp.status == 200

    await eventually(downloaded, what="the logged events reportable")
    resp = await client.get("/api/v1/report?lang=en", headers=organiser)
    assert resp.content_type == "text/html"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="rapport.html"'
    page = await resp.text()
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert 'lang="en"' in page and "Sociaalwerkconferentie" in page
    assert "Goeiemorgen" not in page  # chat counts, never its words

    viewer = await client.get("/api/v1/report", headers=bearer(issue(client)))
    assert viewer.status == 403
    bad = await client.get("/api/v1/report?lang=fr", headers=organiser)
    assert bad.status == 400
    audit = await (await client.get("/api/v1/audit", headers=organiser)).json()
    assert "report.download" in [e["action"] for e in audit["entries"]]
    await ann.close()
