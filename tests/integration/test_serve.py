"""``hybridcon serve`` as a process: the port it reports, a port clash, SIGTERM in the log,
and what its configured logs hold after a request with an oversized credential."""

from __future__ import annotations

import json
import signal
import socket

import pytest

from serve_process import Server

pytestmark = pytest.mark.slow


def http(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_port_0_reports_the_bound_port_and_sigterm_is_logged(settings, servers):
    server = Server(settings, "--port", "0")
    servers.append(server)
    port = server.port()
    assert port != 0
    assert http(port, b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").startswith(
        b"HTTP/1.1 200"
    )
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait() == 0
    events = [e["event"] for e in server.events()]
    assert "shutdown_started" in events and "shutdown_complete" in events
    started = next(e for e in server.events() if e["event"] == "shutdown_started")
    assert started["signal"] == "SIGTERM"


def test_a_second_server_on_the_same_port_names_the_port_not_the_spool(settings, servers):
    first = Server(settings, "--port", "0")
    servers.append(first)
    port = first.port()
    # Same data directory (so the same spool) and the same port.
    second = Server(settings, "--port", str(port))
    servers.append(second)
    assert second.wait() == 1
    message = second.stderr()
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in message
    assert "spool" not in message
    assert first.proc.poll() is None  # the first one is untouched


def test_an_oversized_authorization_header_leaves_no_credential_in_the_log(settings, servers):
    server = Server(settings, "--port", "0")
    servers.append(server)
    port = server.port()
    secret = "eyJhbGciOiJFZERTQSJ9.SECRET"
    reply = http(
        port,
        b"GET /api/v1/revocations HTTP/1.1\r\nHost: h\r\n"
        + f"Authorization: Bearer {secret}".encode()
        + b"x" * 9000
        + b"\r\n\r\n",
    )
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split()[1] == b"431"
    assert json.loads(body)["error"]["code"] == "too_large"
    server.stop()
    log = server.stderr()
    assert '"event": "http_bad_request"' in log
    assert "Bearer" not in log and secret[:10] not in log
    assert "Traceback" not in log
