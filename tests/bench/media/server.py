"""``hybridcon serve`` as the media benchmarks run it: a subprocess pinned to one core.

A fresh data directory (embedded PostgreSQL, HLS segments, recordings), a free loopback
port, the WHEP cap raised out of the way, logs to a file. Tokens are signed in this
process with the keyset file the server reads, as ``hybridcon token issue`` would.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.bench.media.common import pin

REPO = Path(__file__).resolve().parents[3]
PROGRAMME = REPO / "config" / "sociaalwerkconferentie-2022.toml"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 20.0

# Streamed stages of the programme: the plenary and the six theme livestreams.
STAGES = ("plenary", "diversiteit", "impact", "nabijheid", "eerstelijn", "identiteit")
SIX_STAGES = ("diversiteit", "impact", "nabijheid", "eerstelijn", "identiteit", "politiserend")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class MediaServer:
    """A running ``hybridcon serve``."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path
    broadcaster_token: str
    viewer_token: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text("utf-8", "replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL (the embedded PostgreSQL stops when the server exits)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_server(
    work: Path, *, cpu: int | None, max_viewers: int = 1000, log_level: str = "warning"
) -> MediaServer:
    """Start ``hybridcon serve`` on a fresh data directory under ``work``, pinned to ``cpu``."""
    from hybridcon.core.tokens import Role, TokenRequest, issue_token
    from hybridcon.settings import Settings
    from hybridcon.store.keyfile import load_or_create_keyset

    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "HYBRIDCON_DATA_DIR": str(data_dir),
        "HYBRIDCON_HOST": "127.0.0.1",
        "HYBRIDCON_PORT": str(port),
        "HYBRIDCON_PROGRAMME": str(PROGRAMME),
        "HYBRIDCON_LOG_LEVEL": log_level,
        "HYBRIDCON_WHEP_MAX_VIEWERS": str(max_viewers),
        "HYBRIDCON_SHUTDOWN_GRACE": "0",
        "HYBRIDCON_ICE_SERVERS": "[]",
    }
    for name in ("HYBRIDCON_DATABASE_URL", "HYBRIDCON_REDIS_URL", "HYBRIDCON_SIGNING_KEYS_FILE"):
        env.pop(name, None)
    settings = Settings(_env_file=None, data_dir=data_dir)
    keyset = load_or_create_keyset(settings.keys_path, datetime.now(UTC))

    def issue(role: Role) -> str:
        return issue_token(
            keyset,
            TokenRequest(role=role, scopes=("*",), name="Media bench"),
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            now=datetime.now(UTC),
            default_ttl=timedelta(hours=2),
            max_ttl=settings.token_max_ttl,
        )[0]

    log_path = work / "hybridcon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hybridcon.cli", "serve"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pin(proc.pid, cpu)
    server = MediaServer(
        proc, port, data_dir, log_path, issue(Role.BROADCASTER), issue(Role.VIEWER)
    )
    deadline = time.monotonic() + START_TIMEOUT
    pattern = re.compile(r"is running at")
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if pattern.search(log_path.read_text("utf-8", "replace")):
                return server
        if proc.poll() is not None:
            raise RuntimeError(
                f"hybridcon serve exited with {proc.returncode}:\n{server.log_tail()}"
            )
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"hybridcon serve did not start within {START_TIMEOUT:.0f} s")
