"""Unit tests for hybridcon.core.keys: thumbprints, rotation, storage and the JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hybridcon.core.keys import ALGORITHM, FORMAT_VERSION, Keyset, SigningKey, thumbprint
from hybridcon.core.tokens import Role, TokenRequest, issue_token, verify_token
from hybridcon.errors import ConfigError

T0 = datetime(2022, 5, 5, 6, 0, tzinfo=UTC)
ISS = "https://hybridcon.test"
AUD = "hybridcon"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def issue(keyset: Keyset, now: datetime = T0) -> str:
    token, _ = issue_token(
        keyset,
        TokenRequest(role=Role.VIEWER, scopes=("*",)),
        issuer=ISS,
        audience=AUD,
        now=now,
        default_ttl=timedelta(hours=1),
        max_ttl=timedelta(days=1),
    )
    return token


def verifies(token: str, keyset: Keyset, now: datetime = T0) -> bool:
    return bool(verify_token(token, keyset, issuer=ISS, audience=AUD, now=now))


def pem(private_key: ec.EllipticCurvePrivateKey) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


# --- thumbprints ---------------------------------------------------------------------


def test_thumbprint_matches_rfc_8037_example() -> None:
    # RFC 8037, appendix A.1 (private key), A.2 (public x) and A.3 (thumbprint).
    d = base64.urlsafe_b64decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
    key = Ed25519PrivateKey.from_private_bytes(d)
    assert thumbprint(key.public_key()) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_thumbprint_is_the_rfc_7638_construction() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    canonical = '{"crv":"Ed25519","kty":"OKP","x":"' + x + '"}'
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest())
    assert thumbprint(key) == expected.rstrip(b"=").decode()


def test_thumbprint_is_stable_and_unpadded() -> None:
    private = Ed25519PrivateKey.generate()
    first = thumbprint(private.public_key())
    assert first == thumbprint(private.public_key())
    assert len(first) == 43
    assert "=" not in first
    assert set(first) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_generated_key_id_is_its_thumbprint() -> None:
    key = SigningKey.generate(T0)
    assert key.kid == thumbprint(key.public_key)
    assert key.created_at == T0
    assert key.retired_at is None


# --- keyset structure ----------------------------------------------------------------


def test_generate_has_one_active_key() -> None:
    keyset = Keyset.generate(T0)
    assert len(keyset.keys) == 1
    assert keyset.active.kid == keyset.active_kid
    assert keyset.verifying_key(keyset.active_kid) is not None
    assert keyset.verifying_key("nope") is None


def test_active_kid_must_be_in_the_keyset() -> None:
    key = SigningKey.generate(T0)
    with pytest.raises(ConfigError, match="'other' is not in the keyset"):
        Keyset(keys=(key,), active_kid="other")


def test_rotation_adds_an_active_key_and_keeps_the_old() -> None:
    keyset = Keyset.generate(T0)
    rotated = keyset.rotated(T0 + timedelta(days=1))
    assert [k.kid for k in rotated.keys] == [keyset.active_kid, rotated.active_kid]
    assert rotated.active_kid != keyset.active_kid
    assert rotated.active.created_at == T0 + timedelta(days=1)
    assert rotated.verifying_key(keyset.active_kid) is not None
    # The original is unchanged (immutable).
    assert len(keyset.keys) == 1


def test_retiring_stops_verification_and_keeps_the_key() -> None:
    keyset = Keyset.generate(T0).rotated(T0 + timedelta(hours=1))
    old = keyset.keys[0].kid
    retired = keyset.retired(old, T0 + timedelta(days=2))
    assert retired.verifying_key(old) is None
    assert retired.keys[0].retired_at == T0 + timedelta(days=2)
    assert retired.verifying_key(retired.active_kid) is not None
    # Retiring again keeps the first retirement time.
    again = retired.retired(old, T0 + timedelta(days=9))
    assert again.keys[0].retired_at == T0 + timedelta(days=2)


def test_retiring_the_active_key_is_refused() -> None:
    keyset = Keyset.generate(T0)
    with pytest.raises(ConfigError, match="active key cannot be retired"):
        keyset.retired(keyset.active_kid, T0)


def test_retiring_an_unknown_key_is_refused() -> None:
    keyset = Keyset.generate(T0)
    with pytest.raises(ConfigError, match="no key 'ghost'"):
        keyset.retired("ghost", T0)


# --- storage -------------------------------------------------------------------------


def test_to_data_from_data_round_trip() -> None:
    keyset = Keyset.generate(T0).rotated(T0 + timedelta(hours=1)).rotated(T0 + timedelta(hours=2))
    keyset = keyset.retired(keyset.keys[0].kid, T0 + timedelta(hours=3))
    # A token signed by the middle (rotated-out, not retired) key.
    old_token = issue(Keyset(keys=keyset.keys, active_kid=keyset.keys[1].kid))
    token = issue(keyset)

    data = json.loads(json.dumps(keyset.to_data()))  # survives JSON
    assert data["version"] == FORMAT_VERSION
    restored = Keyset.from_data(data)

    assert restored.active_kid == keyset.active_kid
    assert [k.kid for k in restored.keys] == [k.kid for k in keyset.keys]
    assert [k.created_at for k in restored.keys] == [k.created_at for k in keyset.keys]
    assert [k.retired_at for k in restored.keys] == [k.retired_at for k in keyset.keys]
    assert restored.jwks() == keyset.jwks()
    assert verifies(token, restored)
    assert verifies(old_token, restored)
    # And the restored keyset signs tokens the original accepts.
    assert verifies(issue(restored), keyset)


def test_to_data_holds_pkcs8_pem() -> None:
    data = Keyset.generate(T0).to_data()
    (item,) = data["keys"]
    assert item["private_pem"].startswith("-----BEGIN PRIVATE KEY-----")
    assert item["created_at"] == T0.isoformat()
    assert item["retired_at"] is None


def test_from_data_refuses_a_kid_that_does_not_match_the_key() -> None:
    data = Keyset.generate(T0).to_data()
    other = Keyset.generate(T0).to_data()
    data["keys"][0]["private_pem"] = other["keys"][0]["private_pem"]
    with pytest.raises(ConfigError, match="does not match its thumbprint"):
        Keyset.from_data(data)


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_from_data_refuses_other_versions(version: Any) -> None:
    data = Keyset.generate(T0).to_data()
    data["version"] = version
    with pytest.raises(ConfigError, match=r"version .* is not supported"):
        Keyset.from_data(data)


def test_from_data_refuses_a_missing_version() -> None:
    data = Keyset.generate(T0).to_data()
    del data["version"]
    with pytest.raises(ConfigError, match="version None is not supported"):
        Keyset.from_data(data)


def test_from_data_refuses_a_non_ed25519_key() -> None:
    data = Keyset.generate(T0).to_data()
    data["keys"][0]["private_pem"] = pem(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigError, match="is not an Ed25519 key"):
        Keyset.from_data(data)


def test_from_data_refuses_an_unknown_active_kid() -> None:
    data = Keyset.generate(T0).to_data()
    data["active_kid"] = "someone-else"
    with pytest.raises(ConfigError, match="not in the keyset"):
        Keyset.from_data(data)


def _mutations() -> list[tuple[str, Any]]:
    return [
        ("no keys", lambda d: d.pop("keys")),
        ("no active_kid", lambda d: d.pop("active_kid")),
        ("keys not a list", lambda d: d.__setitem__("keys", 5)),
        ("key not a mapping", lambda d: d.__setitem__("keys", ["x"])),
        ("no pem", lambda d: d["keys"][0].pop("private_pem")),
        ("pem garbage", lambda d: d["keys"][0].__setitem__("private_pem", "not a pem")),
        ("pem not text", lambda d: d["keys"][0].__setitem__("private_pem", 5)),
        ("bad created_at", lambda d: d["keys"][0].__setitem__("created_at", "yesterday")),
        ("created_at not text", lambda d: d["keys"][0].__setitem__("created_at", 5)),
        ("no kid", lambda d: d["keys"][0].pop("kid")),
    ]


@pytest.mark.parametrize(("label", "mutate"), _mutations(), ids=[m[0] for m in _mutations()])
def test_from_data_refuses_malformed_data(label: str, mutate: Any) -> None:
    data = Keyset.generate(T0).to_data()
    mutate(data)
    with pytest.raises(ConfigError):
        Keyset.from_data(data)


@pytest.mark.parametrize("garbage", [None, "garbage", 42, [], {}, {"version": 1}])
def test_from_data_refuses_garbage(garbage: Any) -> None:
    with pytest.raises(ConfigError):
        Keyset.from_data(garbage)


# --- JWKS ----------------------------------------------------------------------------


def test_jwks_lists_only_keys_that_still_verify() -> None:
    keyset = Keyset.generate(T0).rotated(T0 + timedelta(hours=1))
    first, second = (k.kid for k in keyset.keys)
    assert [k["kid"] for k in keyset.jwks()["keys"]] == [first, second]
    retired = keyset.retired(first, T0 + timedelta(days=1))
    assert [k["kid"] for k in retired.jwks()["keys"]] == [second]


def test_jwk_members() -> None:
    keyset = Keyset.generate(T0)
    (jwk,) = keyset.jwks()["keys"]
    raw = keyset.active.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert jwk == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(raw),
        "kid": keyset.active_kid,
        "use": "sig",
        "alg": ALGORITHM,
    }
    assert "d" not in jwk  # never the private half


def test_jwks_verifies_a_token_with_pyjwt() -> None:
    keyset = Keyset.generate(T0).rotated(T0 + timedelta(minutes=1))
    token = issue(keyset)
    jwkset = jwt.PyJWKSet.from_dict(keyset.jwks())
    kid = jwt.get_unverified_header(token)["kid"]
    payload = jwt.decode(
        token,
        key=jwkset[kid].key,
        algorithms=["EdDSA"],
        audience=AUD,
        issuer=ISS,
        # The token was issued on the fake clock (2022); PyJWT checks the wall clock.
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert payload["role"] == "viewer"


def test_jwks_key_of_another_keyset_does_not_verify() -> None:
    token = issue(Keyset.generate(T0))
    other = Keyset.generate(T0)
    jwkset = jwt.PyJWKSet.from_dict(other.jwks())
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            token,
            key=jwkset[other.active_kid].key,
            algorithms=["EdDSA"],
            audience=AUD,
            issuer=ISS,
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )


def test_a_keyset_whose_active_key_is_retired_is_refused() -> None:
    now = datetime(2022, 5, 5, 8, 0, tzinfo=UTC)
    keyset = Keyset.generate(now)
    data = keyset.to_data()
    data["keys"][0]["retired_at"] = now.isoformat()
    with pytest.raises(ConfigError, match="retired"):
        Keyset.from_data(data)
