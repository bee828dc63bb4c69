"""Where WebRTC peers gather candidates (``ice_addresses``), and the guard that keeps test
media on loopback (``tests/ice_guard.py``) failing when media goes elsewhere.

The guard's failures are provoked without sending anything outside what the machine
allows: real media on loopback judged by a guard that allows only another network, and
real media on a namespace's veth address judged by a guard that allows only loopback.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiortc import RTCConfiguration, RTCPeerConnection
from pydantic import ValidationError

from hybridcon.app import create_app
from hybridcon.core.tokens import Role
from hybridcon.errors import Unavailable
from hybridcon.media.peers import gathering_on, host_addresses
from hybridcon.settings import Settings
from ice_guard import LOOPBACK, IceGuard, StrayMedia
from media_fixtures import ICE_ADDRESSES, make_media, make_offer, publisher_peer, take_answer
from netns import Namespace
from support import bearer, eventually, issue

SDP = {"Content-Type": "application/sdp"}
OTHER = ipaddress.ip_network("198.18.0.0/15")


def candidates(sdp: str) -> list[str]:
    """The addresses of an SDP's host candidates."""
    return [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")]


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


# --- the setting --------------------------------------------------------------------------


def test_the_setting_takes_interfaces_addresses_and_networks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HYBRIDCON_ICE_ADDRESSES", '["lo", "127.0.0.1", "::1", "10.0.0.0/8"]')
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.ice_addresses == ("lo", "127.0.0.1", "::1", "10.0.0.0/8")
    for bad in ("eth 0", "10.0.0.0/33", "an-interface-name-too-long", ""):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, ice_addresses=(bad,))  # type: ignore[call-arg]


def test_host_addresses_name_loopback_only_when_asked() -> None:
    assert set(host_addresses(["lo"])) == {"127.0.0.1", "::1"}
    assert host_addresses(["127.0.0.0/8"]) == ["127.0.0.1"]
    assert host_addresses(["::1"]) == ["::1"]
    assert host_addresses(["hc-no-such-if"]) == []
    with pytest.raises(Unavailable), gathering_on(["hc-no-such-if"]):
        pass


async def test_gathering_on_reaches_only_the_peers_inside_the_block() -> None:
    inside = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    outside = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        for pc in (inside, outside):
            pc.addTransceiver("audio")
        with gathering_on(["lo"]) as chosen:
            assert set(chosen) == {"127.0.0.1", "::1"}
            await inside.setLocalDescription(await inside.createOffer())
        # Gathering binds sockets and sends nothing (no STUN server): nothing leaves.
        await outside.setLocalDescription(await outside.createOffer())
        assert sorted(candidates(inside.localDescription.sdp)) == ["127.0.0.1", "::1"]
        # aioice's own choice outside the block: never loopback.
        assert not any(is_loopback(a) for a in candidates(outside.localDescription.sdp))
    finally:
        await inside.close()
        await outside.close()


# --- hybridcon's answers ------------------------------------------------------------------


async def test_whip_and_whep_answers_offer_only_the_configured_addresses(
    client: TestClient[Any, Any], tmp_path: Any
) -> None:
    media = make_media(tmp_path, seconds=3.0)
    pc, _player = publisher_peer(media)
    try:
        token = issue(client, Role.BROADCASTER, scopes=("stage:impact",))
        resp = await client.post(
            "/whip/impact", data=await make_offer(pc), headers={**SDP, **bearer(token)}
        )
        assert resp.status == 201, await resp.text()
        answer = await resp.text()
        assert candidates(answer) and all(is_loopback(a) for a in candidates(answer)), answer
        await take_answer(pc, answer)
        await eventually(lambda: pc.connectionState == "connected", what="connected")
    finally:
        await pc.close()


async def test_an_interface_that_is_not_there_gets_503(make_settings: Any, tmp_path: Any) -> None:
    settings = make_settings(ice_addresses=("hc-no-such-if",))
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as client:
        pc, _player = publisher_peer(make_media(tmp_path, seconds=2.0))
        try:
            token = issue(client, Role.BROADCASTER, scopes=("stage:impact",))
            resp = await client.post(
                "/whip/impact", data=await make_offer(pc), headers={**SDP, **bearer(token)}
            )
            assert resp.status == 503, await resp.text()
            assert "hc-no-such-if" in await resp.text()
            # The failed offer held nothing: the next one gets 503 again, not 409.
            resp = await client.post(
                "/whip/impact", data=await make_offer(pc), headers={**SDP, **bearer(token)}
            )
            assert resp.status == 503
        finally:
            await pc.close()


# --- the guard can fail -------------------------------------------------------------------


async def published(client: TestClient[Any, Any], tmp_path: Any, addresses: Any) -> None:
    """Publish to ``impact`` with a test peer gathering on ``addresses`` until media flows."""
    pc, _player = publisher_peer(make_media(tmp_path, seconds=3.0))
    try:
        token = issue(client, Role.BROADCASTER, scopes=("stage:impact",))
        offer = await make_offer(pc, addresses)
        resp = await client.post("/whip/impact", data=offer, headers={**SDP, **bearer(token)})
        assert resp.status == 201, await resp.text()
        await take_answer(pc, await resp.text())
        await eventually(lambda: pc.connectionState == "connected", what="connected")
    finally:
        await pc.close()


async def test_the_guard_names_media_outside_its_networks(
    client: TestClient[Any, Any], tmp_path: Any
) -> None:
    # Real media on loopback, judged by a guard that allows only another network.
    strict = IceGuard(allowed=[OTHER])
    with strict.watching():
        await published(client, tmp_path, ICE_ADDRESSES)
    media = strict.media_flows()
    assert media, "no media was seen: the guard would judge nothing"
    with pytest.raises(StrayMedia) as failure:
        strict.check()
    message = str(failure.value)
    for flow in media:
        assert f"media from {flow.source} to {flow.destination}" in message
    # The same flows pass a guard that allows loopback: it flags by address, not always.
    lenient = IceGuard(allowed=LOOPBACK)
    lenient.flows = dict(strict.flows)
    lenient.check()


async def test_the_guard_fails_media_on_a_non_loopback_address(
    make_settings: Any, tmp_path: Any, test_namespace: Namespace
) -> None:
    # hybridcon and the test peer on the host end of the namespace's veth pair: real
    # non-loopback addresses, of the test's own (the autouse guard allows them).
    host = test_namespace.host_address
    settings = make_settings(ice_addresses=(host,))
    loopback_only = IceGuard()
    with loopback_only.watching():
        async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as c:
            await published(c, tmp_path, (host,))
    with pytest.raises(StrayMedia) as failure:
        loopback_only.check()
    assert f"media from {host}:" in str(failure.value)
    assert "127.0.0.0/8" in str(failure.value)


def test_the_guard_judges_chromiums_selected_pairs() -> None:
    guard = IceGuard()
    guard.check_pairs([{"local": "127.0.0.1", "remote": "127.0.0.1", "peer": "a"}], "Chromium")
    guard.check_pairs([{"local": "::1", "remote": "::1"}], "Chromium")
    for local, remote in (("192.0.2.2", "127.0.0.1"), ("127.0.0.1", "fd00::2"), ("x.local", "::1")):
        with pytest.raises(StrayMedia, match=f"{local} -> {remote}"):
            guard.check_pairs([{"local": local, "remote": remote, "peer": "p"}], "Chromium")
    guard.allow(OTHER)
    guard.check_pairs([{"local": "198.18.0.2", "remote": "198.18.0.1"}], "Chromium")
