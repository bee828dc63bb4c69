"""Unit tests for hybridcon.core.admission: connection caps in total and per address."""

from __future__ import annotations

import pytest

from hybridcon.core.admission import ConnectionCaps, client_address, parse_networks


def test_the_per_address_cap_refuses_only_that_address() -> None:
    caps = ConnectionCaps(total=100, per_address=2)
    assert caps.admit("192.0.2.1") is None
    assert caps.admit("192.0.2.1") is None
    refusal = caps.admit("192.0.2.1")
    assert refusal is not None and refusal.reason == "address_limit"
    assert "maximum of 2 connections" in refusal.message
    assert caps.admit("192.0.2.2") is None
    assert caps.open == 3  # the refused one is not counted
    caps.release("192.0.2.1")
    assert caps.admit("192.0.2.1") is None


def test_the_total_cap_refuses_everyone_until_one_leaves() -> None:
    caps = ConnectionCaps(total=2, per_address=0)
    assert caps.admit("192.0.2.1") is None
    assert caps.admit("2001:db8::1") is None
    refusal = caps.admit("192.0.2.9")
    assert refusal is not None and refusal.reason == "total_limit"
    caps.release("2001:db8::1")
    assert caps.admit("192.0.2.9") is None


def test_proxies_are_exempt_from_the_per_address_cap_but_not_the_total() -> None:
    caps = ConnectionCaps(
        total=5, per_address=1, proxies=parse_networks(["127.0.0.1", "10.0.0.0/8"])
    )
    assert [caps.admit("10.1.2.3") for _ in range(3)] == [None, None, None]
    assert caps.admit("::ffff:127.0.0.1") is None  # IPv4-mapped, as a dual-stack socket sees it
    assert caps.admit("::ffff:127.0.0.1") is None
    refusal = caps.admit("10.1.2.3")
    assert refusal is not None and refusal.reason == "total_limit"


def test_a_peer_without_an_ip_address_is_capped_like_any_other() -> None:
    caps = ConnectionCaps(total=5, per_address=1, proxies=parse_networks(["127.0.0.1"]))
    assert caps.admit("") is None
    assert caps.admit("") is not None


def test_release_never_goes_below_zero() -> None:
    caps = ConnectionCaps(total=1, per_address=1)
    caps.release("192.0.2.1")
    assert caps.open == 0
    assert caps.admit("192.0.2.1") is None


def test_bad_networks_are_named() -> None:
    with pytest.raises(ValueError, match="'nginx' is not an IP address or network"):
        parse_networks(["127.0.0.1", "nginx"])


PROXIES = parse_networks(["127.0.0.1", "10.0.0.0/8"])


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        # Not a trusted proxy: the header is anyone's to write, so it is ignored.
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
        # nginx on the machine: the client it was reached from.
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),
        # A client that wrote its own header: the proxy appended the real address.
        ("127.0.0.1", "1.2.3.4, 198.51.100.1", "198.51.100.1"),
        # Two trusted proxies in a row: skipped from the right.
        ("127.0.0.1", "198.51.100.1, 10.1.2.3", "198.51.100.1"),
        # Only proxies in the chain: the leftmost.
        ("127.0.0.1", "10.0.0.5, 10.0.0.6", "10.0.0.5"),
        # No header, an empty one, a mangled one: the peer.
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", " , ", "127.0.0.1"),
        ("127.0.0.1", "198.51.100.1, not-an-ip", "127.0.0.1"),
        ("::ffff:127.0.0.1", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_the_client_address_behind_a_trusted_proxy(
    peer: str, header: str | None, expected: str
) -> None:
    assert client_address(peer, header, PROXIES) == expected
