"""What an idle WebSocket holds and when it is closed, through the listener ``hybridcon
serve`` runs: the sweep (no timer per socket) for silence and for an expired token, pings
counting as frames, and the HTTP parser and its queue dropped once the connection is a
WebSocket."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import aiohttp
from aiohttp import WSMsgType

from hybridcon.core.tokens import Role, TokenRequest
from hybridcon.listener import Serving
from hybridcon.realtime.gateway import GATEWAY, idle_sweep_seconds
from hybridcon.services import SERVICES
from support import eventually

IDLE = 0.8


def token_for(serving: Serving) -> str:
    token, _ = (
        serving.app[SERVICES]
        .auth()
        .issue(TokenRequest(role=Role.VIEWER, scopes=("*",)), via="test")
    )
    return token


async def signed_in(
    session: aiohttp.ClientSession, serving: Serving
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(f"http://127.0.0.1:{serving.settings.port}/ws", autoping=False)
    await ws.send_json({"type": "auth", "token": token_for(serving)})
    assert (await ws.receive_json(timeout=5))["type"] == "auth.ok"
    return ws


async def test_a_silent_socket_is_closed_by_the_sweep_and_one_that_pings_is_not(served):
    serving = await served(ws_idle_timeout=IDLE)
    async with aiohttp.ClientSession() as session:
        silent = await signed_in(session, serving)
        pinging = await signed_in(session, serving)
        opened = time.monotonic()

        async def keep_pinging() -> int:
            pongs = 0
            while time.monotonic() - opened < 2.5 * IDLE:
                await pinging.ping(b"still here")
                msg = await pinging.receive(timeout=5)
                assert msg.type is WSMsgType.PONG and msg.data == b"still here"
                pongs += 1
                await asyncio.sleep(IDLE / 4)
            return pongs

        pinger = asyncio.create_task(keep_pinging())
        msg = await silent.receive(timeout=5)
        waited = time.monotonic() - opened
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == 4008 and "idle" in msg.extra
        assert IDLE <= waited < IDLE + idle_sweep_seconds(IDLE) + 1.0
        assert await pinger >= 8
        # Past twice the idle time, the socket that sent only pings is still open.
        assert not pinging.closed
        await pinging.send_json({"id": 1, "type": "ping"})
        reply = await pinging.receive_json(timeout=5)
        assert reply["id"] == 1 and reply["type"] == "result"
        await pinging.close()


async def test_an_upgraded_connection_no_longer_holds_the_http_parser_or_its_queue(served):
    serving = await served()
    async with aiohttp.ClientSession() as session:
        ws = await signed_in(session, serving)
        await ws.send_json({"id": 1, "type": "subscribe", "topic": "stage:plenary"})
        assert (await ws.receive_json(timeout=5))["id"] == 1
        handlers = serving.runner.server.connections  # type: ignore[union-attr]
        upgraded = [h for h in handlers if h._upgraded]
        assert len(upgraded) == 1
        assert upgraded[0]._parser is None
        assert len(upgraded[0]._messages) == 0 and upgraded[0]._messages.maxlen == 0
        # An ordinary request on another connection still has its parser and is served.
        async with session.get(f"http://127.0.0.1:{serving.settings.port}/healthz") as resp:
            assert resp.status == 200
        # The WebSocket still reads frames without it, and closes cleanly.
        await ws.send_json({"id": 2, "type": "ping"})
        assert (await ws.receive_json(timeout=5))["id"] == 2
        await ws.close()
        gateway = serving.app[GATEWAY]
        await eventually(lambda: not list(gateway.connections), what="the gateway forgetting it")


async def test_the_sweep_closes_a_socket_whose_token_expired_with_4001(served):
    serving = await served(ws_idle_timeout=IDLE)
    token, claims = (
        serving.app[SERVICES]
        .auth()
        .issue(TokenRequest(role=Role.VIEWER, scopes=("*",), ttl=timedelta(seconds=1)), via="test")
    )
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            f"http://127.0.0.1:{serving.settings.port}/ws", autoping=False
        )
        await ws.send_json({"type": "auth", "token": token})
        assert (await ws.receive_json(timeout=5))["type"] == "auth.ok"
        # Pings keep it from going idle; only the expiry can close it.
        while True:
            await ws.ping()
            msg = await ws.receive(timeout=IDLE / 4)
            if msg.type is WSMsgType.CLOSE:
                break
            assert msg.type is WSMsgType.PONG
        assert msg.data == 4001 and "expired" in msg.extra
        late = datetime.now(UTC) - claims.exp
        assert timedelta(0) <= late < timedelta(seconds=idle_sweep_seconds(IDLE) + 1)


async def test_a_request_to_the_websocket_route_that_is_no_upgrade_gets_a_json_400(served):
    # Upgrades skip the HTTP middleware (it would hold a frame per socket for hours); a
    # plain GET of /ws still goes through it and gets the JSON error contract.
    serving = await served()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{serving.settings.port}/ws") as resp,
    ):
        assert resp.status == 400
        body = await resp.json()
        assert body["error"]["code"] == "invalid"
        assert resp.headers["X-Request-Id"]
