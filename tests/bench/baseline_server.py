"""The bare baseline: a minimal aiohttp server that loops ``send_str`` over its sockets.

It speaks just enough of hybridcon's wire protocol for the same load generator: the
first frame (``auth``, not checked) gets ``auth.ok``; ``subscribe`` adds the socket to
the topic; ``chat.send`` serialises a ``chat.message`` of the same shape as
hybridcon's once, then ``await ws.send_str(text)`` for every subscriber, and answers
the sender with a ``result``. No queues, no coalescing, no database: the floor a naive
server would stand on.

Run: ``python -m tests.bench.baseline_server --port 0`` prints ``listening on PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import signal
import uuid
from typing import Any

import orjson
from aiohttp import WSMsgType, web

TOPICS = web.AppKey("topics", dict[str, set[web.WebSocketResponse]])


async def ws_handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=64 * 1024, compress=False)
    await ws.prepare(request)
    topics = request.app[TOPICS]
    mine: set[str] = set()
    sub = uuid.uuid4().hex
    try:
        first = await ws.receive(timeout=10)
        if first.type is not WSMsgType.TEXT:
            await ws.close()
            return ws
        await ws.send_str(
            orjson.dumps(
                {
                    "type": "auth.ok",
                    "user": {"id": sub, "name": "", "role": "viewer", "scopes": ["*"]},
                    "session_id": sub,
                }
            ).decode()
        )
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            req: dict[str, Any] = orjson.loads(msg.data)
            kind = req.get("type")
            data: dict[str, Any]
            if kind == "subscribe":
                topic = req["topic"]
                topics.setdefault(topic, set()).add(ws)
                mine.add(topic)
                data = {
                    "topic": topic,
                    "seq": 0,
                    "snapshot": {"chat": [], "viewers": len(topics[topic])},
                    "missed": [],
                    "reset": False,
                }
            elif kind == "chat.send":
                msg_id = uuid.uuid4().hex
                text = orjson.dumps(
                    {
                        "type": "chat.message",
                        "topic": req["topic"],
                        "seq": 0,
                        "msg_id": msg_id,
                        "author": {"id": sub, "name": "Deelnemer", "role": "viewer"},
                        "text": req["text"],
                        "ts": dt.datetime.now(dt.UTC).isoformat(),
                    }
                ).decode()
                # The bare loop under comparison: one send_str per subscriber.
                for peer in list(topics.get(req["topic"], ())):
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await peer.send_str(text)
                data = {"msg_id": msg_id, "held": False}
            else:
                data = {}
            await ws.send_str(
                orjson.dumps({"id": req.get("id"), "type": "result", "data": data}).decode()
            )
    finally:
        for topic in mine:
            topics.get(topic, set()).discard(ws)
    return ws


async def serve(host: str, port: int) -> None:
    app = web.Application()
    app[TOPICS] = {}
    app.router.add_get("/ws", ws_handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    print(f"listening on {runner.addresses[0][1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
