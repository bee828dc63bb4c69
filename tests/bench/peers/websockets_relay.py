"""The ``websockets`` peer: the bare protocol, each chat line fanned out with
``websockets.broadcast`` (one encoding, written to every subscriber without awaiting).

No compression and no keepalive pings, as the bare baseline has none.

Run: ``python -m tests.bench.peers.websockets_relay --port 0`` prints ``listening on PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import signal
import uuid
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

TOPICS: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    sub = uuid.uuid4().hex
    mine: set[str] = set()
    try:
        await asyncio.wait_for(ws.recv(), 10)  # auth, not checked
        await ws.send(
            orjson.dumps(
                {
                    "type": "auth.ok",
                    "user": {"id": sub, "name": "", "role": "viewer", "scopes": ["*"]},
                    "session_id": sub,
                }
            ),
            text=True,
        )
        async for raw in ws:
            req: dict[str, Any] = orjson.loads(raw)
            kind = req.get("type")
            data: dict[str, Any] = {}
            if kind == "subscribe":
                topic = req["topic"]
                TOPICS.setdefault(topic, set()).add(ws)
                mine.add(topic)
                data = {
                    "topic": topic,
                    "seq": 0,
                    "snapshot": {"chat": [], "viewers": len(TOPICS[topic])},
                    "missed": [],
                    "reset": False,
                }
            elif kind == "chat.send":
                msg_id = uuid.uuid4().hex
                frame = orjson.dumps(
                    {
                        "type": "chat.message",
                        "topic": req["topic"],
                        "seq": 0,
                        "msg_id": msg_id,
                        "author": {"id": sub, "name": "Deelnemer", "role": "viewer"},
                        "text": req["text"],
                        "ts": dt.datetime.now(dt.UTC).isoformat(),
                    }
                )
                broadcast(TOPICS.get(req["topic"], ()), frame, text=True)
                data = {"msg_id": msg_id, "held": False}
            await ws.send(
                orjson.dumps({"id": req.get("id"), "type": "result", "data": data}), text=True
            )
    except (ConnectionClosed, TimeoutError):
        pass
    finally:
        for topic in mine:
            TOPICS.get(topic, set()).discard(ws)


async def main_async(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        handler,
        host,
        port,
        compression=None,
        ping_interval=None,
        max_size=64 * 1024,
        backlog=4096,
    ) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"listening on {bound}", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main_async(args.host, args.port))


if __name__ == "__main__":
    main()
