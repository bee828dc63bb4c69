"""Joining a topic while its lines wait for the tick: the newcomer gets only what came
after its snapshot, and the join does not write the waiting lines early (which, while an
audience joins, would split every tick into a write per line)."""

from __future__ import annotations

import time

from aiohttp.test_utils import TestClient, TestServer

from hybridcon.app import create_app
from support import WsClient, issue

TOPIC = "stage:plenary"
WAIT = 0.5  # the flush interval: how long a pushed line waits for its tick


async def test_a_newcomer_gets_only_later_lines_and_the_tick_keeps_its_time(make_settings):
    settings = make_settings(ws_flush_interval=WAIT, ws_flush_period=0, ws_flush_load_factor=0)
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as client:
        early = await WsClient.connect(client, issue(client, sub="u:early"))
        await early.ok("subscribe", topic=TOPIC)
        sender = await WsClient.connect(client, issue(client, sub="u:sender"))

        sent_at = time.monotonic()
        first = await sender.ok("chat.send", topic=TOPIC, text="een")
        # The line waits for its tick; a newcomer joins meanwhile.
        newcomer = await WsClient.connect(client, issue(client, sub="u:new"))
        snap = await newcomer.ok("subscribe", topic=TOPIC)
        assert time.monotonic() - sent_at < WAIT, "too slow to join within the tick's wait"
        assert [m["msg_id"] for m in snap["snapshot"]["chat"]] == [first["msg_id"]]
        second = await sender.ok("chat.send", topic=TOPIC, text="twee")

        one = await early.push("chat.message")
        # Written at the tick, not at the join.
        assert time.monotonic() - sent_at >= WAIT * 0.9
        two = await early.push("chat.message")
        assert [one["msg_id"], two["msg_id"]] == [first["msg_id"], second["msg_id"]]
        assert two["seq"] == one["seq"] + 1

        later = await newcomer.push("chat.message")
        assert later["msg_id"] == second["msg_id"]
        assert all(p.get("msg_id") != first["msg_id"] for p in newcomer.pushes)


async def test_a_newcomer_that_leaves_before_the_tick_gets_nothing(make_settings):
    settings = make_settings(ws_flush_interval=WAIT, ws_flush_period=0, ws_flush_load_factor=0)
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as client:
        early = await WsClient.connect(client, issue(client, sub="u:early"))
        await early.ok("subscribe", topic=TOPIC)
        sender = await WsClient.connect(client, issue(client, sub="u:sender"))
        await sender.ok("chat.send", topic=TOPIC, text="een")
        passing = await WsClient.connect(client, issue(client, sub="u:passing"))
        await passing.ok("subscribe", topic=TOPIC)
        await passing.ok("unsubscribe", topic=TOPIC)
        marker = await sender.ok("chat.send", topic=TOPIC, text="twee")
        await early.push("chat.message")
        assert (await early.push("chat.message"))["msg_id"] == marker["msg_id"]
        # The tick has been written; the one who left got none of it.
        reply = await passing.request("ping")
        assert reply["type"] == "result"
        assert not [p for p in passing.pushes if p["type"] == "chat.message"]
