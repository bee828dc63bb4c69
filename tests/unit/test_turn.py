"""Unit tests for hybridcon.core.turn: TURN credentials in coturn's REST scheme."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from hybridcon.core.turn import credentials_valid, ice_servers, turn_credentials

SECRET = b"north-sea-wind-2022"
NOW = datetime(2022, 5, 5, 9, 0, tzinfo=UTC)


def test_username_is_expiry_colon_id_and_credential_is_base64_hmac_sha1() -> None:
    creds = turn_credentials(SECRET, "actor-7", NOW, timedelta(hours=2))
    expiry = int(NOW.timestamp()) + 7200
    assert creds.username == f"{expiry}:actor-7"
    # The scheme computed by hand, as coturn computes it from the username it gets.
    digest = hmac.new(SECRET, f"{expiry}:actor-7".encode(), hashlib.sha1).digest()
    assert creds.credential == base64.b64encode(digest).decode()
    assert creds.expires_at == NOW + timedelta(hours=2)


def test_a_known_vector() -> None:
    # Fixed inputs, fixed output: a change of scheme (SHA-256, hex, another order)
    # would break every coturn already deployed with this secret.
    creds = turn_credentials(
        b"secret", "alice", datetime.fromtimestamp(1_000, UTC), timedelta(seconds=500)
    )
    assert creds.username == "1500:alice"
    assert (
        creds.credential
        == base64.b64encode(hmac.new(b"secret", b"1500:alice", hashlib.sha1).digest()).decode()
    )
    assert len(base64.b64decode(creds.credential)) == 20  # SHA-1


def test_coturns_check_takes_them_until_expiry_and_not_after() -> None:
    creds = turn_credentials(SECRET, "actor-7", NOW, timedelta(minutes=10))
    assert credentials_valid(SECRET, creds.username, creds.credential, NOW)
    assert credentials_valid(SECRET, creds.username, creds.credential, NOW + timedelta(minutes=10))
    assert not credentials_valid(
        SECRET, creds.username, creds.credential, NOW + timedelta(minutes=10, seconds=1)
    )
    assert not credentials_valid(b"another secret", creds.username, creds.credential, NOW)
    # Someone stretching their own expiry invalidates the credential.
    later = creds.username.replace(creds.username.split(":")[0], "9999999999")
    assert not credentials_valid(SECRET, later, creds.credential, NOW)
    assert not credentials_valid(SECRET, "actor-7", creds.credential, NOW)


def test_each_person_gets_their_own() -> None:
    a = turn_credentials(SECRET, "a", NOW, timedelta(hours=1))
    b = turn_credentials(SECRET, "b", NOW, timedelta(hours=1))
    assert a.username != b.username and a.credential != b.credential


@pytest.mark.parametrize(
    ("secret", "user", "now", "ttl", "problem"),
    [
        (b"", "a", NOW, timedelta(hours=1), "secret"),
        (SECRET, "", NOW, timedelta(hours=1), "user"),
        (SECRET, "a", NOW.replace(tzinfo=None), timedelta(hours=1), "timezone"),
        (SECRET, "a", NOW, timedelta(0), "second"),
    ],
)
def test_bad_input_is_named(secret, user, now, ttl, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        turn_credentials(secret, user, now, ttl)


def test_ice_servers_append_the_turn_urls_with_the_persons_credentials() -> None:
    creds = turn_credentials(SECRET, "a", NOW, timedelta(hours=1))
    stun = {"urls": ["stun:turn.example.org:3478"], "username": None, "credential": None}
    servers = ice_servers([stun], ["turn:turn.example.org:3478?transport=udp"], creds)
    assert servers == [
        {"urls": ["stun:turn.example.org:3478"]},
        {
            "urls": ["turn:turn.example.org:3478?transport=udp"],
            "username": creds.username,
            "credential": creds.credential,
        },
    ]
    assert ice_servers([stun], ["turn:t:3478"], None) == [{"urls": ["stun:turn.example.org:3478"]}]
    assert ice_servers([], [], creds) == []
