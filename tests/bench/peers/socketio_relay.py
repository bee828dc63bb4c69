"""The ``python-socketio`` peer: the bare protocol as Socket.IO events, on aiohttp.

Socket.IO's CONNECT (``40``) is the first frame and its answer the ``auth.ok``; the
``subscribe`` event (with an ack) enters the topic's room and acks the result;
``chat.send`` (with an ack) emits one ``chat.message`` event to the room, which
python-socketio encodes once for all of its members, and acks the result. Everything
else is the library's defaults (handlers in their own tasks, Engine.IO pings every 25 s).

Run: ``python -m tests.bench.peers.socketio_relay --port 0`` prints ``listening on PORT``;
clients connect to ``/socket.io/?EIO=4&transport=websocket``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import signal
import uuid
from typing import Any

import socketio
from aiohttp import web


def make_server() -> socketio.AsyncServer:
    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        return True  # the token is not checked, as in the bare baseline

    @sio.on("subscribe")
    async def subscribe(sid: str, req: dict[str, Any]) -> dict[str, Any]:
        topic = req["topic"]
        await sio.enter_room(sid, topic)
        members = len(sio.manager.rooms.get("/", {}).get(topic, ()))
        return {
            "topic": topic,
            "seq": 0,
            "snapshot": {"chat": [], "viewers": members},
            "missed": [],
            "reset": False,
        }

    @sio.on("chat.send")
    async def chat_send(sid: str, req: dict[str, Any]) -> dict[str, Any]:
        msg_id = uuid.uuid4().hex
        message = {
            "type": "chat.message",
            "topic": req["topic"],
            "seq": 0,
            "msg_id": msg_id,
            "author": {"id": sid, "name": "Deelnemer", "role": "viewer"},
            "text": req["text"],
            "ts": dt.datetime.now(dt.UTC).isoformat(),
        }
        await sio.emit("chat.message", message, room=req["topic"])
        return {"msg_id": msg_id, "held": False}

    return sio


async def serve(host: str, port: int) -> None:
    app = web.Application()
    make_server().attach(app)
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
