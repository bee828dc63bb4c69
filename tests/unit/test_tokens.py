"""Unit tests for hybridcon.core.tokens: issuing, verifying and scoping access tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridcon.core.keys import Keyset, SigningKey
from hybridcon.core.tokens import (
    MAX_NAME_LENGTH,
    REQUIRED_CLAIMS,
    Claims,
    Role,
    TokenRequest,
    UnknownKey,
    issue_token,
    parse_role,
    parse_scopes,
    token_kid,
    verify_token,
)
from hybridcon.errors import Invalid, Revoked, TokenError, Unauthorized

ISS = "https://hybridcon.test"
AUD = "hybridcon"
T0 = datetime(2022, 5, 5, 7, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
DEFAULT_TTL = timedelta(hours=12)
MAX_TTL = timedelta(days=2)
LEEWAY = timedelta(seconds=30)
ID_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"


# --- helpers -------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(obj: object) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(
    keyset: Keyset,
    *,
    role: Role = Role.VIEWER,
    scopes: tuple[str, ...] = ("*",),
    name: str = "Ann Peeters",
    sub: str | None = None,
    ttl: timedelta | None = None,
    now: datetime = T0,
) -> tuple[str, Claims]:
    return issue_token(
        keyset,
        TokenRequest(role=role, scopes=scopes, name=name, sub=sub, ttl=ttl),
        issuer=ISS,
        audience=AUD,
        now=now,
        default_ttl=DEFAULT_TTL,
        max_ttl=MAX_TTL,
    )


def verify(token: Any, keyset: Keyset, *, now: datetime = T0, **kwargs: Any) -> Claims:
    return verify_token(token, keyset, issuer=ISS, audience=AUD, now=now, **kwargs)


def payload_at(now: datetime = T0, ttl: timedelta = HOUR, **changes: Any) -> dict[str, Any]:
    """A complete, valid payload; a change of ``...`` removes the claim."""
    ts = int(now.timestamp())
    payload: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "u:test",
        "iat": ts,
        "nbf": ts,
        "exp": ts + int(ttl.total_seconds()),
        "jti": "jti-1",
        "role": "viewer",
        "scopes": ["*"],
        "name": "Ann",
    }
    for claim, value in changes.items():
        if value is ...:
            payload.pop(claim)
        else:
            payload[claim] = value
    return payload


def sign(keyset: Keyset, payload: dict[str, Any], *, kid: str | None = None) -> str:
    """Sign a payload of our own making with the keyset's active key."""
    key = keyset.active
    return jwt.encode(payload, key.private_key, algorithm="EdDSA", headers={"kid": kid or key.kid})


def sign_raw(private_key: Ed25519PrivateKey, header: dict[str, Any], payload: bytes) -> str:
    """Sign arbitrary header and payload bytes by hand (no PyJWT checks on the way)."""
    signing_input = f"{b64json(header)}.{b64url(payload)}".encode()
    return f"{signing_input.decode()}.{b64url(private_key.sign(signing_input))}"


def make_claims(role: Role, scopes: tuple[str, ...]) -> Claims:
    return Claims(
        sub="u:x",
        role=role,
        scopes=scopes,
        name="",
        jti="j",
        iss=ISS,
        aud=AUD,
        iat=T0,
        nbf=T0,
        exp=T0 + HOUR,
    )


@pytest.fixture
def keyset() -> Keyset:
    return Keyset.generate(T0 - timedelta(days=1))


@lru_cache(maxsize=1)
def shared_keyset_and_token() -> tuple[Keyset, str]:
    """For hypothesis tests, which may not use function-scoped fixtures."""
    ks = Keyset.generate(T0)
    token, _ = issue(ks, role=Role.MODERATOR, scopes=("stage:plenary",))
    return ks, token


# --- issue and verify ----------------------------------------------------------------


def test_issue_then_verify_round_trips_all_claims(keyset: Keyset) -> None:
    now = T0.replace(microsecond=654321)
    token, issued = issue(
        keyset,
        role=Role.MODERATOR,
        scopes=("stage:plenary", "session:online-1"),
        name="  Ann Peeters  ",
        sub="ticket:T-001",
        ttl=HOUR,
        now=now,
    )

    assert issued.iss == ISS
    assert issued.aud == AUD
    assert issued.sub == "ticket:T-001"
    assert issued.role is Role.MODERATOR
    assert issued.scopes == ("stage:plenary", "session:online-1")
    assert issued.name == "Ann Peeters"  # stripped
    assert issued.iat == T0  # microseconds dropped
    assert issued.nbf == T0
    assert issued.exp == T0 + HOUR
    assert re.fullmatch(r"[0-9a-f]{32}", issued.jti)

    verified = verify(token, keyset, now=now)
    assert verified == issued
    assert verified.iat.tzinfo is not None

    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == keyset.active_kid
    raw = jwt.decode(token, options={"verify_signature": False})
    assert raw == {
        "iss": ISS,
        "aud": AUD,
        "sub": "ticket:T-001",
        "iat": int(T0.timestamp()),
        "nbf": int(T0.timestamp()),
        "exp": int((T0 + HOUR).timestamp()),
        "jti": issued.jti,
        "role": "moderator",
        "scopes": ["stage:plenary", "session:online-1"],
        "name": "Ann Peeters",
    }


def test_issue_defaults_sub_ttl_and_fresh_jti(keyset: Keyset) -> None:
    token_a, a = issue(keyset)
    _, b = issue(keyset)
    assert re.fullmatch(r"u:[0-9a-f]{32}", a.sub)
    assert a.sub != b.sub
    assert a.jti != b.jti
    assert a.exp - a.iat == DEFAULT_TTL
    assert verify(token_a, keyset).sub == a.sub


def test_claims_to_user(keyset: Keyset) -> None:
    _, claims = issue(keyset, role=Role.SPEAKER, scopes=("stage:plenary",), name="Bo", sub="s1")
    assert claims.to_user() == {
        "id": "s1",
        "name": "Bo",
        "role": "speaker",
        "scopes": ("stage:plenary",),
    }


@pytest.mark.parametrize("role", list(Role))
def test_every_role_round_trips(keyset: Keyset, role: Role) -> None:
    token, _ = issue(keyset, role=role)
    assert verify(token, keyset).role is role


# --- time claims against a fake clock -----------------------------------------------


def test_expired_token_is_refused_beyond_leeway_and_accepted_within(keyset: Keyset) -> None:
    token, claims = issue(keyset, ttl=HOUR)
    assert verify(token, keyset, now=claims.exp).jti == claims.jti
    assert verify(token, keyset, now=claims.exp + LEEWAY - timedelta(seconds=1))
    with pytest.raises(TokenError, match="expired"):
        verify(token, keyset, now=claims.exp + LEEWAY)
    with pytest.raises(TokenError, match="expired"):
        verify(token, keyset, now=claims.exp + timedelta(days=30))


def test_leeway_is_configurable(keyset: Keyset) -> None:
    token, claims = issue(keyset, ttl=HOUR)
    assert verify(token, keyset, now=claims.exp - timedelta(seconds=1), leeway=timedelta(0))
    with pytest.raises(TokenError, match="expired"):
        verify(token, keyset, now=claims.exp, leeway=timedelta(0))
    assert verify(token, keyset, now=claims.exp + timedelta(minutes=4), leeway=timedelta(minutes=5))


def test_nbf_in_the_future_is_refused(keyset: Keyset) -> None:
    token = sign(keyset, payload_at(nbf=int((T0 + timedelta(minutes=5)).timestamp())))
    with pytest.raises(TokenError, match="not valid before"):
        verify(token, keyset, now=T0)
    # Once the clock reaches nbf - leeway, it is fine.
    assert verify(token, keyset, now=T0 + timedelta(minutes=5) - LEEWAY)


def test_nbf_within_leeway_is_accepted(keyset: Keyset) -> None:
    token = sign(keyset, payload_at(nbf=int((T0 + timedelta(seconds=10)).timestamp())))
    assert verify(token, keyset, now=T0).nbf == T0 + timedelta(seconds=10)


def test_token_used_before_its_issue_time_is_refused(keyset: Keyset) -> None:
    token, _ = issue(keyset, now=T0)
    with pytest.raises(TokenError, match="not valid before"):
        verify(token, keyset, now=T0 - timedelta(minutes=1))
    assert verify(token, keyset, now=T0 - timedelta(seconds=29))


def test_iat_in_the_future_is_refused(keyset: Keyset) -> None:
    token = sign(keyset, payload_at(iat=int((T0 + timedelta(minutes=5)).timestamp())))
    with pytest.raises(TokenError, match="issued in the future"):
        verify(token, keyset, now=T0)


# --- tampering and forgery -----------------------------------------------------------


def test_tampered_payload_is_refused(keyset: Keyset) -> None:
    token, _ = issue(keyset, role=Role.VIEWER, scopes=("stage:plenary",))
    header, payload, signature = token.split(".")
    claims = json.loads(unb64url(payload))
    claims["role"] = "organiser"
    claims["scopes"] = ["*"]
    forged = f"{header}.{b64json(claims)}.{signature}"
    with pytest.raises(TokenError, match="signature does not verify"):
        verify(forged, keyset)


def test_tampered_signature_is_refused(keyset: Keyset) -> None:
    token, _ = issue(keyset)
    header, payload, signature = token.split(".")
    raw = bytearray(unb64url(signature))
    raw[10] ^= 0x01
    forged = f"{header}.{payload}.{b64url(bytes(raw))}"
    with pytest.raises(TokenError, match="signature does not verify"):
        verify(forged, keyset)


def test_eddsa_header_with_empty_signature_is_refused(keyset: Keyset) -> None:
    token, _ = issue(keyset)
    header, payload, _ = token.split(".")
    with pytest.raises(TokenError):
        verify(f"{header}.{payload}.", keyset)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_token_is_refused(keyset: Keyset, alg: str) -> None:
    header = {"alg": alg, "typ": "JWT", "kid": keyset.active_kid}
    token = f"{b64json(header)}.{b64json(payload_at())}."
    with pytest.raises(TokenError, match=rf"algorithm '{alg}' is not accepted"):
        verify(token, keyset)


@pytest.mark.parametrize("encoding", ["raw", "pem"])
def test_hs256_signed_with_the_public_key_is_refused(keyset: Keyset, encoding: str) -> None:
    public = keyset.active.public_key
    if encoding == "raw":
        secret = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        secret = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    signing_input = f"{b64json({'alg': 'HS256', 'kid': keyset.active_kid})}.{b64json(payload_at())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64url(mac)}"
    with pytest.raises(TokenError, match="algorithm 'HS256' is not accepted"):
        verify(token, keyset)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "HS512", "Ed25519"])
def test_other_algorithms_are_refused(keyset: Keyset, alg: str) -> None:
    token = f"{b64json({'alg': alg, 'kid': keyset.active_kid})}.{b64json(payload_at())}.AAAA"
    with pytest.raises(TokenError, match=f"algorithm '{alg}' is not accepted"):
        verify(token, keyset)


def test_token_from_a_foreign_key_with_unknown_kid_is_unknown_key(keyset: Keyset) -> None:
    foreign = Keyset.generate(T0)
    token, _ = issue(foreign)
    with pytest.raises(UnknownKey, match="unknown key") as info:
        verify(token, keyset)
    assert foreign.active_kid in info.value.message
    assert isinstance(info.value, TokenError)
    assert isinstance(info.value, Unauthorized)


def test_token_from_a_foreign_key_claiming_our_kid_does_not_verify(keyset: Keyset) -> None:
    foreign = Ed25519PrivateKey.generate()
    token = jwt.encode(payload_at(), foreign, algorithm="EdDSA", headers={"kid": keyset.active_kid})
    with pytest.raises(TokenError, match="signature does not verify"):
        verify(token, keyset)


def test_header_without_kid_is_refused(keyset: Keyset) -> None:
    token = sign_raw(keyset.active.private_key, {"alg": "EdDSA"}, json.dumps(payload_at()).encode())
    with pytest.raises(TokenError, match="kid"):
        verify(token, keyset)
    with pytest.raises(TokenError, match="kid"):
        token_kid(token)


def test_token_kid_reads_the_header(keyset: Keyset) -> None:
    token, _ = issue(keyset)
    assert token_kid(token) == keyset.active_kid


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "EdDSA", "kid": 123},
        {"alg": "EdDSA", "kid": ["x"]},
        {"alg": "EdDSA", "kid": "k", "crit": ["exp"]},
    ],
)
def test_malformed_header_is_a_token_error(keyset: Keyset, header: dict[str, Any]) -> None:
    token = f"{b64json(header)}.{b64json(payload_at())}.AAAA"
    with pytest.raises(TokenError):
        verify(token, keyset)


def test_wrong_audience_is_refused(keyset: Keyset) -> None:
    token = sign(keyset, payload_at(aud="another-service"))
    with pytest.raises(TokenError, match="audience"):
        verify(token, keyset)


def test_audience_list_containing_ours_is_accepted(keyset: Keyset) -> None:
    token = sign(keyset, payload_at(aud=["other", AUD]))
    assert verify(token, keyset).aud == AUD


def test_wrong_issuer_is_refused(keyset: Keyset) -> None:
    token = sign(keyset, payload_at(iss="https://evil.test"))
    with pytest.raises(TokenError, match="issuer"):
        verify(token, keyset)


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_missing_required_claim_is_named(keyset: Keyset, claim: str) -> None:
    payload = payload_at()
    del payload[claim]
    token = sign(keyset, payload)
    with pytest.raises(TokenError, match=f"no '{claim}' claim"):
        verify(token, keyset)


def test_null_exp_counts_as_missing(keyset: Keyset) -> None:
    token = sign(keyset, payload_at(exp=None))
    with pytest.raises(TokenError, match="'exp'"):
        verify(token, keyset)


def test_revoked_jti_is_refused(keyset: Keyset) -> None:
    token, claims = issue(keyset)
    with pytest.raises(Revoked, match="revoked"):
        verify(token, keyset, revoked={claims.jti})
    assert verify(token, keyset, revoked={"some-other-jti"}).jti == claims.jti
    assert issubclass(Revoked, TokenError)


def test_unknown_role_in_token_is_refused(keyset: Keyset) -> None:
    token = sign(keyset, payload_at(role="admin"))
    with pytest.raises(TokenError, match="role 'admin' is unknown"):
        verify(token, keyset)


@pytest.mark.parametrize(
    ("scopes", "match"),
    [
        ("*", "scopes must be a list"),
        ({"stage": "plenary"}, "scopes must be a list"),
        (["stage:Plenary"], "invalid scope 'stage:Plenary'"),
        (["foo:bar"], "invalid scope 'foo:bar'"),
        ([5], "invalid scope 5"),
    ],
)
def test_malformed_scopes_in_token_are_refused(keyset: Keyset, scopes: Any, match: str) -> None:
    token = sign(keyset, payload_at(scopes=scopes))
    with pytest.raises(TokenError, match=match):
        verify(token, keyset)


def test_token_without_scopes_claim_has_no_scopes(keyset: Keyset) -> None:
    token = sign(keyset, payload_at(scopes=...))
    claims = verify(token, keyset)
    assert claims.scopes == ()
    assert not claims.may_subscribe("stage:plenary")


@pytest.mark.parametrize(
    ("claim", "value", "match"),
    [
        ("exp", "tomorrow", "exp must be a number"),
        ("exp", 1e300, "exp is out of range"),
        ("nbf", "now", "nbf must be a number"),
        ("iat", True, "iat must be a number"),
        ("jti", "", "jti must be a non-empty string"),
        ("jti", 42, "token is invalid"),
        ("sub", "a b", "sub is malformed"),
        ("sub", 42, "token is invalid"),
        ("name", 42, "name is malformed"),
        ("name", "x" * (MAX_NAME_LENGTH + 1), "name is malformed"),
        ("role", ["viewer"], "role .* is unknown"),
    ],
)
def test_malformed_claims_are_refused(keyset: Keyset, claim: str, value: Any, match: str) -> None:
    token = sign(keyset, payload_at(**{claim: value}))
    with pytest.raises(TokenError, match=match):
        verify(token, keyset)


@pytest.mark.parametrize("payload", [b"[]", b"null", b'"text"', b"not json"])
def test_signed_non_object_payload_is_refused(keyset: Keyset, payload: bytes) -> None:
    token = sign_raw(keyset.active.private_key, {"alg": "EdDSA", "kid": keyset.active_kid}, payload)
    with pytest.raises(TokenError, match="invalid"):
        verify(token, keyset)


@pytest.mark.parametrize("token", ["", None, b"abc"])
def test_no_token_is_refused(keyset: Keyset, token: Any) -> None:
    with pytest.raises(TokenError, match="no token given"):
        verify(token, keyset)


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "..", "a.b", "eyJhbGciOiJFZERTQSJ9", "Bearer x.y.z", "\x00\x01"],
)
def test_garbage_is_refused(keyset: Keyset, token: str) -> None:
    with pytest.raises(TokenError, match="malformed"):
        verify(token, keyset)


# --- rotation ------------------------------------------------------------------------


def test_rotation_keeps_old_tokens_valid_until_the_old_key_is_retired(keyset: Keyset) -> None:
    old_kid = keyset.active_kid
    old_token, _ = issue(keyset)

    rotated = keyset.rotated(T0 + timedelta(minutes=1))
    assert rotated.active_kid != old_kid
    assert verify(old_token, rotated).sub

    new_token, _ = issue(rotated, now=T0 + timedelta(minutes=2))
    assert token_kid(new_token) == rotated.active_kid
    assert verify(new_token, rotated, now=T0 + timedelta(minutes=2))
    with pytest.raises(UnknownKey):
        verify(new_token, keyset, now=T0 + timedelta(minutes=2))

    retired = rotated.retired(old_kid, T0 + timedelta(days=3))
    with pytest.raises(UnknownKey, match="unknown key"):
        verify(old_token, retired)
    assert verify(new_token, retired, now=T0 + timedelta(minutes=2))


# --- issue_token refusals ------------------------------------------------------------


def test_ttl_up_to_the_maximum_is_allowed(keyset: Keyset) -> None:
    token, claims = issue(keyset, ttl=MAX_TTL)
    assert claims.exp - claims.iat == MAX_TTL
    assert verify(token, keyset)


def test_ttl_over_the_maximum_is_refused(keyset: Keyset) -> None:
    with pytest.raises(Invalid, match="longer than the maximum"):
        issue(keyset, ttl=MAX_TTL + timedelta(seconds=1))


def test_a_ttl_error_says_the_lifetimes_in_words(keyset: Keyset) -> None:
    # Not timedelta's "1157 days, 9:46:39" and "2 days, 0:00:00".
    ttl = timedelta(days=1157, hours=9, minutes=46, seconds=39)
    with pytest.raises(Invalid) as caught:
        issue(keyset, ttl=ttl)
    assert caught.value.message == (
        "token lifetime 1157 days 9 hours 46 minutes 39 seconds is longer than the maximum 2 days"
    )


def test_default_ttl_over_the_maximum_is_refused(keyset: Keyset) -> None:
    with pytest.raises(Invalid, match="longer than the maximum"):
        issue_token(
            keyset,
            TokenRequest(role=Role.VIEWER, scopes=()),
            issuer=ISS,
            audience=AUD,
            now=T0,
            default_ttl=timedelta(days=3),
            max_ttl=MAX_TTL,
        )


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1), -HOUR])
def test_non_positive_ttl_is_refused(keyset: Keyset, ttl: timedelta) -> None:
    with pytest.raises(Invalid, match="lifetime must be positive"):
        issue(keyset, ttl=ttl)


def test_name_limit(keyset: Keyset) -> None:
    _, claims = issue(keyset, name="  " + "n" * MAX_NAME_LENGTH + "  ")
    assert claims.name == "n" * MAX_NAME_LENGTH
    with pytest.raises(Invalid, match="name is longer than 80"):
        issue(keyset, name="n" * (MAX_NAME_LENGTH + 1))


@pytest.mark.parametrize("sub", ["", "a b", "x" * 129, "é", "a/b", "a\nb", "\na"])
def test_bad_sub_is_refused(keyset: Keyset, sub: str) -> None:
    with pytest.raises(Invalid, match="sub must be"):
        issue(keyset, sub=sub)


@pytest.mark.parametrize("sub", ["a", "x" * 128, "ticket:T-1", "mail@example.org", "a.b_c"])
def test_good_sub_is_kept(keyset: Keyset, sub: str) -> None:
    token, claims = issue(keyset, sub=sub)
    assert claims.sub == sub
    assert verify(token, keyset).sub == sub


@pytest.mark.parametrize("scopes", [("stage:",), ("stage:Plenary",), ("*", "everything")])
def test_bad_scopes_are_refused_at_issue(keyset: Keyset, scopes: tuple[str, ...]) -> None:
    with pytest.raises(Invalid, match="invalid scope"):
        issue(keyset, scopes=scopes)


def test_issue_dedupes_scopes(keyset: Keyset) -> None:
    token, claims = issue(keyset, scopes=("stage:a", "stage:b", "stage:a"))
    assert claims.scopes == ("stage:a", "stage:b")
    assert verify(token, keyset).scopes == ("stage:a", "stage:b")


# --- parse_scopes and parse_role -----------------------------------------------------


@pytest.mark.parametrize(
    "scope",
    ["*", "stage:plenary", "session:online-1", "hall:zaal-a", "stage:a_b", "stage:" + "a" * 64],
)
def test_parse_scopes_accepts(scope: str) -> None:
    assert parse_scopes([scope]) == (scope,)


def test_parse_scopes_dedupes_preserving_order() -> None:
    assert parse_scopes(["stage:b", "*", "stage:a", "stage:b", "*"]) == ("stage:b", "*", "stage:a")
    assert parse_scopes([]) == ()


@pytest.mark.parametrize(
    "scope",
    [
        "stage:",
        "stage:Plenary",
        "foo:bar",
        "stage:a b",
        "",
        "**",
        "stage",
        "stage:-a",
        "stage:" + "a" * 65,
        " stage:a",
        "stage:a\nb",
        "mod:stage:a",
        "event",
    ],
)
def test_parse_scopes_rejects(scope: str) -> None:
    with pytest.raises(Invalid, match="invalid scope"):
        parse_scopes([scope])


def test_parse_scopes_rejects_a_trailing_newline() -> None:
    with pytest.raises(Invalid, match="invalid scope"):
        parse_scopes(["stage:a\n"])


def test_issue_refuses_a_sub_with_a_trailing_newline(keyset: Keyset) -> None:
    with pytest.raises(Invalid, match="sub must be"):
        issue(keyset, sub="a\n")


def test_verify_refuses_a_sub_with_a_trailing_newline(keyset: Keyset) -> None:
    token = sign(keyset, payload_at(sub="u:1\n"))
    with pytest.raises(TokenError, match="sub is malformed"):
        verify(token, keyset)


def test_parse_scopes_rejects_non_strings() -> None:
    with pytest.raises(Invalid, match="invalid scope None"):
        parse_scopes([None])  # type: ignore[list-item]


@given(
    kind=st.sampled_from(["stage", "session", "hall"]),
    ids=st.lists(st.from_regex(ID_PATTERN, fullmatch=True), max_size=8),
)
def test_any_valid_id_round_trips_through_parse_scopes(kind: str, ids: list[str]) -> None:
    scopes = [f"{kind}:{ident}" for ident in ids]
    assert parse_scopes(scopes) == tuple(dict.fromkeys(scopes))


@given(
    ident=st.from_regex(ID_PATTERN, fullmatch=True),
    bad=st.sampled_from("ABCXYZ .:/é\t"),
    at=st.integers(min_value=0),
)
def test_ids_with_a_forbidden_character_are_refused(ident: str, bad: str, at: int) -> None:
    at %= len(ident) + 1
    with pytest.raises(Invalid):
        parse_scopes([f"stage:{ident[:at]}{bad}{ident[at:]}"])


@pytest.mark.parametrize("role", list(Role))
def test_parse_role_accepts_each_role(role: Role) -> None:
    assert parse_role(role.value) is role


@pytest.mark.parametrize("value", ["admin", "Viewer", "", " viewer"])
def test_parse_role_rejects(value: str) -> None:
    with pytest.raises(Invalid, match=r"unknown role .*expected one of viewer, moderator"):
        parse_role(value)


# --- may_subscribe -------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("scopes", [(), ("*",), ("stage:plenary",)])
def test_event_is_open_to_everyone(role: Role, scopes: tuple[str, ...]) -> None:
    assert make_claims(role, scopes).may_subscribe("event")


@pytest.mark.parametrize(
    ("scopes", "topic", "allowed"),
    [
        (("stage:plenary",), "stage:plenary", True),
        (("*",), "stage:plenary", True),
        (("stage:other",), "stage:plenary", False),
        (("session:plenary",), "stage:plenary", False),
        ((), "stage:plenary", False),
        (("session:online-1",), "session:online-1", True),
        (("*",), "session:online-1", True),
        (("session:online-2",), "session:online-1", False),
        (("stage:online-1",), "session:online-1", False),
        (("*",), "stage:", False),
        (("*",), "session:", False),
    ],
)
def test_stage_and_session_topics_need_their_scope(
    scopes: tuple[str, ...], topic: str, allowed: bool
) -> None:
    assert make_claims(Role.VIEWER, scopes).may_subscribe(topic) is allowed


@pytest.mark.parametrize(
    ("role", "scopes", "topic", "allowed"),
    [
        (Role.MODERATOR, ("stage:plenary",), "mod:stage:plenary", True),
        (Role.ORGANISER, ("*",), "mod:stage:plenary", True),
        (Role.MODERATOR, ("session:online-1",), "mod:session:online-1", True),
        (Role.MODERATOR, ("stage:other",), "mod:stage:plenary", False),
        (Role.ORGANISER, (), "mod:stage:plenary", False),
        (Role.VIEWER, ("*",), "mod:stage:plenary", False),
        (Role.SPEAKER, ("*",), "mod:stage:plenary", False),
        (Role.BROADCASTER, ("*",), "mod:stage:plenary", False),
        (Role.ORGANISER, ("*",), "mod:event", True),
        (Role.MODERATOR, ("stage:plenary",), "mod:event", True),
        (Role.VIEWER, ("*",), "mod:event", False),
        (Role.SPEAKER, ("*",), "mod:event", False),
        (Role.ORGANISER, ("*",), "mod:", False),
        (Role.ORGANISER, ("*",), "mod:stage:", False),
    ],
)
def test_mod_topics_need_staff_role_and_scope(
    role: Role, scopes: tuple[str, ...], topic: str, allowed: bool
) -> None:
    assert make_claims(role, scopes).may_subscribe(topic) is allowed


@pytest.mark.parametrize(
    "topic", ["hall:zaal-a", "chat", "", "foo:bar", "events", "EVENT", "Stage:plenary", ":"]
)
def test_unknown_topic_kinds_are_refused(topic: str) -> None:
    claims = make_claims(Role.ORGANISER, ("*", "hall:zaal-a"))
    assert not claims.may_subscribe(topic)


def test_covers() -> None:
    assert make_claims(Role.VIEWER, ("*",)).covers("stage:anything")
    assert make_claims(Role.VIEWER, ("hall:a",)).covers("hall:a")
    assert not make_claims(Role.VIEWER, ("hall:a",)).covers("hall:b")


# --- property: any change to a signed token is refused -------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_character_change_in_a_signed_token_is_refused(data: st.DataObject) -> None:
    keyset, token = shared_keyset_and_token()
    index = data.draw(st.integers(min_value=0, max_value=len(token) - 1), label="index")
    replacement = data.draw(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E).filter(lambda c: c != token[index]),
        label="replacement",
    )
    mutated = token[:index] + replacement + token[index + 1 :]
    with pytest.raises(TokenError):
        verify(mutated, keyset)


@settings(max_examples=50, deadline=None)
@given(cut=st.integers(min_value=1))
def test_any_truncation_of_a_signed_token_is_refused(cut: int) -> None:
    keyset, token = shared_keyset_and_token()
    with pytest.raises(TokenError):
        verify(token[: cut % len(token)], keyset)


def test_signing_key_generate_uses_a_fresh_key() -> None:
    a = SigningKey.generate(T0)
    b = SigningKey.generate(T0)
    assert a.kid != b.kid


@pytest.mark.parametrize("topic", ["mod:mod:stage:plenary", "mod:mod:event", "mod:", "mod:hall:a"])
def test_moderation_topics_name_a_stage_or_session_only(topic: str) -> None:
    now = datetime(2022, 5, 5, 8, 0, tzinfo=UTC)
    keyset = Keyset.generate(now)
    token, _ = issue_token(
        keyset,
        TokenRequest(role=Role.ORGANISER, scopes=("*",)),
        issuer="hybridcon",
        audience="hybridcon",
        now=now,
        default_ttl=timedelta(hours=1),
        max_ttl=timedelta(days=1),
    )
    claims = verify_token(token, keyset, issuer="hybridcon", audience="hybridcon", now=now)
    assert claims.may_subscribe("mod:stage:plenary")
    assert not claims.may_subscribe(topic)


def test_a_token_without_a_name_shows_what_the_person_is() -> None:
    def claims(role: Role, name: str) -> Claims:
        now = datetime(2022, 5, 5, 9, tzinfo=UTC)
        return Claims(
            sub="u:x",
            role=role,
            scopes=("*",),
            name=name,
            jti="j",
            iss="i",
            aud="a",
            iat=now,
            nbf=now,
            exp=now,
        )

    assert claims(Role.VIEWER, "Ann").shown_name == "Ann"
    assert [claims(r, "").shown_name for r in Role] == [
        "Deelnemer",
        "Moderator",
        "Organisatie",
        "Deelnemer",
        "Spreker",
        "Deelnemer",
    ]
