"""PostgreSQL going away: requests that need it get ``unavailable`` (safe to retry), not
``internal``; and the embedded PostgreSQL, killed, is started again without a hand."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect

from serve_process import Server, cli_token, serve_env
from support import WsClient, eventually, issue, services_of


async def test_a_request_during_an_outage_gets_unavailable_not_internal(client):
    ann = await WsClient.connect(client, issue(client, scopes=("stage:plenary",)))
    await ann.ok("chat.send", topic="stage:plenary", text="voor")
    # The database goes away under the node (its pool can hand out no connection).
    await services_of(client).db().close()
    for text in ("tijdens", "nog eens"):
        reply = await ann.request("chat.send", topic="stage:plenary", text=text)
        assert reply["type"] == "error", reply
        assert reply["code"] == "unavailable", reply
        assert "database" in reply["message"]
    assert (await ann.ok("ping"))["ts"]
    await ann.close()


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.slow
async def test_a_killed_embedded_postgres_is_started_again_and_the_node_recovers(
    make_settings, own_data_dir, servers
):
    settings = make_settings(data_dir=own_data_dir)
    env = serve_env(settings, HYBRIDCON_DATABASE_URL="")
    node = Server(settings, "--port", "0", env=env)
    servers.append(node)
    port = node.port()
    await eventually(lambda: asyncio.to_thread(ready, port), timeout=30, what="the node ready")

    pid_file = settings.data_dir / "postgres" / "postmaster.pid"
    postmaster = int(pid_file.read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    await eventually(
        lambda: asyncio.to_thread(lambda: not ready(port)), timeout=10, what="readyz going 503"
    )
    await eventually(
        lambda: asyncio.to_thread(ready, port),
        timeout=60,
        what="readyz back to 200 without a restart by hand",
    )
    assert int(pid_file.read_text().split()[0]) != postmaster
    # The log line is read from the process's stderr by a thread of the test: wait for it.
    await eventually(
        lambda: any(e.get("event") == "embedded_postgres_restarted" for e in node.events()),
        timeout=10,
        what="the restart in the node's log",
    )

    token = await asyncio.to_thread(cli_token, env, "--role", "viewer", "--scope", "stage:plenary")
    async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        assert json.loads(await ws.recv())["type"] == "auth.ok"
        request = {"id": 1, "type": "chat.send", "topic": "stage:plenary", "text": "weer daar"}
        await ws.send(json.dumps(request))
        while (reply := json.loads(await asyncio.wait_for(ws.recv(), 10))).get("id") != 1:
            pass
        assert reply["type"] == "result", reply
