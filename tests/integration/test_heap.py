"""A running node freezes its heap after start-up and after bursts of joins, and thaws it
when it stops (the real gc.freeze: see tests/unit/test_heap_policy.py for the policy)."""

from __future__ import annotations

import gc

from aiohttp.test_utils import TestClient, TestServer

from hybridcon.app import create_app
from hybridcon.realtime.gateway import GATEWAY
from support import WsClient, eventually, issue


async def test_start_up_and_joins_are_frozen_and_thawed_at_stop(make_settings):
    settings = make_settings(gc_freeze_joins=2)
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as client:
        after_start = gc.get_freeze_count()
        assert after_start > 0
        viewers = [await WsClient.connect(client, issue(client)) for _ in range(2)]
        # The second join froze what the two connections built.
        assert gc.get_freeze_count() > after_start
        for viewer in viewers:
            await viewer.close()
        gateway = client.server.app[GATEWAY]
        await eventually(lambda: len(gateway.connections) == 0, what="viewers gone")
    assert gc.get_freeze_count() == 0


async def test_zero_freezes_nothing(make_settings):
    settings = make_settings(gc_freeze_joins=0)
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as client:
        assert gc.get_freeze_count() == 0
        await WsClient.connect(client, issue(client))
        assert gc.get_freeze_count() == 0
