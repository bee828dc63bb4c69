"""The servers under test, each a subprocess pinned to its own core.

* ``hybridcon serve`` with a fresh data directory (embedded PostgreSQL), on a free
  loopback port; its tokens are signed in this process with the keyset file it reads.
* The bare baseline, :mod:`tests.bench.baseline_server`.

Both write their output to a log file (a pipe nobody reads could fill up and stall
the server) and are stopped with SIGTERM, then SIGKILL after a grace period.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
PROGRAMME = REPO / "config" / "sociaalwerkconferentie-2022.toml"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running server subprocess."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    tokens: list[str] = field(default_factory=list)
    sender_tokens: list[str] = field(default_factory=list)
    pgdata: Path | None = None  # the embedded PostgreSQL's cluster, for its CPU time

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds of the server process itself."""
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def helpers_cpu_seconds(self) -> float:
        """CPU seconds of the server's helper processes: its children and the embedded
        PostgreSQL (which detaches from the server, so it is found by its data directory)."""
        helpers: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.Error):
            helpers.update((p.pid, p) for p in self.ps.children(recursive=True))
        if self.pgdata is not None:
            mark = str(self.pgdata)
            for proc in psutil.process_iter(["cmdline"]):
                if any(mark in part for part in proc.info["cmdline"] or ()):
                    helpers[proc.pid] = proc
                    with contextlib.suppress(psutil.Error):
                        helpers.update((p.pid, p) for p in proc.children(recursive=True))
        total = 0.0
        for proc in helpers.values():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> int:
        """Resident set size of the server process, in bytes."""
        return int(self.ps.memory_info().rss)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text("utf-8", "replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; also reaps stray children (the embedded PostgreSQL stops
        itself when the server exits)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _wait_for_line(proc: subprocess.Popen[bytes], log_path: Path, pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + START_TIMEOUT
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            found = regex.search(log_path.read_text("utf-8", "replace"))
            if found:
                return found
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode}:\n{log_path.read_text('utf-8', 'replace')}"
            )
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not start within {START_TIMEOUT:.0f} s")


def _pin(pid: int, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(pid, {cpu})


def start_hybridcon(
    work: Path,
    *,
    flush_interval: float,
    viewers: int,
    senders: int,
    cpu: int | None,
) -> Server:
    """Start ``hybridcon serve`` with its own data directory and issue the tokens.

    Each viewer and sender token is its own person (``sub``), so the per-person
    connection cap never applies.
    """
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
        "HYBRIDCON_LOG_LEVEL": "warning",
        "HYBRIDCON_WS_FLUSH_INTERVAL": repr(flush_interval),
        # The senders post more than a person would; the viewers only listen and must
        # outlive the run without heartbeats.
        "HYBRIDCON_WS_RATE": "1000",
        "HYBRIDCON_WS_BURST": "1000",
        "HYBRIDCON_WS_IDLE_TIMEOUT": "3600",
        "HYBRIDCON_SHUTDOWN_GRACE": "0",
    }
    for name in ("HYBRIDCON_DATABASE_URL", "HYBRIDCON_REDIS_URL", "HYBRIDCON_SIGNING_KEYS_FILE"):
        env.pop(name, None)
    settings = Settings(_env_file=None, data_dir=data_dir)
    keyset = load_or_create_keyset(settings.keys_path, datetime.now(UTC))

    def issue(count: int) -> list[str]:
        now = datetime.now(UTC)
        return [
            issue_token(
                keyset,
                TokenRequest(role=Role.VIEWER, scopes=("*",), name="Bench"),
                issuer=settings.token_issuer,
                audience=settings.token_audience,
                now=now,
                default_ttl=timedelta(hours=2),
                max_ttl=settings.token_max_ttl,
            )[0]
            for _ in range(count)
        ]

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
    _pin(proc.pid, cpu)
    server = Server(f"hybridcon flush={flush_interval:g}s", proc, port, log_path)
    server.pgdata = settings.embedded_pgdata.resolve()
    try:
        _wait_for_line(proc, log_path, r"is running at")
        server.tokens = issue(viewers)
        server.sender_tokens = issue(senders)
    except BaseException:
        server.stop()
        raise
    return server


def start_baseline(work: Path, *, viewers: int, senders: int, cpu: int | None) -> Server:
    """Start the bare aiohttp baseline (it ignores the tokens' contents)."""
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "baseline.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.baseline_server", "--port", "0"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _pin(proc.pid, cpu)
    try:
        found = _wait_for_line(proc, log_path, r"listening on (\d+)")
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        raise
    server = Server("bare aiohttp baseline", proc, int(found.group(1)), log_path)
    server.tokens = [f"baseline-{i}" for i in range(viewers)]
    server.sender_tokens = [f"baseline-sender-{i}" for i in range(senders)]
    return server
