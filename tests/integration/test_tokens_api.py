"""Tokens over HTTP: JWKS verification with PyJWT, organiser-only issuing, and refusals."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hybridcon.core.keys import Keyset
from hybridcon.core.tokens import Role, TokenRequest, issue_token
from support import bearer, issue, services_of


async def verify_with_jwks(client, token: str) -> dict:
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    keyset = jwt.PyJWKSet.from_dict(jwks)
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.decode(
        token,
        key=keyset[kid].key,
        algorithms=["EdDSA"],
        audience="hybridcon",
        issuer="hybridcon",
        options={"require": ["exp", "aud", "iss"]},
    )


async def test_jwks_publishes_the_active_key_with_its_kid(client):
    resp = await client.get("/.well-known/jwks.json")
    assert resp.status == 200
    body = await resp.json()
    active = services_of(client).auth().keyset.active_kid
    assert [k["kid"] for k in body["keys"]] == [active]
    assert body["keys"][0]["kty"] == "OKP" and body["keys"][0]["crv"] == "Ed25519"
    assert "d" not in body["keys"][0]  # never the private part


async def test_organiser_issues_tokens_that_verify_against_jwks(client):
    organiser = issue(client, Role.ORGANISER)
    resp = await client.post(
        "/api/v1/tokens",
        json={
            "role": "viewer",
            "scopes": ["stage:plenary"],
            "name": "Els",
            "count": 3,
            "ttl_seconds": 3600,
        },
        headers=bearer(organiser),
    )
    assert resp.status == 201
    tokens = (await resp.json())["tokens"]
    assert len(tokens) == 3
    assert len({t["sub"] for t in tokens}) == 3  # each its own person
    for item in tokens:
        claims = await verify_with_jwks(client, item["token"])
        assert claims["role"] == "viewer"
        assert claims["scopes"] == ["stage:plenary"]
        assert claims["name"] == "Els"
        assert claims["exp"] - claims["iat"] == 3600
    audit = await (await client.get("/api/v1/audit", headers=bearer(organiser))).json()
    assert audit["entries"][0]["action"] == "token.issue"
    assert audit["entries"][0]["detail"]["count"] == 3


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MODERATOR, Role.BROADCASTER, Role.SPEAKER])
async def test_only_organisers_issue_tokens(client, role):
    resp = await client.post(
        "/api/v1/tokens", json={"role": "organiser"}, headers=bearer(issue(client, role))
    )
    assert resp.status == 403
    error = (await resp.json())["error"]
    assert error["code"] == "forbidden"
    assert role.value in error["message"]


async def test_issuing_without_a_token_is_unauthorized(client):
    resp = await client.post("/api/v1/tokens", json={"role": "viewer"})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"role": "admin"}, "role"),
        ({"role": "viewer", "scopes": ["stage:Plenary"]}, "scope"),
        ({"role": "viewer", "count": 0}, "count"),
        ({"role": "viewer", "ttl_seconds": 10 * 86400}, "maximum"),
        ({"role": "viewer", "colour": "red"}, "colour"),
        ({"role": "viewer", "name": "x" * 81}, "name"),
    ],
)
async def test_bad_issue_requests_name_the_problem(client, body, fragment):
    resp = await client.post(
        "/api/v1/tokens", json=body, headers=bearer(issue(client, Role.ORGANISER))
    )
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "invalid"
    assert fragment in error["message"]


@pytest.mark.parametrize(
    ("scope", "fragment"),
    [
        ("stage:mainstage", "stage 'mainstage', which is not in the programme (stages: plenary"),
        ("hall:nowhere", "stage 'nowhere', which is not in the programme"),
        ("session:ws-99", "session 'ws-99', which is not in the programme"),
    ],
)
async def test_scopes_must_name_the_programmes_stages_and_sessions(client, scope, fragment):
    headers = bearer(issue(client, Role.ORGANISER))
    resp = await client.post(
        "/api/v1/tokens",
        json={"role": "viewer", "scopes": ["stage:plenary", scope]},
        headers=headers,
    )
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "invalid"
    assert fragment in error["message"]
    programme = services_of(client).programme
    session = programme.sessions[0].id
    resp = await client.post(
        "/api/v1/tokens",
        json={"role": "viewer", "scopes": ["stage:plenary", "hall:plenary", f"session:{session}"]},
        headers=headers,
    )
    assert resp.status == 201, await resp.text()


async def test_refusals_read_as_sentences(client):
    resp = await client.post(
        "/api/v1/tokens", json={"role": "viewer"}, headers=bearer(issue(client, Role.VIEWER))
    )
    assert (await resp.json())["error"]["message"] == (
        "this needs an organiser token; yours is viewer"
    )
    resp = await client.post(
        "/api/v1/tokens",
        json={"role": "viewer", "ttl_seconds": 100_000_000},
        headers=bearer(issue(client, Role.ORGANISER)),
    )
    assert (await resp.json())["error"]["message"] == (
        "token lifetime 1157 days 9 hours 46 minutes 40 seconds is longer than the maximum 2 days"
    )


async def test_malformed_and_oversized_bodies(client):
    headers = bearer(issue(client, Role.ORGANISER))
    resp = await client.post("/api/v1/tokens", data=b"{not json", headers=headers)
    assert resp.status == 400
    assert "JSON" in (await resp.json())["error"]["message"]
    resp = await client.post("/api/v1/tokens", data=b"x" * (70 * 1024), headers=headers)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "too_large"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def refused(client, token: str) -> str:
    resp = await client.get("/api/v1/revocations", headers=bearer(token))
    assert resp.status == 401, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "unauthorized"
    return error["message"]


async def test_tampered_token_is_refused(client):
    token = issue(client, Role.VIEWER)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "organiser"
    forged = f"{header}.{_b64(claims)}.{signature}"
    assert "signature" in await refused(client, forged)


async def test_expired_token_is_refused(client):
    services = services_of(client)
    token, _ = issue_token(
        services.auth().keyset,
        TokenRequest(role=Role.ORGANISER, scopes=("*",), ttl=timedelta(minutes=5)),
        issuer="hybridcon",
        audience="hybridcon",
        now=services.clock() - timedelta(hours=1),
        default_ttl=timedelta(hours=1),
        max_ttl=timedelta(days=1),
    )
    assert "expired" in await refused(client, token)


async def test_alg_none_token_is_refused(client):
    kid = services_of(client).auth().keyset.active_kid
    payload = jwt.decode(issue(client, Role.ORGANISER), options={"verify_signature": False})
    unsigned = f"{_b64({'alg': 'none', 'kid': kid})}.{_b64(payload)}."
    assert "'none'" in await refused(client, unsigned)


async def test_token_from_a_foreign_key_is_refused(client):
    foreign = Keyset.generate(services_of(client).clock())
    token, _ = issue_token(
        foreign,
        TokenRequest(role=Role.ORGANISER, scopes=("*",)),
        issuer="hybridcon",
        audience="hybridcon",
        now=services_of(client).clock(),
        default_ttl=timedelta(hours=1),
        max_ttl=timedelta(days=1),
    )
    assert "unknown key" in await refused(client, token)
    # The same, pretending to be our key: the signature gives it away.
    payload = jwt.decode(token, options={"verify_signature": False})
    ours = services_of(client).auth().keyset.active_kid
    impostor = jwt.encode(
        payload, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": ours}
    )
    assert "signature" in await refused(client, impostor)


async def test_wrong_audience_is_refused(client):
    services = services_of(client)
    token, _ = issue_token(
        services.auth().keyset,
        TokenRequest(role=Role.ORGANISER, scopes=("*",)),
        issuer="hybridcon",
        audience="someone-else",
        now=services.clock(),
        default_ttl=timedelta(hours=1),
        max_ttl=timedelta(days=1),
    )
    assert "audience" in await refused(client, token)


async def test_revoked_token_is_refused_and_audited(client):
    organiser = issue(client, Role.ORGANISER)
    victim = issue(client, Role.MODERATOR)
    jti = jwt.decode(victim, options={"verify_signature": False})["jti"]
    assert (await client.get("/api/v1/revocations", headers=bearer(organiser))).status == 200

    resp = await client.post(
        "/api/v1/revocations",
        json={"jti": jti, "reason": "shared in a group chat"},
        headers=bearer(organiser),
    )
    assert resp.status == 201
    assert "revoked" in await refused(client, victim)
    listing = await (await client.get("/api/v1/revocations", headers=bearer(organiser))).json()
    assert [r["jti"] for r in listing["revocations"]] == [jti]
    audit = await (await client.get("/api/v1/audit", headers=bearer(organiser))).json()
    assert audit["entries"][0]["action"] == "token.revoke"
    assert audit["entries"][0]["target"] == jti

    # Revoking again is harmless and says so.
    again = await client.post("/api/v1/revocations", json={"jti": jti}, headers=bearer(organiser))
    assert again.status == 200
    assert (await again.json())["new"] is False
