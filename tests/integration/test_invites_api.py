"""Redeeming invite codes: one device per code, clear refusals, rate limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hybridcon.core.invites import Registration, derive_code
from hybridcon.core.tokens import Role
from hybridcon.store import invites
from support import services_of


async def make_invite(
    client, ticket: str = "T-1", *, valid_until: datetime | None = None, role: Role = Role.VIEWER
) -> str:
    services = services_of(client)
    async with services.db().acquire() as conn:
        await invites.import_registrations(
            conn,
            [
                Registration(
                    line=2,
                    ticket_id=ticket,
                    name="Ann Peeters",
                    email=None,
                    role=role,
                    scopes=("stage:plenary",),
                )
            ],
            secret=services.invite_secret,
            valid_until=valid_until or datetime.now(UTC) + timedelta(days=1),
        )
    links = await invites.export_links(services.db(), secret=services.invite_secret)
    return next(link.code for link in links if link.ticket_id == ticket)


async def test_first_redeem_binds_the_device_and_only_it_may_redeem_again(client):
    code = await make_invite(client)
    first = await client.post("/api/v1/invites/redeem", json={"code": code})
    assert first.status == 200
    body = await first.json()
    device = body["device"]
    claims = services_of(client).auth().verify(body["token"])
    assert claims.scopes == ("stage:plenary",) and claims.name == "Ann Peeters"
    assert body["expires_at"] == claims.exp.isoformat()

    # The same device (a new tab, an expired token) gets a new token for the same person.
    again = await client.post("/api/v1/invites/redeem", json={"code": code, "device": device})
    assert again.status == 200
    assert services_of(client).auth().verify((await again.json())["token"]).sub == claims.sub

    # A second device never does.
    other = await client.post(
        "/api/v1/invites/redeem", json={"code": code, "device": "someone-elses-phone"}
    )
    assert other.status == 409
    error = (await other.json())["error"]
    assert error["code"] == "conflict" and "another device" in error["message"]
    row = await services_of(client).db().fetchrow("SELECT redeem_count FROM invites")
    assert row["redeem_count"] == 2


async def test_an_expired_invite_is_refused(client):
    code = await make_invite(client, valid_until=datetime.now(UTC) - timedelta(minutes=1))
    resp = await client.post("/api/v1/invites/redeem", json={"code": code})
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error["code"] == "closed" and "expired" in error["message"]


async def test_token_lifetime_never_outlives_the_invite(client):
    code = await make_invite(client, valid_until=datetime.now(UTC) + timedelta(minutes=30))
    body = await (await client.post("/api/v1/invites/redeem", json={"code": code})).json()
    claims = services_of(client).auth().verify(body["token"])
    assert claims.exp - claims.iat <= timedelta(minutes=30)


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        ({"code": "AAAA-BBBB-CCCC-DDDD"}, 404, "not_found", "no invite"),
        ({"code": "hello"}, 400, "invalid", "not an invite code"),
        ({}, 400, "invalid", "code"),
        ({"code": 12345}, 400, "invalid", "code"),
        ({"code": "AAAA-BBBB-CCCC-DDDD", "device": "short"}, 400, "invalid", "device"),
    ],
)
async def test_bad_redeem_requests(client, body, status, code, fragment):
    resp = await client.post("/api/v1/invites/redeem", json=body)
    assert resp.status == status
    error = (await resp.json())["error"]
    assert error["code"] == code
    assert fragment in error["message"]


async def test_guessing_is_rate_limited_per_address(client):
    statuses = []
    for i in range(12):
        resp = await client.post(
            "/api/v1/invites/redeem", json={"code": derive_code(b"not-the-secret" * 2, bytes([i]))}
        )
        statuses.append(resp.status)
    assert statuses[:10] == [404] * 10
    assert statuses[10:] == [429, 429]
    assert int(resp.headers["Retry-After"]) >= 1
    metrics = await (await client.get("/metrics")).text()
    assert 'hybridcon_invite_redeems_total{outcome="rate_limited"} 2.0' in metrics


async def test_behind_a_trusted_proxy_each_client_has_its_own_redeem_bucket(client):
    """nginx on the machine (a trusted proxy by default) passes X-Forwarded-For: the
    guessing limit is per real client, not one bucket for everyone behind it."""

    async def attempt(i: int, forwarded: str) -> int:
        resp = await client.post(
            "/api/v1/invites/redeem",
            json={"code": derive_code(b"not-the-secret" * 2, bytes([i]))},
            headers={"X-Forwarded-For": forwarded},
        )
        return resp.status

    first = [await attempt(i, "198.51.100.7") for i in range(11)]
    assert first[:10] == [404] * 10 and first[10] == 429
    assert await attempt(11, "198.51.100.8") == 404  # another person behind the proxy


async def test_an_untrusted_peer_cannot_choose_its_bucket(make_settings):
    """Without a trusted proxy in front, X-Forwarded-For is anyone's to write: ignored."""
    from aiohttp.test_utils import TestClient, TestServer

    from hybridcon.app import create_app

    app = create_app(make_settings(reverse_proxies=[]))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as untrusted:
        statuses = []
        for i in range(11):
            resp = await untrusted.post(
                "/api/v1/invites/redeem",
                json={"code": derive_code(b"not-the-secret" * 2, bytes([i]))},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            statuses.append(resp.status)
        assert statuses[10] == 429
