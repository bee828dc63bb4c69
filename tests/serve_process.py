"""``hybridcon serve`` as a child process for the tests that need a real process: the
start line's port, the collected stderr, SIGTERM at the end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from hybridcon.settings import Settings

HYBRIDCON = [sys.executable, "-m", "hybridcon.cli"]
REPO = Path(__file__).resolve().parents[1]
RUNNING = re.compile(r"is running at http://localhost:(\d+)")
START_SECONDS = 60


def serve_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a ``serve`` process for ``settings`` (test database, no grace,
    JSON logs), with ``extra`` ``HYBRIDCON_*`` values; an empty value removes one."""
    env = {
        **os.environ,
        "HYBRIDCON_DATA_DIR": str(settings.data_dir),
        "HYBRIDCON_DATABASE_URL": settings.database_url or "",
        "HYBRIDCON_PROGRAMME": str(settings.programme),
        "HYBRIDCON_SHUTDOWN_GRACE": "0",
        "HYBRIDCON_LOG_FORMAT": "json",
        "HYBRIDCON_LOG_LEVEL": "info",
        # WebRTC on the test's addresses (loopback), as in-process apps get them.
        "HYBRIDCON_ICE_ADDRESSES": json.dumps(list(settings.ice_addresses)),
        **extra,
    }
    return {name: value for name, value in env.items() if value != ""}


class Server:
    """One ``hybridcon serve`` process; its stderr is collected as it runs."""

    def __init__(self, settings: Settings, *args: str, env: Mapping[str, str] | None = None):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [*HYBRIDCON, "serve", *args],
            env=dict(env) if env is not None else serve_env(settings),
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


def cli_token(env: Mapping[str, str], *args: str) -> str:
    """A token from ``hybridcon token issue ARGS`` run with ``env`` (the node's keys)."""
    out = subprocess.run(
        [*HYBRIDCON, "token", "issue", *args],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()
