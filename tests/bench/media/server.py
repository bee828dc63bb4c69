"""``hybridcon serve`` as the media benchmarks run it: a subprocess pinned to one core.

Started as :mod:`tests.bench.hybridcon_process` starts it for every benchmark (fresh
data directory with embedded PostgreSQL, HLS segments and recordings; a free loopback
port; logs to a file, host candidates on loopback as for every benchmark's server), with
the WHEP cap raised out of the way and no ICE servers.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.bench.hybridcon_process import REPO, log_tail, start_hybridcon_process, stop

__all__ = ["REPO", "SIX_STAGES", "STAGES", "MediaServer", "start_server"]

# Streamed stages of the programme: the plenary and the six theme livestreams.
STAGES = ("plenary", "diversiteit", "impact", "nabijheid", "eerstelijn", "identiteit")
SIX_STAGES = ("diversiteit", "impact", "nabijheid", "eerstelijn", "identiteit", "politiserend")


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
        return log_tail(self.log_path, lines)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL (the embedded PostgreSQL stops when the server exits)."""
        stop(self.proc)


def start_server(
    work: Path, *, cpu: int | None, max_viewers: int = 1000, log_level: str = "warning"
) -> MediaServer:
    """Start ``hybridcon serve`` on a fresh data directory under ``work``, pinned to ``cpu``."""
    from hybridcon.core.tokens import Role

    running = start_hybridcon_process(
        work,
        env={
            "HYBRIDCON_LOG_LEVEL": log_level,
            "HYBRIDCON_WHEP_MAX_VIEWERS": str(max_viewers),
            "HYBRIDCON_ICE_SERVERS": "[]",
        },
        cpu=cpu,
    )
    try:
        broadcaster, viewer = (
            running.issue(role, "Media bench", 1)[0] for role in (Role.BROADCASTER, Role.VIEWER)
        )
    except BaseException:
        stop(running.proc)
        raise
    return MediaServer(
        running.proc, running.port, running.data_dir, running.log_path, broadcaster, viewer
    )
