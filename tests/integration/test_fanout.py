"""Fan-out under stress: a slow consumer, floods, and pre-built frames through the seam."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time

import orjson

from hybridcon.core.tokens import Role
from hybridcon.realtime.gateway import GATEWAY
from hybridcon.realtime.wire import text_frame
from support import WsClient, issue


def _client_frame(payload: bytes) -> bytes:
    """A masked client text frame (RFC 6455 §5.3), payload under 126 bytes or 16-bit length."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    return head + mask + masked


async def stalled_client(
    client, token: str, topic: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that handshakes, authenticates, subscribes, and then stops reading.

    Its receive buffer is made small so the server's writes back up quickly, as with a
    phone on a bad network.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (client.host, client.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {client.host}:{client.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    writer.write(_client_frame(orjson.dumps({"type": "auth", "token": token})))
    writer.write(_client_frame(orjson.dumps({"id": 1, "type": "subscribe", "topic": topic})))
    await writer.drain()
    # Read the auth.ok and the subscribe reply, then never read again.
    seen = b""
    while b'"id":1,"type":"result"' not in seen:
        seen += await asyncio.wait_for(reader.read(4096), 5)
    writer.transport.pause_reading()
    return reader, writer


async def test_a_slow_consumer_is_closed_and_never_delays_a_fast_one(make_settings):
    from aiohttp.test_utils import TestClient, TestServer

    from hybridcon.app import create_app

    settings = make_settings(ws_max_pending_bytes=64 * 1024)
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as client:
        gateway = client.server.app[GATEWAY]
        fast = await WsClient.connect(client, issue(client))
        await fast.ok("subscribe", topic="stage:plenary")
        # Keep the stream objects: dropping them would close the socket.
        stalled = await stalled_client(client, issue(client), "stage:plenary")
        assert gateway.hub.subscribers("stage:plenary") == 2
        slow_conn = next(c for c in gateway.connections if c.claims.sub != fast.user["id"])

        body = "x" * 8000
        published: dict[int, float] = {}
        arrived: dict[int, float] = {}

        async def read_fast() -> None:
            while len(arrived) < 1000:
                msg = await fast.ws.receive_json(timeout=10)
                if msg["type"] == "note":
                    arrived[msg["n"]] = time.monotonic()

        reading = asyncio.create_task(read_fast())
        for n in range(1000):
            published[n] = time.monotonic()
            gateway.hub.publish("stage:plenary", "note", {"n": n, "body": body})
            if n % 10 == 9:
                # A steady burst (about 8 MB/s), not one lump: real traffic leaves the
                # loop time to flush and read between messages.
                await asyncio.sleep(0.01)
        await asyncio.wait_for(reading, 30)

        # The stalled client fell 64 KiB behind and was closed with 4008 ...
        await asyncio.wait_for(slow_conn.closed.wait(), 10)
        assert slow_conn.close_code == 4008
        assert gateway.hub.subscribers("stage:plenary") == 1
        # ... while the fast one got everything, in order, promptly.
        assert sorted(arrived) == list(range(1000))
        lag = sorted(arrived[n] - published[n] for n in range(1000))
        assert lag[int(len(lag) * 0.99)] < 0.5, f"p99 lag {lag[int(len(lag) * 0.99)]:.3f} s"
        await fast.close()
        stalled[1].close()


async def test_a_flood_is_rate_limited_then_closed(client):
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "auth", "token": issue(client)})
    assert (await ws.receive_json(timeout=5))["type"] == "auth.ok"
    for i in range(200):
        await ws.send_str(f'{{"id": {i}, "type": "ping"}}')
    replies, close = [], None
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type.name == "TEXT":
            replies.append(orjson.loads(msg.data))
        else:
            close = msg
            break
    codes = [r.get("code") for r in replies if r["type"] == "error"]
    assert len([r for r in replies if r["type"] == "result"]) >= 30  # the burst
    assert codes and set(codes) == {"rate_limited"}
    assert close.data == 4008 and "flooding" in close.extra
    # The server is unharmed.
    other = await WsClient.connect(client, issue(client))
    await other.ok("ping")
    await other.close()


async def test_coalesced_frames_reach_a_standard_client_intact(client):
    """Several pre-built frames in one write are read back as separate messages."""
    gateway = client.server.app[GATEWAY]
    reader = await WsClient.connect(client, issue(client, Role.VIEWER))
    await reader.ok("subscribe", topic="stage:radio")
    sizes = [10, 125, 126, 127, 65_535, 65_536, 200_000]
    for n, size in enumerate(sizes):
        gateway.hub.publish("stage:radio", "note", {"n": n, "body": "é" * (size // 2)})
    got = [await reader.push("note") for _ in sizes]
    assert [m["n"] for m in got] == list(range(len(sizes)))
    assert [len(m["body"]) for m in got] == [size // 2 for size in sizes]
    assert text_frame(b"x" * 70_000)[1] == 127  # 64-bit length form
    await reader.close()
