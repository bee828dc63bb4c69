"""The load generator: viewer swarms (one process each) and the chat senders.

Viewers speak hybridcon's wire format directly on plain sockets: a blocking handshake,
``auth`` and ``subscribe`` per socket, then one ``epoll`` loop over all of the process's
sockets that reads, splits frames and looks at chat lines only enough to find their send
time. That costs a few microseconds of client CPU per delivery, well under an asyncio
client's 8-11 µs (realtime findings), so the generator's core is not what limits a run.

Senders are :class:`hybridcon_client.HybridconClient` connections (the SDK) sending
``chat.send`` at exponentially distributed intervals, each on its own schedule (one
shared timer inflates p50, realtime findings). Each line's text starts with
``B <time.monotonic()>``: CLOCK_MONOTONIC is the same clock in every process on the
machine, so a receiver's latency is its own ``time.monotonic()`` minus that number.

Two wires, chosen per server (:data:`WIRES`): ``hybridcon`` (hybridcon's own frames, which
the bare baseline and the ``ws`` and ``websockets`` peers speak too) and ``socketio``
(the same requests as Socket.IO events with acks, in Engine.IO v4 framing over a plain
WebSocket, for the python-socketio peer). Only the viewers' setup, the senders' client
and the answer to Engine.IO's pings differ: a chat line is a text frame holding
``"text":"B <time>`` on both, and the viewers' read loop is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import itertools
import os
import random
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from hybridcon_client import HybridconClient, HybridconError

# Latency histogram: 0.1 ms buckets below 1 s, then 10 ms buckets up to 121 s.
FINE_BUCKETS = 10_000
COARSE_BUCKETS = 12_000
BUCKETS = FINE_BUCKETS + COARSE_BUCKETS + 1

TEXT_MARK = b'"text":"B '
FILLER = "a chat line of ordinary length, sent by the fan-out benchmark"

SETUP_TIMEOUT = 30.0


def bucket_of(latency: float) -> int:
    """The histogram bucket of a latency in seconds."""
    if latency < 1.0:
        return max(0, int(latency * 10_000))
    return min(BUCKETS - 1, FINE_BUCKETS + int((latency - 1.0) * 100))


def bucket_value(index: int) -> float:
    """The upper bound of a bucket, in seconds."""
    if index < FINE_BUCKETS:
        return (index + 1) / 10_000
    return 1.0 + (index - FINE_BUCKETS + 1) / 100


def percentile(hist: list[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram, in seconds (bucket upper bound)."""
    total = sum(hist)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(hist):
        seen += count
        if seen >= rank:
            return bucket_value(index)
    return bucket_value(len(hist) - 1)


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame (RFC 6455 §5.3)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    if n == 0:
        return head + mask
    repeated = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return head + mask + masked


def next_frame(buf: bytes, pos: int) -> tuple[int, int, int] | None:
    """``(opcode, payload start, payload end)`` of the server frame at ``pos``, if complete."""
    n = len(buf)
    if pos + 2 > n:
        return None
    length = buf[pos + 1] & 0x7F
    start = pos + 2
    if length == 126:
        if pos + 4 > n:
            return None
        length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
        start = pos + 4
    elif length == 127:
        if pos + 10 > n:
            return None
        length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
        start = pos + 10
    end = start + length
    if end > n:
        return None
    return buf[pos] & 0x0F, start, end


class SetupError(Exception):
    """A viewer could not connect, authenticate or subscribe."""


class _SetupFrames:
    """Blocking frame reads and writes on a viewer's socket while it sets up."""

    def __init__(self, sock: socket.socket, buf: bytes) -> None:
        self.sock = sock
        self.buf = buf
        self.pos = 0

    def send(self, payload: bytes) -> None:
        self.sock.sendall(client_frame(payload))

    def text(self) -> bytes:
        """The next text frame's payload (pings answered, other frames skipped)."""
        while True:
            frame = next_frame(self.buf, self.pos)
            if frame is None:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise SetupError("closed during setup")
                self.buf = self.buf[self.pos :] + chunk
                self.pos = 0
                continue
            opcode, start, end = frame
            self.pos = end
            payload = self.buf[start:end]
            if opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                raise SetupError(f"closed by the server: {code} {payload[2:]!r}")
            if opcode == 0x9:
                self.sock.sendall(client_frame(payload, 0xA))
            elif opcode == 0x1:
                return payload

    def rest(self) -> bytes:
        """What was read past the last frame returned."""
        return self.buf[self.pos :]


def _setup_hybridcon(frames: _SetupFrames, token: str, topic: str) -> None:
    """``auth``, then ``subscribe`` (id 1) and its result."""
    frames.send(orjson.dumps({"type": "auth", "token": token}))
    frames.send(orjson.dumps({"id": 1, "type": "subscribe", "topic": topic}))
    while True:
        message = orjson.loads(frames.text())
        if message.get("id") == 1:
            if message.get("type") != "result":
                raise SetupError(f"subscribe refused: {message}")
            return


def _setup_socketio(frames: _SetupFrames, token: str, topic: str) -> None:
    """Engine.IO's open packet (``0{...}``), Socket.IO's CONNECT (``40``, the token as
    its auth) and its answer, then the ``subscribe`` event with ack 1 (``421[...]``) and
    its ack (``431[...]``)."""
    opened = frames.text()
    if not opened.startswith(b"0"):
        raise SetupError(f"no Engine.IO open packet: {opened[:80]!r}")
    frames.send(b"40" + orjson.dumps({"token": token}))
    while True:
        packet = frames.text()
        if packet == b"2":
            frames.send(b"3")
        elif packet.startswith(b"40"):
            break
        elif packet.startswith(b"44"):
            raise SetupError(f"connect refused: {packet[:80]!r}")
    frames.send(b"421" + orjson.dumps(["subscribe", {"topic": topic}]))
    while True:
        packet = frames.text()
        if packet == b"2":
            frames.send(b"3")
        elif packet.startswith(b"431"):
            return


@dataclass(frozen=True)
class Wire:
    """How the load generator speaks to one kind of server."""

    name: str
    path: str  # the WebSocket's request target
    setup: Callable[[_SetupFrames, str, str], None]  # (frames, token, topic): to subscribed


WIRES = {
    "hybridcon": Wire("hybridcon", "/ws", _setup_hybridcon),
    "socketio": Wire("socketio", "/socket.io/?EIO=4&transport=websocket", _setup_socketio),
}


def open_viewer(
    host: str, port: int, src_ip: str, token: str, topic: str, wire: Wire = WIRES["hybridcon"]
) -> tuple[socket.socket, bytes]:
    """Connect, authenticate and subscribe (blocking); returns the socket and unread bytes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(SETUP_TIMEOUT)
        sock.bind((src_ip, 0))
        sock.connect((host, port))
        key = "dGhlIHNhbXBsZSBub25jZQ=="  # any 16 bytes in base64; the server only echoes it
        sock.sendall(
            (
                f"GET {wire.path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise SetupError("closed during the handshake")
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise SetupError(f"handshake refused: {head[:80]!r}")
        frames = _SetupFrames(sock, buf)
        wire.setup(frames, token, topic)
        sock.setblocking(False)
        return sock, frames.rest()
    except BaseException:
        sock.close()
        raise


@dataclass
class _Viewer:
    sock: socket.socket
    buf: bytes = b""


@dataclass
class ViewerStats:
    """What one viewer process counted."""

    connected: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    closed_by_server: int = 0
    close_codes: dict[int, int] = field(default_factory=dict)
    chat_in_window: int = 0  # chat lines received while t0 <= now < t1 (any send time)
    chat_sent_in_window: int = 0  # chat lines sent in [t0, t1), received at any time
    chat_total: int = 0
    other_frames: int = 0
    recv_calls: int = 0
    recv_calls_in_window: int = 0
    # Deliveries per line sent in the window, keyed by its send time (the line's identity).
    lines: dict[float, int] = field(default_factory=dict)
    hist: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def summary(self, *, with_hist: bool) -> dict[str, Any]:
        data = {
            "connected": self.connected,
            "failed": self.failed,
            "failures": self.failures[:5],
            "closed_by_server": self.closed_by_server,
            "close_codes": self.close_codes,
            "chat_in_window": self.chat_in_window,
            "chat_sent_in_window": self.chat_sent_in_window,
            "chat_total": self.chat_total,
            "other_frames": self.other_frames,
            "recv_calls": self.recv_calls,
            "recv_calls_in_window": self.recv_calls_in_window,
        }
        if with_hist:
            data["hist"] = self.hist
            data["lines"] = self.lines
        return data


def viewer_process(
    ctl: Connection,
    host: str,
    port: int,
    src_ip: str,
    tokens: list[str],
    topic: str,
    cpu: int | None,
    wire: str = "hybridcon",
) -> None:
    """Run one swarm of viewers until told to stop (commands over ``ctl``).

    Commands: ``("window", t0, t1)``, ``("report",)``, ``("final",)`` and ``("stop",)``.
    The process answers ``("ready", summary)`` once every viewer is subscribed (or failed),
    and a summary for ``report`` and ``final``. It ends by itself after ``stop``, or if
    ``ctl`` closes.
    """
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    stats = ViewerStats()
    viewers: dict[int, _Viewer] = {}
    for token in tokens:
        try:
            sock, rest = open_viewer(host, port, src_ip, token, topic, WIRES[wire])
        except (OSError, SetupError, ValueError) as exc:
            stats.failed += 1
            if len(stats.failures) < 5:
                stats.failures.append(f"{type(exc).__name__}: {exc}")
            continue
        viewers[sock.fileno()] = _Viewer(sock, rest)
    stats.connected = len(viewers)
    ctl.send(("ready", stats.summary(with_hist=False)))

    poller = select.epoll()
    ctl_fd = ctl.fileno()
    poller.register(ctl_fd, select.EPOLLIN)
    for fd in viewers:
        poller.register(fd, select.EPOLLIN)
    t0 = t1 = float("inf")
    hist = stats.hist
    lines = stats.lines
    monotonic = time.monotonic
    running = True
    try:
        while running:
            for fd, _ in poller.poll(0.2):
                if fd == ctl_fd:
                    try:
                        command = ctl.recv()
                    except EOFError:
                        running = False
                        break
                    if command[0] == "window":
                        t0, t1 = command[1], command[2]
                    elif command[0] == "report":
                        ctl.send(stats.summary(with_hist=False))
                    elif command[0] == "final":
                        ctl.send(stats.summary(with_hist=True))
                    elif command[0] == "stop":
                        running = False
                    continue
                viewer = viewers.get(fd)
                if viewer is None:
                    continue
                try:
                    data = viewer.sock.recv(16384)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                now = monotonic()
                stats.recv_calls += 1
                in_window = t0 <= now < t1
                if in_window:
                    stats.recv_calls_in_window += 1
                if not data:
                    poller.unregister(fd)
                    viewer.sock.close()
                    del viewers[fd]
                    stats.closed_by_server += 1
                    continue
                buf = viewer.buf + data if viewer.buf else data
                pos = 0
                n = len(buf)
                while pos + 2 <= n:
                    # Inline frame parsing: this loop is the generator's cost per delivery.
                    length = buf[pos + 1] & 0x7F
                    start = pos + 2
                    if length == 126:
                        if pos + 4 > n:
                            break
                        length = (buf[pos + 2] << 8) | buf[pos + 3]
                        start = pos + 4
                    elif length == 127:
                        if pos + 10 > n:
                            break
                        length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                        start = pos + 10
                    end = start + length
                    if end > n:
                        break
                    opcode = buf[pos] & 0x0F
                    pos = end
                    if opcode == 0x1:
                        mark = buf.find(TEXT_MARK, start, end)
                        if mark < 0:
                            stats.other_frames += 1
                            if end - start == 1 and buf[start] == 0x32:  # Engine.IO ping "2"
                                with contextlib.suppress(OSError):
                                    viewer.sock.send(client_frame(b"3"))
                            continue
                        stats.chat_total += 1
                        if in_window:
                            stats.chat_in_window += 1
                        ts_start = mark + 10
                        sent = float(buf[ts_start : buf.find(b" ", ts_start, end)])
                        if t0 <= sent < t1:
                            stats.chat_sent_in_window += 1
                            lines[sent] = lines.get(sent, 0) + 1
                            latency = now - sent
                            if latency < 1.0:
                                hist[int(latency * 10_000) if latency > 0 else 0] += 1
                            else:
                                hist[bucket_of(latency)] += 1
                    elif opcode == 0x8:
                        code = (buf[start] << 8) | buf[start + 1] if end - start >= 2 else 1005
                        stats.close_codes[code] = stats.close_codes.get(code, 0) + 1
                    elif opcode == 0x9:
                        with contextlib.suppress(OSError):
                            viewer.sock.send(client_frame(buf[start:end], 0xA))
                    else:
                        stats.other_frames += 1
                viewer.buf = buf[pos:] if pos < n else b""
    finally:
        poller.close()
        for viewer in viewers.values():
            with contextlib.suppress(OSError):
                viewer.sock.close()
        with contextlib.suppress(OSError):
            ctl.close()


@dataclass
class SenderResult:
    """What the senders did."""

    sent: int = 0
    sent_in_window: int = 0
    published_in_window: int = 0  # acknowledged, not held
    published: list[float] = field(default_factory=list)  # send times of those lines
    held: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    reply_ms: list[float] = field(default_factory=list)


class ChatSender(Protocol):
    """What a sender needs of its connection; :class:`HybridconClient` is one."""

    async def connect(self) -> Any: ...

    async def send_chat(self, topic: str, text: str) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class SocketIOSender:
    """A sender on the ``socketio`` wire: Socket.IO events with acks over one plain
    WebSocket in Engine.IO v4 framing (``0{...}`` open, ``40`` connect, ``42N[...]`` an
    event with ack N, ``43N[...]`` the ack, ``2``/``3`` ping and pong)."""

    def __init__(self, url: str, token: str, *, request_timeout: float = 60.0) -> None:
        self.url = url
        self.token = token
        self.timeout = request_timeout
        self._ws: ClientConnection | None = None
        self._acks: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> SocketIOSender:
        ws = await ws_connect(self.url, compression=None, ping_interval=None, max_size=None)
        opened = await ws.recv()
        if not str(opened).startswith("0"):
            raise ConnectionError(f"no Engine.IO open packet: {opened!r}")
        await ws.send("40" + orjson.dumps({"token": self.token}).decode())
        while True:
            packet = str(await ws.recv())
            if packet == "2":
                await ws.send("3")
            elif packet.startswith("40"):
                break
            elif packet.startswith("44"):
                raise ConnectionError(f"connect refused: {packet}")
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws))
        return self

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                packet = str(raw)
                if packet == "2":
                    await ws.send("3")
                elif packet.startswith("43"):
                    body = packet.index("[")
                    future = self._acks.pop(int(packet[2:body]), None)
                    if future is not None and not future.done():
                        args = orjson.loads(packet[body:])
                        future.set_result(args[0] if args else {})
        except Exception:  # the connection's end fails the waiting requests below
            pass
        finally:
            for future in self._acks.values():
                if not future.done():
                    future.set_exception(ConnectionError("the Socket.IO connection closed"))
            self._acks.clear()

    async def send_chat(self, topic: str, text: str) -> dict[str, Any]:
        if self._ws is None:
            raise ConnectionError("not connected")
        ack = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._acks[ack] = future
        await self._ws.send(
            f"42{ack}" + orjson.dumps(["chat.send", {"topic": topic, "text": text}]).decode()
        )
        return await asyncio.wait_for(future, self.timeout)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def sender_process(
    ctl: Connection,
    url: str,
    tokens: list[str],
    topic: str,
    rate: float,
    start_at: float,
    t0: float,
    t1: float,
    cpu: int | None,
    wire: str = "hybridcon",
    reconnect: bool = False,
) -> None:
    """Send chat lines at ``rate`` lines/s in total from ``start_at`` until ``t1``.

    Each sender draws its own exponential gaps (a Poisson process of ``rate / senders``).
    Sends ``("done", summary)`` over ``ctl`` when every reply is in (or timed out).
    """
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    result = asyncio.run(
        _send_lines(url, tokens, topic, rate, start_at, t0, t1, wire, reconnect=reconnect)
    )
    ctl.send(("done", result.__dict__))
    ctl.close()


def _chat_sender(url: str, token: str, wire: str, reconnect: bool = False) -> ChatSender:
    """The sender's client on ``wire``: the SDK for hybridcon's own frames (with
    ``reconnect``, it comes back after the server went away, as a real client would)."""
    if wire == "socketio":
        return SocketIOSender(url, token, request_timeout=60.0)
    return HybridconClient(url, token, reconnect=reconnect, request_timeout=60.0)


async def _send_lines(
    url: str,
    tokens: list[str],
    topic: str,
    rate: float,
    start_at: float,
    t0: float,
    t1: float,
    wire: str = "hybridcon",
    *,
    reconnect: bool = False,
) -> SenderResult:
    result = SenderResult()
    clients = [_chat_sender(url, token, wire, reconnect) for token in tokens]
    await asyncio.gather(*(client.connect() for client in clients))
    each = rate / len(clients)

    async def send_one(client: ChatSender, sent: float) -> None:
        in_window = t0 <= sent < t1
        text = f"B {sent:.6f} {FILLER}"
        try:
            reply = await client.send_chat(topic, text)
        except HybridconError as exc:
            result.errors[exc.code] = result.errors.get(exc.code, 0) + 1
            return
        except Exception as exc:
            name = type(exc).__name__
            result.errors[name] = result.errors.get(name, 0) + 1
            return
        result.reply_ms.append((time.monotonic() - sent) * 1000)
        if reply.get("held"):
            result.held += 1
        elif in_window:
            result.published_in_window += 1
            result.published.append(sent)

    async def one_sender(client: ChatSender, seed: int) -> None:
        rng = random.Random(seed)  # timing jitter, not security
        tasks: list[asyncio.Task[None]] = []
        due = start_at + rng.expovariate(each)
        while due < t1:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = round(time.monotonic(), 6)  # exactly the number the text carries
            result.sent += 1
            if t0 <= sent < t1:
                result.sent_in_window += 1
            tasks.append(asyncio.create_task(send_one(client, sent)))
            due += rng.expovariate(each)
        await asyncio.gather(*tasks)

    try:
        await asyncio.gather(
            *(one_sender(client, seed) for seed, client in enumerate(clients, start=os.getpid()))
        )
    finally:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)
    return result


# --- viewers that come back: the reconnect storm (tests/bench/connections.py) ------------

# The client SDK's reconnect (clients/python, HybridconClient._reconnect): the n-th attempt
# after a loss waits uniformly in [0, min(BACKOFF_MAX, BACKOFF_INITIAL * 2**(n-1))]
# ("full jitter"), then connects, authenticates with the same token and subscribes again
# with ``since`` = the last ``seq`` it holds.
BACKOFF_INITIAL = 0.2
BACKOFF_MAX = 10.0
SEQ_MARK = b'"seq":'
# Sockets a swarm sets up at once when it first connects its viewers (the storm has no
# such limit: each viewer comes back when its own backoff says).
FIRST_JOINS_IN_FLIGHT = 16

_WAIT, _CONNECTING, _HANDSHAKE, _SETUP, _LIVE = range(5)


def backoff_bound(attempt: int) -> float:
    """The upper bound of the wait before reconnect attempt ``attempt`` (1, 2, ...)."""
    return min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** min(attempt - 1, 32))


def _seq_at(buf: bytes, start: int, end: int) -> int | None:
    """The ``"seq":N`` of the JSON object in ``buf[start:end]``, if it has one."""
    mark = buf.find(SEQ_MARK, start, end)
    if mark < 0:
        return None
    i = mark + len(SEQ_MARK)
    j = i
    while j < end and 0x30 <= buf[j] <= 0x39:
        j += 1
    return int(buf[i:j]) if j > i else None


def _line_time(buf: bytes, start: int, end: int) -> float | None:
    """The send time of the chat line in ``buf[start:end]`` (its text's ``B <time>``)."""
    mark = buf.find(TEXT_MARK, start, end)
    if mark < 0:
        return None
    ts_start = mark + len(TEXT_MARK)
    return float(buf[ts_start : buf.find(b" ", ts_start, end)])


class _Comer:
    """One viewer that comes back after losing its connection (see :func:`storm_process`)."""

    __slots__ = (
        "attempt",
        "buf",
        "down_at",
        "first_at",
        "home",
        "last_seq",
        "port_turn",
        "seen",
        "sock",
        "src_ip",
        "started_at",
        "state",
        "token",
    )

    def __init__(self, token: str, src_ip: str, home: int) -> None:
        self.token = token
        self.src_ip = src_ip
        self.home = home  # index of the port it was last connected to
        self.port_turn = home
        self.sock: socket.socket | None = None
        self.state = _WAIT
        self.buf = b""
        self.attempt = 0
        self.last_seq: int | None = None
        self.down_at = 0.0  # when the connection was lost (monotonic)
        self.started_at = 0.0  # when the current connection attempt began
        self.first_at = 0.0  # when it was first subscribed
        self.seen = bytearray()  # 1 at the index of each chat line it holds (the swarm's)


@dataclass
class StormStats:
    """What one swarm of returning viewers counted."""

    viewers: int = 0
    live: int = 0
    first_joined: int = 0
    first_failed_attempts: int = 0
    losses: int = 0  # connections lost while subscribed
    rejoins: int = 0  # subscribed again with since (caught up: reset false, nothing skipped)
    attempts: int = 0  # reconnect attempts (all, failed included)
    failed_attempts: dict[str, int] = field(default_factory=dict)  # why, how many
    resets: int = 0  # history did not reach back to since
    duplicates: int = 0  # chat lines received twice (dropped, as the SDK drops them)
    last_back_at: float = 0.0  # monotonic time the last viewer was caught up
    rejoin_seconds: list[float] = field(default_factory=list)  # loss -> caught up, each
    # The successful attempt's own time, connect -> caught up (the server's part of it).
    rejoin_service_seconds: list[float] = field(default_factory=list)
    missing: int = 0  # (viewer, line) pairs not held, at the last check
    viewers_missing: int = 0

    def count_failure(self, why: str) -> None:
        self.failed_attempts[why] = self.failed_attempts.get(why, 0) + 1

    def summary(self, *, full: bool) -> dict[str, Any]:
        lists = ("rejoin_seconds", "rejoin_service_seconds")
        data = {k: v for k, v in self.__dict__.items() if k not in lists}
        if full:
            data.update((k, getattr(self, k)) for k in lists)
        return data


def storm_process(
    ctl: Connection,
    host: str,
    ports: list[int],
    src_prefix: str,
    tokens: list[str],
    topic: str,
    cpu: int | None,
    first_port: int = 0,
) -> None:
    """A swarm of viewers that reconnect as the client SDK does, all in one ``epoll`` loop.

    Each viewer connects (non-blocking), does the handshake, ``auth`` and ``subscribe``
    (with ``since`` once it holds a ``seq``), then reads, noting each chat line it gets,
    live or in a subscribe's ``missed``, by its send time (the text's ``B <time>``); a
    ``("check", times)`` command counts, for each viewer, the lines of ``times`` sent after
    it first subscribed that it does not hold (a node started again numbers on from a
    higher ``seq``, so lines, not numbers, are what is checked). When its
    connection is lost it waits as the SDK does (:func:`backoff_bound`, full jitter) and
    comes back, taking the next of ``ports`` after each failed attempt (a load balancer's
    choice among the nodes; one port: the same node). A rejoin counts once the subscribe
    result is in without ``reset`` and its ``missed`` continue the viewer's sequence.
    Viewer ``i`` binds to ``src_prefix`` + one of 200 host numbers, so each address has
    few sockets signing in at once (as households would), and starts on port
    ``first_port + i`` (mod the ports).

    Commands over ``ctl``: ``("report",)``, ``("final",)`` and ``("check", times)`` answer
    a summary, ``("stop",)`` ends it. It sends ``("ready", summary)`` once every viewer was first
    subscribed.
    """
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    rng = random.Random(os.getpid())  # jitter, not security
    stats = StormStats(viewers=len(tokens))
    comers = [
        _Comer(token, f"{src_prefix}.{10 + i % 200}", (first_port + i) % len(ports))
        for i, token in enumerate(tokens)
    ]
    by_fd: dict[int, _Comer] = {}
    line_index: dict[float, int] = {}  # a chat line's send time -> its index in `seen`
    poller = select.epoll()
    ctl_fd = ctl.fileno()
    poller.register(ctl_fd, select.EPOLLIN)
    timers: list[tuple[float, int, _Comer]] = []  # (when, tie-break, viewer)
    tie = itertools.count()
    waiting_first = list(reversed(comers))  # not yet started, first joins
    in_flight_first = 0
    ready_sent = False
    monotonic = time.monotonic

    def drop(c: _Comer) -> None:
        if c.sock is not None:
            fd = c.sock.fileno()
            by_fd.pop(fd, None)
            with contextlib.suppress(OSError, ValueError):
                poller.unregister(fd)
            c.sock.close()
            c.sock = None
        c.buf = b""

    def note_line(c: _Comer, sent: float) -> None:
        index = line_index.setdefault(sent, len(line_index))
        seen = c.seen
        if index >= len(seen):
            seen.extend(bytes(index + 64 - len(seen)))
        if seen[index]:
            stats.duplicates += 1
        seen[index] = 1

    def missing(c: _Comer, times: list[float]) -> int:
        seen = c.seen
        count = 0
        for sent in times:
            if sent <= c.first_at:
                continue
            index = line_index.get(sent)
            if index is None or index >= len(seen) or not seen[index]:
                count += 1
        return count

    def start(c: _Comer) -> None:
        c.started_at = monotonic()
        if c.last_seq is not None:
            stats.attempts += 1
        port = ports[c.port_turn % len(ports)]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((c.src_ip, 0))
            err = sock.connect_ex((host, port))
        except OSError as exc:
            sock.close()
            failed(c, f"bind/connect: {exc.strerror}")
            return
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            failed(c, f"connect: {os.strerror(err)}")
            return
        c.sock = sock
        c.state = _CONNECTING
        by_fd[sock.fileno()] = c
        poller.register(sock.fileno(), select.EPOLLOUT)

    def failed(c: _Comer, why: str) -> None:
        """A connection attempt failed, or a live connection was lost: back off, retry."""
        was = c.state
        drop(c)
        now = monotonic()
        if was == _LIVE:
            stats.losses += 1
            stats.live -= 1
            c.attempt = 0
            c.down_at = now
        else:
            stats.count_failure(why)
            if c.last_seq is None:
                stats.first_failed_attempts += 1
            c.port_turn += 1  # another node, if there are several
        c.state = _WAIT
        c.attempt += 1
        heapq.heappush(timers, (now + rng.uniform(0, backoff_bound(c.attempt)), next(tie), c))

    def subscribed(c: _Comer, data: dict[str, Any]) -> None:
        nonlocal in_flight_first
        seq = data.get("seq")
        first = c.last_seq is None
        if not first and data.get("reset"):
            stats.resets += 1
        for message in data.get("missed") or ():
            text = message.get("text") if isinstance(message, dict) else None
            if isinstance(text, str) and text.startswith("B "):
                note_line(c, float(text.split(" ", 2)[1]))
        if isinstance(seq, int):
            c.last_seq = seq
        c.state = _LIVE
        c.attempt = 0
        c.home = c.port_turn % len(ports)
        stats.live += 1
        now = monotonic()
        if first:
            stats.first_joined += 1
            in_flight_first -= 1
            c.first_at = now
        else:
            stats.rejoins += 1
            stats.rejoin_seconds.append(now - c.down_at)
            stats.rejoin_service_seconds.append(now - c.started_at)
            stats.last_back_at = max(stats.last_back_at, now)

    def on_readable(c: _Comer) -> None:
        assert c.sock is not None
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            failed(c, f"recv: {exc.strerror}")
            return
        if not data:
            failed(c, "closed" if c.state != _LIVE else "lost")
            return
        buf = c.buf + data if c.buf else data
        if c.state == _HANDSHAKE:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                c.buf = buf
                return
            status = buf[: buf.find(b"\r\n")]
            if b" 101 " not in status:
                failed(c, f"handshake: {status[:40].decode('latin-1')}")
                return
            buf = buf[end + 4 :]
            c.state = _SETUP
            fields: dict[str, Any] = {"id": 1, "type": "subscribe", "topic": topic}
            if c.last_seq is not None:
                fields["since"] = c.last_seq
            c.sock.sendall(
                client_frame(orjson.dumps({"type": "auth", "token": c.token}))
                + client_frame(orjson.dumps(fields))
            )
        pos = 0
        n = len(buf)
        while True:
            frame = next_frame(buf, pos)
            if frame is None:
                break
            opcode, start, end = frame
            pos = end
            if opcode == 0x8:
                code = (buf[start] << 8) | buf[start + 1] if end - start >= 2 else 1005
                failed(c, f"close {code}" if c.state != _LIVE else "lost")
                return
            if opcode == 0x9:
                c.sock.send(client_frame(buf[start:end], 0xA))
                continue
            if opcode != 0x1:
                continue
            if c.state == _SETUP:
                message = orjson.loads(buf[start:end])
                if message.get("id") != 1:
                    continue  # auth.ok, and pushes before the result
                if message.get("type") != "result":
                    failed(c, f"subscribe: {message.get('code')}")
                    return
                subscribed(c, message.get("data") or {})
                continue
            if buf[start + 2 : start + 4] == b"id":
                continue  # a reply
            seq = _seq_at(buf, start, end)
            if seq is not None:
                c.last_seq = seq
                sent = _line_time(buf, start, end)
                if sent is not None:
                    note_line(c, sent)
        c.buf = buf[pos:] if pos < n else b""

    def on_writable(c: _Comer) -> None:
        assert c.sock is not None
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            failed(c, f"connect: {os.strerror(err)}")
            return
        port = ports[c.port_turn % len(ports)]
        key = "dGhlIHNhbXBsZSBub25jZQ=="  # any 16 bytes in base64; the server only echoes it
        c.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        c.state = _HANDSHAKE
        poller.modify(c.sock.fileno(), select.EPOLLIN)

    running = True
    try:
        while running:
            while waiting_first and in_flight_first < FIRST_JOINS_IN_FLIGHT:
                in_flight_first += 1
                start(waiting_first.pop())
            if not ready_sent and not waiting_first and in_flight_first <= 0:
                ready_sent = True
                ctl.send(("ready", stats.summary(full=False)))
            now = monotonic()
            while timers and timers[0][0] <= now:
                _, _, c = heapq.heappop(timers)
                if c.state == _WAIT:
                    start(c)
            timeout = min(0.2, max(0.0, timers[0][0] - now)) if timers else 0.2
            for fd, events in poller.poll(timeout):
                if fd == ctl_fd:
                    try:
                        command = ctl.recv()
                    except EOFError:
                        running = False
                        break
                    if command[0] == "report":
                        ctl.send(stats.summary(full=False))
                    elif command[0] == "final":
                        ctl.send(stats.summary(full=True))
                    elif command[0] == "check":
                        counts = [missing(c, command[1]) for c in comers]
                        stats.missing = sum(counts)
                        stats.viewers_missing = sum(1 for n in counts if n)
                        ctl.send(stats.summary(full=False))
                    elif command[0] == "stop":
                        running = False
                    continue
                c = by_fd.get(fd)
                if c is None:
                    continue
                try:
                    if c.state == _CONNECTING:
                        on_writable(c)
                    elif events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                        on_readable(c)
                except OSError as exc:
                    failed(c, f"{type(exc).__name__}: {exc.strerror}")
    finally:
        poller.close()
        for c in comers:
            drop(c)
        with contextlib.suppress(OSError):
            ctl.close()
