"""``hybridcon serve`` as a process: the port it reports, a port clash, SIGTERM in the log,
and what its configured logs hold after a request with an oversized credential."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HYBRIDCON = [sys.executable, "-m", "hybridcon.cli"]
REPO = Path(__file__).resolve().parents[2]
RUNNING = re.compile(r"is running at http://localhost:(\d+)")
START_SECONDS = 60


class Server:
    """One ``hybridcon serve`` process; its stderr is collected as it runs."""

    def __init__(self, settings, *args: str) -> None:
        env = {
            **os.environ,
            "HYBRIDCON_DATA_DIR": str(settings.data_dir),
            "HYBRIDCON_DATABASE_URL": settings.database_url,
            "HYBRIDCON_PROGRAMME": str(settings.programme),
            "HYBRIDCON_SHUTDOWN_GRACE": "0",
            "HYBRIDCON_LOG_FORMAT": "json",
            "HYBRIDCON_LOG_LEVEL": "info",
        }
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [*HYBRIDCON, "serve", *args],
            env=env,
            cwd=REPO,  # as `make run`: the word lists are relative to the repository
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def port(self) -> int:
        """The port from the first stdout line (the process has started by then)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the server prints it once it accepts
        match = RUNNING.search(line)
        assert match, f"no start line: {line!r}; stderr: {self.stderr()}"
        return int(match.group(1))

    def wait(self) -> int:
        code = self.proc.wait(timeout=START_SECONDS)
        self._reader.join(timeout=10)
        return code

    def stderr(self) -> str:
        return "".join(self._stderr)

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self._stderr if line.startswith("{")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.wait()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


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
