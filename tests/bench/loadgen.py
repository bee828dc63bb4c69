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
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import select
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import orjson

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


def _open_viewer(
    host: str, port: int, src_ip: str, token: str, topic: str
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
                f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
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
        sock.sendall(
            client_frame(orjson.dumps({"type": "auth", "token": token}))
            + client_frame(orjson.dumps({"id": 1, "type": "subscribe", "topic": topic}))
        )
        pos = 0
        while True:
            frame = next_frame(buf, pos)
            if frame is None:
                chunk = sock.recv(65536)
                if not chunk:
                    raise SetupError("closed before the subscribe reply")
                buf = buf[pos:] + chunk
                pos = 0
                continue
            opcode, start, end = frame
            pos = end
            if opcode == 0x8:
                code = int.from_bytes(buf[start : start + 2], "big") if end - start >= 2 else None
                raise SetupError(f"closed by the server: {code} {buf[start + 2 : end]!r}")
            if opcode != 0x1:
                continue
            message = orjson.loads(buf[start:end])
            if message.get("id") == 1:
                if message.get("type") != "result":
                    raise SetupError(f"subscribe refused: {message}")
                sock.setblocking(False)
                return sock, buf[pos:]
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
            sock, rest = _open_viewer(host, port, src_ip, token, topic)
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
) -> None:
    """Send chat lines at ``rate`` lines/s in total from ``start_at`` until ``t1``.

    Each sender draws its own exponential gaps (a Poisson process of ``rate / senders``).
    Sends ``("done", summary)`` over ``ctl`` when every reply is in (or timed out).
    """
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    result = asyncio.run(_send_lines(url, tokens, topic, rate, start_at, t0, t1))
    ctl.send(("done", result.__dict__))
    ctl.close()


async def _send_lines(
    url: str, tokens: list[str], topic: str, rate: float, start_at: float, t0: float, t1: float
) -> SenderResult:
    result = SenderResult()
    clients = [
        HybridconClient(url, token, reconnect=False, request_timeout=60.0) for token in tokens
    ]
    await asyncio.gather(*(client.connect() for client in clients))
    each = rate / len(clients)

    async def send_one(client: HybridconClient, sent: float) -> None:
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

    async def one_sender(client: HybridconClient, seed: int) -> None:
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
