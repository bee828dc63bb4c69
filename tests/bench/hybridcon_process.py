"""``hybridcon serve`` as a benchmark subprocess: the one way both benchmarks start it.

The realtime benchmark (:mod:`tests.bench.servers`) and the media benchmark
(:mod:`tests.bench.media.server`) each add their own settings on top of these:

* a fresh data directory (embedded PostgreSQL, HLS, recordings) and a free loopback port;
* no database, Redis or signing-key settings inherited from the caller's environment;
* output to a log file (a pipe nobody reads could fill up and stall the server);
* pinned to one core if asked, and stopped with SIGTERM, then SIGKILL after a grace period.

Tokens are signed in this process with the keyset file the server reads, as
``hybridcon token issue`` would.
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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hybridcon.core.keys import Keyset
    from hybridcon.core.tokens import Role
    from hybridcon.settings import Settings

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


def pin(pid: int, cpu: int | None) -> None:
    """Pin a process (and its future threads) to one core, if asked and possible."""
    if cpu is not None and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(pid, {cpu})


def spawn(
    module_args: list[str], log_path: Path, *, env: Mapping[str, str] | None, cpu: int | None
) -> subprocess.Popen[bytes]:
    """``python -m <module_args>`` from the repository, in its own session, output to
    ``log_path``, pinned to ``cpu``."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", *module_args],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pin(proc.pid, cpu)
    return proc


def wait_for_line(
    proc: subprocess.Popen[bytes], log_path: Path, pattern: str, what: str
) -> re.Match[str]:
    """Wait until ``proc``'s log has a line matching ``pattern``.

    Raises:
        RuntimeError: ``proc`` exited first (with its log), or ``START_TIMEOUT`` passed
            (``proc`` is then killed).
    """
    deadline = time.monotonic() + START_TIMEOUT
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            found = regex.search(log_path.read_text("utf-8", "replace"))
            if found:
                return found
        if proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with {proc.returncode}:\n{log_path.read_text('utf-8', 'replace')}"
            )
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"{what} did not start within {START_TIMEOUT:.0f} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after ``STOP_TIMEOUT`` (the embedded PostgreSQL stops itself
    when hybridcon exits)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def log_tail(log_path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log file ("" if it cannot be read)."""
    with contextlib.suppress(OSError):
        return "\n".join(log_path.read_text("utf-8", "replace").splitlines()[-lines:])
    return ""


@dataclass
class HybridconProcess:
    """A running ``hybridcon serve`` and what it needs to be talked to."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path
    settings: Settings
    keyset: Keyset

    def issue(self, role: Role, name: str, count: int) -> list[str]:
        """``count`` tokens for ``role``, each its own person (``sub``), valid 2 hours,
        for every scope."""
        from hybridcon.core.tokens import TokenRequest, issue_token

        now = datetime.now(UTC)
        return [
            issue_token(
                self.keyset,
                TokenRequest(role=role, scopes=("*",), name=name),
                issuer=self.settings.token_issuer,
                audience=self.settings.token_audience,
                now=now,
                default_ttl=timedelta(hours=2),
                max_ttl=self.settings.token_max_ttl,
            )[0]
            for _ in range(count)
        ]


def start_hybridcon_process(
    work: Path,
    *,
    env: Mapping[str, str],
    cpu: int | None,
    log_name: str = "hybridcon.log",
    port: int | None = None,
) -> HybridconProcess:
    """Start ``hybridcon serve`` on a fresh data directory under ``work`` and wait until it
    is running.

    Args:
        work: the run's folder; the server gets ``work/data`` and logs to
            ``work/hybridcon.log``. A second node started on the same folder (with
            ``HYBRIDCON_REDIS_URL`` in ``env`` and its own ``log_name``) shares that data
            directory, its embedded PostgreSQL and its keys, as ``hybridcon serve`` allows.
        env: the benchmark's own ``HYBRIDCON_*`` settings, over the common ones (the
            caller's database, Redis and key settings are never inherited).
        cpu: the core to pin the server to, or None.
        log_name: the log's file name under ``work``.
        port: the port to listen on (a node started again where a killed one was, for
            its clients to come back to); default: a free one.

    Raises:
        RuntimeError: the server exited or did not start in time.
    """
    from hybridcon.settings import Settings
    from hybridcon.store.keyfile import load_or_create_keyset

    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name
        not in ("HYBRIDCON_DATABASE_URL", "HYBRIDCON_REDIS_URL", "HYBRIDCON_SIGNING_KEYS_FILE")
    }
    full_env = {
        **inherited,
        "HYBRIDCON_DATA_DIR": str(data_dir),
        "HYBRIDCON_HOST": "127.0.0.1",
        "HYBRIDCON_PORT": str(port),
        "HYBRIDCON_PROGRAMME": str(PROGRAMME),
        "HYBRIDCON_LOG_LEVEL": "warning",
        "HYBRIDCON_SHUTDOWN_GRACE": "0",
        # WebRTC on loopback only, in every benchmark's server (tests.media_fixtures'
        # ICE_ADDRESSES): aioice alone would answer with the machine's external address.
        "HYBRIDCON_ICE_ADDRESSES": '["lo"]',
        **env,
    }
    settings = Settings(_env_file=None, data_dir=data_dir)
    keyset = load_or_create_keyset(settings.keys_path, datetime.now(UTC))
    log_path = work / log_name
    proc = spawn(["hybridcon.cli", "serve"], log_path, env=full_env, cpu=cpu)
    try:
        wait_for_line(proc, log_path, r"is running at", "hybridcon serve")
    except BaseException:
        stop(proc)
        raise
    return HybridconProcess(proc, port, data_dir, log_path, settings, keyset)
