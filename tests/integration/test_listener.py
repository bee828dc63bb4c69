"""hybridcon's own listener, as ``hybridcon serve`` runs it, against real sockets on 127.0.0.1:
the header-read timeout, the connection caps, and the JSON contract for what aiohttp's
parser refuses (with no credential in the logs)."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import pytest
import structlog

from hybridcon.core.ratelimit import TokenBucket
from hybridcon.listener import Serving
from support import eventually


class Raw:
    """One raw TCP connection to the node, for bytes no HTTP client would send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, serving: Serving) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", serving.settings.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, timeout: float) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names), body."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def closed_by_server(self, timeout: float) -> bool:
        """Whether the server closes the connection within ``timeout`` (EOF or reset)."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), timeout)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return rest == b""

    def close(self) -> None:
        self.writer.close()


GET = b"GET /healthz HTTP/1.1\r\nHost: hybridcon\r\n\r\n"


async def test_a_slow_request_head_gets_a_json_408_and_is_closed(served):
    serving = await served(http_header_timeout=0.5)
    slow = [await Raw.open(serving) for _ in range(20)]
    started = time.monotonic()
    for conn in slow:
        # A slowloris: the request line and one header, never the blank line that ends it.
        await conn.send(b"GET /healthz HTTP/1.1\r\nHost: hybridcon\r\n")
    for conn in slow:
        status, headers, body = await conn.response(timeout=10)
        assert status == 408
        assert headers["content-type"].startswith("application/json")
        error = json.loads(body)["error"]
        assert error["code"] == "invalid"
        assert "did not arrive within 0.5 s" in error["message"]
        assert await conn.closed_by_server(timeout=5)
    assert time.monotonic() - started >= 0.5
    await eventually(lambda: serving.listener.caps.open == 0, what="every slow socket released")
    metrics = await _metrics(serving)
    assert 'hybridcon_http_connections_closed_total{reason="header_timeout"} 20.0' in metrics


async def test_a_connection_that_sends_nothing_is_closed_without_a_reply(served):
    serving = await served(http_header_timeout=0.5)
    silent = await Raw.open(serving)
    assert await silent.closed_by_server(timeout=10)


async def test_the_timer_restarts_for_each_request_and_spares_idle_kept_alive_ones(served):
    serving = await served(http_header_timeout=0.5)
    conn = await Raw.open(serving)
    await conn.send(GET)
    status, _, _ = await conn.response(timeout=5)
    assert status == 200
    # Idle after a response (nothing of a next request sent): kept alive past the timeout.
    assert not await _closed_within(conn, 1.5)
    await conn.send(GET)
    status, _, _ = await conn.response(timeout=5)
    assert status == 200
    # The next request starts and stalls: its head gets the timeout of its own.
    await conn.send(b"GET /healthz HTTP/1.1\r\n")
    status, _, _ = await conn.response(timeout=10)
    assert status == 408
    assert await conn.closed_by_server(timeout=5)


async def _closed_within(conn: Raw, seconds: float) -> bool:
    # Reads with a deadline: data or EOF before it means the server acted.
    try:
        data = await asyncio.wait_for(conn.reader.read(1), seconds)
    except TimeoutError:
        return False
    return data == b""


async def _metrics(serving: Serving) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{serving.settings.port}/metrics") as resp,
    ):
        return await resp.text()


async def test_connections_over_the_per_address_cap_get_a_json_503(served):
    serving = await served(http_max_connections_per_address=3, reverse_proxies=[])
    held = [await Raw.open(serving) for _ in range(3)]
    await eventually(lambda: serving.listener.caps.open == 3, what="three connections admitted")
    extra = await Raw.open(serving)
    status, headers, body = await extra.response(timeout=5)
    assert status == 503
    assert headers["retry-after"] == "5"
    error = json.loads(body)["error"]
    assert error["code"] == "unavailable"
    assert "maximum of 3 connections" in error["message"]
    assert await extra.closed_by_server(timeout=5)
    # One goes: there is room again.
    held.pop().close()
    await eventually(lambda: serving.listener.caps.open == 2, what="a closed one released")
    again = await Raw.open(serving)
    await again.send(GET)
    status, _, _ = await again.response(timeout=5)
    assert status == 200
    for conn in [*held, again]:
        conn.close()
    await eventually(lambda: serving.listener.caps.open == 0, what="all released")
    assert 'hybridcon_http_connections_closed_total{reason="address_limit"} 1.0' in (
        await _metrics(serving)
    )


async def test_a_reverse_proxy_is_held_only_to_the_total(served):
    serving = await served(
        http_max_connections_per_address=2,
        http_max_connections=4,
        reverse_proxies=["127.0.0.0/8"],
    )
    held = [await Raw.open(serving) for _ in range(4)]
    await eventually(lambda: serving.listener.caps.open == 4, what="four connections admitted")
    for conn in held[:3]:  # over the per-address cap of 2: admitted, as from the proxy
        await conn.send(GET)
        status, _, _ = await conn.response(timeout=5)
        assert status == 200
    over = await Raw.open(serving)
    status, _, body = await over.response(timeout=5)
    assert status == 503
    assert "maximum of 4 connections" in json.loads(body)["error"]["message"]
    for conn in held:
        conn.close()


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        # A header over aiohttp's 8,190-byte limit, carrying a credential.
        (
            b"GET /api/v1/revocations HTTP/1.1\r\nHost: h\r\n"
            b"Authorization: Bearer SECRET-TOKEN-" + b"x" * 9000 + b"\r\n\r\n",
            431,
            "too_large",
        ),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 431, "too_large"),
        (b"GET /healthz HTTP/1.1\r\nBad Header SECRET-TOKEN-y\r\n\r\n", 400, "invalid"),
        (b"GET /healthz HTTP/9.9 SECRET-TOKEN-z\r\n\r\n", 400, "invalid"),
    ],
)
async def test_what_the_parser_refuses_gets_the_json_contract_and_no_credential_is_logged(
    served, caplog, raw, status, code
):
    serving = await served()
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        conn = await Raw.open(serving)
        await conn.send(raw)
        got, headers, body = await conn.response(timeout=5)
        assert await conn.closed_by_server(timeout=5)
    assert got == status
    assert headers["content-type"].startswith("application/json")
    assert len(headers["x-request-id"]) == 32
    error = json.loads(body)["error"]
    assert error["code"] == code
    assert "SECRET" not in error["message"]
    logged = [e for e in events if e["event"] == "http_bad_request"]
    assert [e["status"] for e in logged] == [status]
    assert logged[0]["request_id"] == headers["x-request-id"]
    everything = repr(events) + caplog.text
    assert "SECRET-TOKEN" not in everything
    assert "Traceback" not in everything


async def test_a_flood_of_bad_requests_is_logged_sparingly_and_counted_fully(served):
    serving = await served()
    # A bucket that will not refill during the test: exactly its burst gets logged.
    serving.listener.bad_request_log = TokenBucket.full(1e-6, 3, time.monotonic())
    with structlog.testing.capture_logs() as events:
        for _ in range(10):
            conn = await Raw.open(serving)
            await conn.send(b"GET /healthz HTTP/9.9\r\n\r\n")
            status, _, _ = await conn.response(timeout=5)
            assert status == 400
            conn.close()
        serving.listener.bad_request_log = TokenBucket.full(1e-6, 1, time.monotonic())
        conn = await Raw.open(serving)
        await conn.send(b"GET /healthz HTTP/9.9\r\n\r\n")
        await conn.response(timeout=5)
        conn.close()
    logged = [e for e in events if e["event"] == "http_bad_request"]
    assert [e["suppressed"] for e in logged] == [0, 0, 0, 7]
    await eventually(lambda: serving.listener.caps.open == 0, what="all released")
    assert 'hybridcon_http_connections_closed_total{reason="bad_request"} 11.0' in (
        await _metrics(serving)
    )
