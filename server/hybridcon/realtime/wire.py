"""Pre-built WebSocket frames written straight to the transport: the one seam into aiohttp.

A server frame is not masked (RFC 6455 §5.1), so the bytes of one text frame are the
same for every receiver: the hub builds a frame once per fan-out and each connection's
flush writes its pending frames in a single ``transport.write``. This is what makes a
delivery cheap (realtime findings: a loopback write costs ~11 µs; ten frames in one
write cost the same as one). aiohttp itself still writes control frames (pong, close)
on the same transport; both sides write whole frames synchronously, so they never
interleave inside a frame. Compression is off on these sockets (it would need the
per-message deflate context of each receiver). ``tests/integration/test_fanout.py``
checks this against the pinned aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from aiohttp import web

OPCODE_TEXT = 0x1
_FIN = 0x80


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame carrying ``payload`` (UTF-8 JSON)."""
    length = len(payload)
    if length < 126:
        header = bytes((_FIN | OPCODE_TEXT, length))
    elif length < 1 << 16:
        header = struct.pack("!BBH", _FIN | OPCODE_TEXT, 126, length)
    else:
        header = struct.pack("!BBQ", _FIN | OPCODE_TEXT, 127, length)
    return header + payload


# The kernel's send buffer of each WebSocket, set (which turns its autotuning off; Linux
# doubles the value). Autotuned on a fast link it grows to tcp_wmem's maximum (4 MB on
# Linux by default), so a client that stopped reading had megabytes queued for it before
# ws_max_pending_bytes could close it: tests/faults/test_slow_consumer.py saw 2.3 MB
# reach a stalled socket without a 4008. 256 KiB still carries 2.5 MB/s at 100 ms.
KERNEL_SEND_BUFFER = 128 * 1024


class RawWriter:
    """Writes pre-built frames to one WebSocket's transport."""

    __slots__ = ("_protocol", "_transport")

    def __init__(self, request: web.Request) -> None:
        self._transport: asyncio.Transport | None = request.transport
        self._protocol = request.protocol
        sock = self._transport.get_extra_info("socket") if self._transport else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)

    @property
    def open(self) -> bool:
        """Whether the transport can still be written to."""
        return self._transport is not None and not self._transport.is_closing()

    @property
    def paused(self) -> bool:
        """Whether the peer is not reading fast enough (the transport's buffer is high)."""
        return bool(self._protocol.writing_paused)

    def abort(self) -> None:
        """Drop the connection at once (a peer that does not take the close frame)."""
        if self._transport is not None:
            self._transport.abort()

    def write(self, data: bytes) -> None:
        """Write one or more whole frames."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


MAX_CLOSE_REASON = 120
"""Bytes of a close reason: a close frame's payload is at most 125 bytes (RFC 6455 §5.5),
two of them the code."""


def close_reason(text: str) -> bytes:
    """``text`` as a close reason: UTF-8, cut to :data:`MAX_CLOSE_REASON` bytes at a
    character boundary (a reason that is not valid UTF-8 makes the peer fail the
    connection with 1007 instead of reading our code, RFC 6455 §8.1)."""
    raw = text.encode("utf-8")
    if len(raw) <= MAX_CLOSE_REASON:
        return raw
    return raw[:MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")
