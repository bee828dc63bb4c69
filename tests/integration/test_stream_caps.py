"""Publisher and WHEP viewer caps hold when offers arrive together.

Each offer is a real aiortc peer's, posted over real HTTP with ``asyncio.gather``: the
server negotiates several at once (each answer awaits SDP and ICE gathering), so a cap
checked only before those awaits would let more through.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiortc import RTCConfiguration, RTCPeerConnection

from hybridcon.api.whip import STREAMS
from hybridcon.app import create_app
from hybridcon.core.streams import StreamState
from hybridcon.core.tokens import Role
from media_fixtures import make_media, make_offer, publisher_peer, take_answer, viewer_peer
from support import bearer, eventually, issue

SDP = {"Content-Type": "application/sdp"}
OFFERS = 5


def silent_publisher() -> RTCPeerConnection:
    """A peer that offers to send audio and video (it never connects: no answer taken)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="sendonly")
    pc.addTransceiver("audio", direction="sendonly")
    return pc


@pytest.fixture
async def server(make_settings):
    settings = make_settings(whip_max_publishers=2, whep_max_viewers=2)
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as client:
        yield client


async def post_all(client, path_and_token: list[tuple[str, str]], pcs) -> list[int]:
    offers = [await make_offer(pc) for pc in pcs]
    responses = await asyncio.gather(
        *(
            client.post(path, data=offer, headers={**SDP, **bearer(token)})
            for (path, token), offer in zip(path_and_token, offers, strict=True)
        )
    )
    for resp in responses:
        await resp.read()
    return [resp.status for resp in responses]


async def test_one_publisher_per_stage_when_offers_arrive_together(server):
    client = server
    token = issue(client, Role.BROADCASTER, scopes=("stage:impact",))
    pcs = [silent_publisher() for _ in range(OFFERS)]
    statuses = await post_all(client, [("/whip/impact", token)] * OFFERS, pcs)
    assert Counter(statuses) == {201: 1, 409: OFFERS - 1}
    streams = client.server.app[STREAMS]
    assert streams.publishers == 1
    assert streams.get("impact").publisher is not None
    for pc in pcs:
        await pc.close()


async def test_the_node_publisher_cap_holds_when_offers_arrive_together(server):
    client = server
    stages = ["plenary", "diversiteit", "impact", "nabijheid", "eerstelijn"]
    token = issue(client, Role.BROADCASTER, scopes=tuple(f"stage:{s}" for s in stages))
    pcs = [silent_publisher() for _ in stages]
    statuses = await post_all(client, [(f"/whip/{s}", token) for s in stages], pcs)
    assert Counter(statuses) == {201: 2, 503: len(stages) - 2}
    assert client.server.app[STREAMS].publishers == 2
    # A refused offer leaves no reservation behind: once a publisher leaves, the next
    # offer is taken.
    streams = client.server.app[STREAMS]
    taken = next(s for s in stages if streams.get(s).publisher is not None)
    await streams.end(taken)
    free = next(s for s in stages if streams.get(s).publisher is None and s != taken)
    pc = silent_publisher()
    resp = await client.post(
        f"/whip/{free}", data=await make_offer(pc), headers={**SDP, **bearer(token)}
    )
    assert resp.status == 201
    for peer in [*pcs, pc]:
        await peer.close()


async def test_the_whep_viewer_cap_holds_when_offers_arrive_together(server, tmp_path):
    client = server
    media = make_media(tmp_path, seconds=8.0, gop_seconds=1.0)
    pc, _player = publisher_peer(media)
    token = issue(client, Role.BROADCASTER, scopes=("stage:impact",))
    resp = await client.post(
        "/whip/impact", data=await make_offer(pc), headers={**SDP, **bearer(token)}
    )
    assert resp.status == 201
    await take_answer(pc, await resp.text())
    stream = client.server.app[STREAMS].get("impact")
    await eventually(lambda: stream.state is StreamState.LIVE, timeout=10, what="live")

    viewers = [viewer_peer(decode=False)[0] for _ in range(OFFERS)]
    viewer_token = issue(client)
    statuses = await post_all(client, [("/whep/impact", viewer_token)] * OFFERS, viewers)
    assert Counter(statuses) == {201: 2, 503: OFFERS - 2}
    assert len(stream.viewers) == 2
    # The refused ones released their reservations: the count is the connected viewers.
    assert client.server.app[STREAMS].viewers == 2
    for peer in [pc, *viewers]:
        await peer.close()
