"""Connections per process and the reconnect storm (issues 13 and 14).

``python -m tests.bench.connections sockets``: N viewers (19,000 by default) on one
process, subscribed and idle, then chat at M lines/s (5): failures, p50/p99 and RSS per
idle connection, for the bare aiohttp baseline and hybridcon in the same run (the fan-out
benchmark's runner and load generator, :func:`tests.bench.fanout.run_one`).

``python -m tests.bench.connections storm``: N viewers (10,000) that come back as the
client SDK does (:func:`tests.bench.loadgen.storm_process`: backoff with full jitter,
``subscribe`` with ``since``) while chat runs at M lines/s; the node is killed with
SIGKILL and a new process started on the same data directory and port. It prints the
time until every viewer is back and caught up, the lines lost (each viewer checks that it
holds every sequenced message, live or in ``missed``), and the server's CPU per rejoin
(handshake + auth + subscribe). With ``--nodes 3``: three nodes over Valkey, the second
killed, its viewers coming back to the others.

A benchmark, not a test: the exit status is 0 whatever the figures (docs/benchmarks.md
has the runs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
from tests.bench.fanout import RunResult, run_one
from tests.bench.hybridcon_process import HybridconProcess, start_hybridcon_process, stop
from tests.bench.loadgen import sender_process, storm_process
from tests.bench.servers import Server, start_baseline, start_hybridcon, start_hybridcon_nodes

TOPIC = "stage:plenary"
VIEWERS_PER_PROCESS = 1250
# The issue's goals.
GOAL_SOCKETS = 19_000
GOAL_KIB_PER_CONN = 14.0
GOAL_BACK_SECONDS = 10.0
FD_LIMIT = 20_000  # the open-file limit the goal is stated for
STORM_TIMEOUT = 180.0
SETUP_TIMEOUT = 600.0

# A node as the fan-out benchmark starts one (tests.bench.servers), for as many sockets as
# its open-file limit allows (hybridcon lowers the cap to fit it).
NODE_ENV = {
    "HYBRIDCON_WS_RATE": "1000",
    "HYBRIDCON_WS_BURST": "1000",
    "HYBRIDCON_WS_IDLE_TIMEOUT": "3600",
    "HYBRIDCON_HTTP_MAX_CONNECTIONS": str(FD_LIMIT),
}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _recv(conn: Connection, timeout: float, what: str) -> Any:
    if not conn.poll(timeout):
        raise TimeoutError(f"no answer from {what} within {timeout:.0f} s")
    return conn.recv()


def _cpus() -> tuple[int | None, int | None]:
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


def fit_open_files(wanted: int) -> int:
    """Raise this process's open-file limit (its children inherit it) to ``wanted`` if
    it is lower and this process may; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _header(kind: str, args: argparse.Namespace, argv: list[str]) -> str:
    return (
        f"# connections benchmark ({kind}), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"load average {_load()}\n"
        f"# command: python -m tests.bench.connections {' '.join(argv)}\n"
        f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Linux {platform.release()}, Python {platform.python_version()}; server pinned to "
        f"core {args.server_cpu}, generator to core {args.generator_cpu}; open-file limit "
        f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"
    )


# --- sockets: N idle viewers on one process, then chat ----------------------------------


def sockets(args: argparse.Namespace, argv: list[str]) -> int:
    print(_header("sockets", args, argv), flush=True)
    # The server processes inherit these (as the fan-out benchmark's flush settings).
    os.environ.update({"HYBRIDCON_HTTP_MAX_CONNECTIONS": str(FD_LIMIT)})
    run_args = argparse.Namespace(
        viewers=args.viewers,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        settle=args.settle,
        procs=max(1, math.ceil(args.viewers / VIEWERS_PER_PROCESS)),
        drain_max=30.0,
        join_rush=0,
        server_cpu=args.server_cpu,
        generator_cpu=args.generator_cpu,
    )
    senders = max(2, math.ceil(args.rate / 5))
    results: list[tuple[RunResult, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="hybridcon-sockets-") as tmp:
        for index, kind in enumerate(("baseline", "hybridcon")):
            if kind in args.skip:
                continue
            work = Path(tmp) / kind
            work.mkdir()
            _log(f"starting {kind}")
            server: Server
            if kind == "baseline":
                server = start_baseline(
                    work, viewers=args.viewers, senders=senders, cpu=args.server_cpu
                )
            else:
                server = start_hybridcon(
                    work,
                    flush_interval=0.01,
                    viewers=args.viewers,
                    senders=senders,
                    cpu=args.server_cpu,
                )
                server.name = "hybridcon"
            load_before = os.getloadavg()[0]
            try:
                result = run_one(server, run_args, index)
            except Exception as exc:
                _log(f"{server.name} failed: {exc!r}\n{server.log_tail()}")
                result = RunResult(server=server.name, viewers=args.viewers, kind=kind)
                result.notes.append(f"run failed: {exc!r}")
            finally:
                server.stop()
            results.append((result, load_before, os.getloadavg()[0]))
    print()
    print(sockets_report(results, args), flush=True)
    if args.json:
        payload = [
            {**asdict(r), "kib_per_conn": r.kib_per_conn, "loss": r.loss} for r, _, _ in results
        ]
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


def sockets_report(results: list[tuple[RunResult, float, float]], args: argparse.Namespace) -> str:
    lines = [
        f"{args.viewers:,} viewers on one process, subscribed and idle, then "
        f"{args.rate:g} lines/s for {args.duration:g} s:",
        "",
        "| server | connected | failed | closed by server | lines lost | p50 / p99 ms "
        "| RSS KiB per idle connection | kernel KiB per socket | load avg before / after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r, before, after in results:
        p50 = f"{r.p50_ms:.0f}" if r.p50_ms is not None else "–"
        p99 = f"{r.p99_ms:.0f}" if r.p99_ms is not None else "–"
        kib = f"{r.kib_per_conn:.2f}" if r.kib_per_conn is not None else "–"
        kernel = f"{r.kernel_kib_per_socket:.1f}" if r.kernel_kib_per_socket is not None else "–"
        lines.append(
            f"| {r.server} | {r.connected:,} | {r.failed:,} | {r.closed_by_server:,} "
            f"| {r.loss:,} | {p50} / {p99} | {kib} | {kernel} | {before:.2f} / {after:.2f} |"
        )
    for r, _, _ in results:
        for note in r.notes:
            lines.append(f"  note ({r.server}): {note}")
        if r.sender_errors:
            lines.append(f"  sender errors ({r.server}): {r.sender_errors}")
    by_kind = {r.kind: r for r, _, _ in results}
    h, b = by_kind.get("hybridcon"), by_kind.get("baseline")
    lines.append("")
    if h is not None and h.kib_per_conn is not None:
        if b is not None and b.kib_per_conn:
            lines.append(
                f"RSS per idle connection: hybridcon {h.kib_per_conn:.2f} KiB, "
                f"{h.kib_per_conn / b.kib_per_conn:.2f} x the bare aiohttp server's "
                f"{b.kib_per_conn:.2f} KiB"
            )
        ok = h.connected >= args.viewers and not h.failed and not h.closed_by_server
        lines.append(
            f"goal: {GOAL_SOCKETS:,} sockets on one process, no failure: "
            + (
                f"{'MET' if ok and args.viewers >= GOAL_SOCKETS else 'met at this size'}"
                if ok
                else f"MISSED ({h.connected:,} connected, {h.failed:,} failed, "
                f"{h.closed_by_server:,} closed)"
            )
            + (f"; p99 {h.p99_ms:.0f} ms at {args.rate:g} lines/s" if h.p99_ms else "")
        )
        met = h.kib_per_conn <= GOAL_KIB_PER_CONN
        lines.append(
            f"goal: <= {GOAL_KIB_PER_CONN:g} KiB RSS per idle connection: "
            + ("MET" if met else "MISSED")
            + f" ({h.kib_per_conn:.2f} KiB"
            + ("" if met else f", {h.kib_per_conn - GOAL_KIB_PER_CONN:.2f} KiB over")
            + ")"
        )
    lines.append("(a benchmark: the exit status is 0 whatever the figures)")
    return "\n".join(lines)


# --- the storm: kill the node, viewers come back with since ------------------------------


@dataclass
class Nodes:
    """The servers of a storm run: one node (started again after the kill) or several
    over Valkey (one killed for good)."""

    procs: list[subprocess.Popen[bytes]]
    ports: list[int]
    tokens: list[str]
    sender_tokens: list[str]
    helpers: Server | None = None  # several nodes: their NodesServer (Valkey, stopping)
    single: HybridconProcess | None = None
    work: Path | None = None
    restarted: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        for proc in self.restarted:
            stop(proc)
        if self.helpers is not None:
            self.helpers.stop()
        else:
            for proc in self.procs:
                stop(proc)


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def _start_nodes(work: Path, args: argparse.Namespace, senders: int) -> Nodes:
    from hybridcon.core.tokens import Role

    if args.nodes == 1:
        single = start_hybridcon_process(work, env=NODE_ENV, cpu=args.server_cpu)
        try:
            tokens = single.issue(Role.VIEWER, "Storm", args.viewers)
            sender_tokens = single.issue(Role.VIEWER, "Storm", senders)
        except BaseException:
            stop(single.proc)
            raise
        return Nodes([single.proc], [single.port], tokens, sender_tokens, single=single, work=work)
    os.environ.update({"HYBRIDCON_HTTP_MAX_CONNECTIONS": str(FD_LIMIT)})
    several = start_hybridcon_nodes(
        work,
        nodes=args.nodes,
        flush_interval=0.01,
        viewers=args.viewers,
        senders=senders,
        cpu=args.server_cpu,
    )
    return Nodes(
        [several.proc, *several.others],
        list(several.viewer_ports),
        several.tokens,
        several.sender_tokens,
        helpers=several,
    )


@dataclass
class StormResult:
    viewers: int = 0
    nodes: int = 1
    first_joined: int = 0
    first_join_s: float = 0.0
    first_join_cpu_ms: float = 0.0  # server CPU per first join, paced
    killed_viewers: int = 0  # viewers whose connection the kill cut
    restart_s: float | None = None  # kill -> the new process accepting (one node)
    back_from_kill_s: float | None = None
    back_from_ready_s: float | None = None
    rejoins: int = 0
    rejoin_p50_s: float | None = None
    rejoin_p99_s: float | None = None
    rejoin_cpu_ms: float | None = None  # server CPU per rejoin, all of it
    # ... less the steady fan-out to the viewers already back (steady_cpu x live seconds)
    rejoin_own_cpu_ms: float | None = None
    steady_cpu_ms_per_viewer_s: float = 0.0  # before the kill, everyone connected, chat on
    failed_attempts: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    service_p50_s: float | None = None  # the successful attempt: connect -> caught up
    service_p99_s: float | None = None
    service_max_s: float | None = None
    resets: int = 0
    lost: int = 0  # (viewer, acknowledged line) pairs the viewer does not hold
    viewers_missing: int = 0
    duplicates: int = 0
    lines_acked: int = 0
    lines_during: int = 0  # acknowledged lines sent between the kill and all back
    sender_errors: dict[str, int] = field(default_factory=dict)
    load: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _swarm_reports(
    swarms: list[tuple[multiprocessing.process.BaseProcess, Connection]],
) -> list[dict[str, Any]]:
    out = []
    for proc, conn in swarms:
        conn.send(("report",))
        out.append(_recv(conn, 30.0, proc.name or "viewers"))
    return out


def storm(args: argparse.Namespace, argv: list[str]) -> int:
    print(_header("storm", args, argv), flush=True)
    ctx = multiprocessing.get_context("fork")
    result = StormResult(viewers=args.viewers, nodes=args.nodes)
    senders = max(2, math.ceil(args.rate / 5))
    procs = max(args.nodes, math.ceil(args.viewers / VIEWERS_PER_PROCESS))
    swarms: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    sender: multiprocessing.process.BaseProcess | None = None
    profiler: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="hybridcon-storm-") as tmp:
        work = Path(tmp)
        _log(f"starting {args.nodes} node(s)")
        nodes = _start_nodes(work, args, senders)
        try:
            result.load.append(f"start {_load()}")
            node_pids = [p.pid for p in nodes.procs]
            shares = [nodes.tokens[i::procs] for i in range(procs)]
            cpu0 = _cpu(node_pids)
            started = time.monotonic()
            for i, tokens in enumerate(shares):
                here, there = ctx.Pipe()
                swarm = ctx.Process(
                    target=storm_process,
                    args=(
                        there,
                        "127.0.0.1",
                        nodes.ports,
                        f"127.{40 + i}.0",
                        tokens,
                        TOPIC,
                        args.generator_cpu,
                        i,
                    ),
                    name=f"storm-viewers-{i}",
                    daemon=True,
                )
                swarm.start()
                there.close()
                swarms.append((swarm, here))
            for proc, conn in swarms:
                _, summary = _recv(conn, SETUP_TIMEOUT, proc.name or "viewers")
                result.first_joined += summary["first_joined"]
            result.first_join_s = time.monotonic() - started
            result.first_join_cpu_ms = (_cpu(node_pids) - cpu0) / max(1, result.first_joined) * 1e3
            _log(f"{result.first_joined} viewers subscribed in {result.first_join_s:.1f} s")

            # Chat from the senders (on the first node, which is never the one killed when
            # there are several), from now until a while after the kill.
            start_at = time.monotonic() + 1.0
            kill_at = start_at + args.before
            t1 = kill_at + args.chat_after
            here, there = ctx.Pipe()
            sender = ctx.Process(
                target=sender_process,
                args=(
                    there,
                    f"ws://127.0.0.1:{nodes.ports[0]}/ws",
                    nodes.sender_tokens,
                    TOPIC,
                    args.rate,
                    start_at,
                    start_at,
                    t1,
                    args.generator_cpu,
                    "hybridcon",
                    True,
                ),
                name="senders",
                daemon=True,
            )
            sender.start()
            there.close()
            # The steady cost of the chat's fan-out (and the node's periodic work) per
            # viewer and second, everyone connected: subtracted from the storm's CPU below,
            # so that what is left is the rejoins' own.
            time.sleep(max(0.0, start_at + min(1.0, args.before / 2) - time.monotonic()))
            steady0, steady_t0 = _cpu(node_pids), time.monotonic()
            time.sleep(max(0.0, kill_at - time.monotonic()))
            result.steady_cpu_ms_per_viewer_s = (
                (_cpu(node_pids) - steady0)
                / max(1e-9, time.monotonic() - steady_t0)
                / max(1, result.first_joined)
                * 1e3
            )

            victim = 0 if args.nodes == 1 else 1
            victim_proc = nodes.procs[victim]
            survivors = [p.pid for i, p in enumerate(nodes.procs) if i != victim]
            live_before = sum(r["live"] for r in _swarm_reports(swarms))
            losses_before = sum(r["losses"] for r in _swarm_reports(swarms))
            result.load.append(f"kill {_load()}")
            _log(f"SIGKILL node {victim} (pid {victim_proc.pid}), {live_before} viewers live")
            surv_cpu0 = _cpu(survivors)
            killed = time.monotonic()
            victim_proc.kill()
            victim_proc.wait(10)
            ready: float | None = None
            cpu_ready = 0.0
            new_pids: list[int] = []
            if args.nodes == 1:
                assert nodes.single is not None
                again = start_hybridcon_process(
                    work,
                    env=NODE_ENV,
                    cpu=args.server_cpu,
                    log_name="hybridcon-again.log",
                    port=nodes.ports[0],
                )
                nodes.restarted.append(again.proc)
                ready = time.monotonic()
                result.restart_s = ready - killed
                new_pids = [again.proc.pid]
                cpu_ready = _cpu(new_pids)
                _log(f"new process accepting {result.restart_s:.1f} s after the kill")
                if args.profile:
                    profiler = subprocess.Popen(
                        [
                            str(Path(sys.executable).parent / "py-spy"),
                            "record",
                            "--pid",
                            str(again.proc.pid),
                            "--rate",
                            "200",
                            "--format",
                            "raw",
                            "--output",
                            str(args.profile),
                            "--nonblocking",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
            # Until every viewer whose connection the kill cut is back and caught up.
            deadline = killed + STORM_TIMEOUT
            live_seconds = 0.0  # viewers live on the surviving or new node(s), x seconds
            last_poll, last_live = (ready or killed), 0
            while True:
                reports = _swarm_reports(swarms)
                now = time.monotonic()
                if args.nodes > 1 or ready is not None:
                    live_seconds += last_live * (now - last_poll)
                last_poll, last_live = now, sum(r["live"] for r in reports)
                losses = sum(r["losses"] for r in reports) - losses_before
                rejoins = sum(r["rejoins"] for r in reports)
                live = sum(r["live"] for r in reports)
                if losses > 0 and rejoins >= losses and live >= args.viewers:
                    break
                if time.monotonic() > deadline:
                    result.notes.append(
                        f"not all back after {STORM_TIMEOUT:.0f} s: {live} live, "
                        f"{rejoins} of {losses} rejoined"
                    )
                    break
                time.sleep(0.1)
            result.load.append(f"all back {_load()}")
            if profiler is not None:
                profiler.send_signal(2)  # SIGINT: py-spy writes its file
                with contextlib.suppress(subprocess.TimeoutExpired):
                    profiler.wait(30)
            result.killed_viewers = losses
            result.rejoins = rejoins
            last_back = max(r["last_back_at"] for r in reports)
            if rejoins:
                result.back_from_kill_s = last_back - killed
                if ready is not None:
                    result.back_from_ready_s = last_back - ready
            if args.nodes == 1:
                storm_cpu = _cpu(new_pids) - cpu_ready
            else:
                storm_cpu = _cpu(survivors) - surv_cpu0
            result.rejoin_cpu_ms = storm_cpu / max(1, rejoins) * 1e3
            fanout = result.steady_cpu_ms_per_viewer_s * live_seconds / 1e3
            result.rejoin_own_cpu_ms = max(0.0, storm_cpu - fanout) / max(1, rejoins) * 1e3

            # The senders finish; then every viewer must hold every message up to the last.
            _log("waiting for the senders")
            _, sent = _recv(here, t1 - time.monotonic() + 120, "senders")
            result.lines_acked = len(sent["published"])
            result.lines_during = sum(1 for t in sent["published"] if killed <= t <= last_back)
            result.sender_errors = sent["errors"]
            # Every viewer must hold every acknowledged line sent after it first
            # subscribed (live or in `missed`); the last ones may still be on their way.
            acked = sorted(sent["published"])
            drain_until = time.monotonic() + 15
            while True:
                checks = []
                for proc, conn in swarms:
                    conn.send(("check", acked))
                    checks.append(_recv(conn, 60.0, proc.name or "viewers"))
                result.lost = sum(c["missing"] for c in checks)
                result.viewers_missing = sum(c["viewers_missing"] for c in checks)
                if result.lost == 0 or time.monotonic() > drain_until:
                    break
                time.sleep(0.5)
            finals = []
            for proc, conn in swarms:
                conn.send(("final",))
                finals.append(_recv(conn, 30.0, proc.name or "viewers"))
            result.resets = sum(f["resets"] for f in finals)
            result.duplicates = sum(f["duplicates"] for f in finals)
            result.attempts = sum(f["attempts"] for f in finals)
            failed: Counter[str] = Counter()
            for f in finals:
                failed.update(f["failed_attempts"])
            result.failed_attempts = dict(failed.most_common(6))
            service = sorted(s for f in finals for s in f["rejoin_service_seconds"])
            if service:
                result.service_p50_s = service[len(service) // 2]
                result.service_p99_s = service[min(len(service) - 1, int(len(service) * 0.99))]
                result.service_max_s = service[-1]
            seconds = sorted(s for f in finals for s in f["rejoin_seconds"])
            if seconds:
                result.rejoin_p50_s = seconds[len(seconds) // 2]
                result.rejoin_p99_s = seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]
            never = sum(f["viewers"] - f["first_joined"] for f in finals)
            if never:
                result.notes.append(f"{never} viewers never subscribed")
        finally:
            for _, conn in swarms:
                with contextlib.suppress(OSError):
                    conn.send(("stop",))
            for proc, _ in swarms:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
            if sender is not None and sender.is_alive():
                sender.kill()
            if profiler is not None and profiler.poll() is None:
                profiler.kill()
            nodes.stop()
    print()
    print(storm_report(result, args), flush=True)
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))
    if args.profile and args.profile.exists():
        print()
        print(profile_summary(args.profile), flush=True)
    return 0


def storm_report(r: StormResult, args: argparse.Namespace) -> str:
    where = (
        "one node, killed with SIGKILL and started again on the same data directory and port"
        if r.nodes == 1
        else f"{r.nodes} nodes over Valkey, node 1 killed with SIGKILL, its viewers coming "
        "back to the others"
    )
    lines = [
        f"Reconnect storm: {r.viewers:,} viewers ({where}); chat at {args.rate:g} lines/s "
        f"from {args.before:g} s before the kill to {args.chat_after:g} s after it.",
        "",
        f"- first joins (paced, {len(range(0, r.viewers, VIEWERS_PER_PROCESS))} swarms): "
        f"{r.first_joined:,} in {r.first_join_s:.1f} s, server CPU {r.first_join_cpu_ms:.2f} ms "
        "per join",
        f"- viewers cut by the kill: {r.killed_viewers:,}; rejoined with since: {r.rejoins:,}",
    ]
    if r.restart_s is not None:
        lines.append(f"- kill -> new process accepting: {r.restart_s:.1f} s")
    back = []
    if r.back_from_kill_s is not None:
        back.append(f"{r.back_from_kill_s:.1f} s after the kill")
    if r.back_from_ready_s is not None:
        back.append(f"{r.back_from_ready_s:.1f} s after the new process accepted")
    lines.append(f"- all back and caught up: {', '.join(back) or 'not measured'}")
    if r.rejoin_p50_s is not None and r.rejoin_p99_s is not None:
        lines.append(
            f"- each viewer's loss -> caught up: p50 {r.rejoin_p50_s:.1f} s, "
            f"p99 {r.rejoin_p99_s:.1f} s (the SDK's backoff: "
            "uniform below 0.2 s, doubling per failed attempt, at most 10 s)"
        )
    if r.rejoin_cpu_ms is not None:
        what = "the new process's" if r.nodes == 1 else "the surviving nodes'"
        lines.append(
            f"- server CPU per rejoin (handshake + auth + subscribe with since, and the chat's "
            f"fan-out meanwhile): {r.rejoin_cpu_ms:.2f} ms ({what}); without that fan-out "
            f"(the steady {r.steady_cpu_ms_per_viewer_s * 1e3:.1f} µs per viewer-second before "
            f"the kill, times the viewers back): {r.rejoin_own_cpu_ms or 0:.2f} ms"
        )
    lines.append(
        f"- reconnect attempts {r.attempts:,}; failed: "
        + (", ".join(f"{k} {v:,}" for k, v in r.failed_attempts.items()) or "none")
    )
    if r.service_p50_s is not None:
        lines.append(
            f"- the successful attempt alone (connect -> handshake, auth, subscribe -> caught "
            f"up): p50 {r.service_p50_s * 1e3:.0f} ms, p99 {(r.service_p99_s or 0) * 1e3:.0f} ms, "
            f"max {(r.service_max_s or 0) * 1e3:.0f} ms"
        )
    lines.append(
        f"- lines acknowledged {r.lines_acked:,} ({r.lines_during:,} sent between the kill and "
        f"all back); lost {r.lost:,} line deliveries ({r.viewers_missing:,} viewers missing "
        f"any); resets {r.resets:,}; duplicates dropped {r.duplicates:,}"
    )
    if r.sender_errors:
        lines.append(f"- senders' refused or cut requests: {r.sender_errors}")
    lines.append(f"- load average (1, 5, 15 min): {'; '.join(r.load)}")
    for note in r.notes:
        lines.append(f"  note: {note}")
    lines.append("")
    measured = r.back_from_ready_s if r.back_from_ready_s is not None else r.back_from_kill_s
    if measured is not None:
        met = measured <= GOAL_BACK_SECONDS and not r.lost and not r.resets
        lines.append(
            f"goal: all back and caught up within {GOAL_BACK_SECONDS:g} s "
            + ("of the new process accepting" if r.nodes == 1 else "of the kill")
            + f", nothing lost: {'MET' if met else 'MISSED'} ({measured:.1f} s, lost {r.lost:,}"
            + (f", resets {r.resets:,}" if r.resets else "")
            + ")"
        )
    lines.append("(a benchmark: the exit status is 0 whatever the figures)")
    return "\n".join(lines)


def profile_summary(path: Path, top: int = 30) -> str:
    """py-spy's collapsed stacks as the functions with the largest share of the busy
    samples (inclusive: a function counts once per sample it is on the stack of; samples
    waiting in ``epoll`` are idle and left out)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    busy = idle = 0
    for line in path.read_text("utf-8", "replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames[-1].startswith(("EpollSelector.select", "select (")):
            idle += count
            continue
        busy += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    if not busy:
        return "profile: no busy samples"
    lines = [
        f"profile of the new process from its start until all were back: {busy} busy "
        f"samples ({idle} idle); share of the busy ones, inclusive / own:"
    ]
    for frame, count in inclusive.most_common(top):
        lines.append(f"  {count / busy:6.1%} {own[frame] / busy:6.1%}  {frame}")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.connections", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="kind", required=True)
    s = sub.add_parser("sockets", help="N idle viewers on one process, then chat")
    s.add_argument("-n", "--viewers", type=int, default=GOAL_SOCKETS)
    s.add_argument("-m", "--rate", type=float, default=5.0, help="chat lines/s (default 5)")
    s.add_argument("--duration", type=float, default=20.0, help="measured seconds (20)")
    s.add_argument("--warmup", type=float, default=5.0, help="seconds of chat before (5)")
    s.add_argument("--settle", type=float, default=2.0, help="seconds before each RSS read")
    s.add_argument(
        "--skip", default="", help="servers to leave out: baseline and/or hybridcon (comma)"
    )
    t = sub.add_parser("storm", help="kill the node under N viewers; time until all are back")
    t.add_argument("-n", "--viewers", type=int, default=10_000)
    t.add_argument("-m", "--rate", type=float, default=5.0, help="chat lines/s (default 5)")
    t.add_argument("--nodes", type=int, default=1, help="1, or several over Valkey (3)")
    t.add_argument("--before", type=float, default=5.0, help="seconds of chat before the kill")
    t.add_argument(
        "--chat-after", type=float, default=20.0, help="seconds of chat after the kill (20)"
    )
    t.add_argument(
        "--profile",
        type=Path,
        help="one node: py-spy's collapsed stacks of the new process from its start until "
        "all are back, written here and summarised",
    )
    for each in (s, t):
        each.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if not 1 <= args.viewers <= FD_LIMIT - 500:
        parser.error(f"--viewers must be 1..{FD_LIMIT - 500} (one process, {FD_LIMIT} files)")
    if not 0 < args.rate <= 100:
        parser.error("--rate must be in (0, 100]")
    if args.kind == "sockets":
        args.skip = {x.strip() for x in args.skip.split(",") if x.strip()}
        if args.skip - {"baseline", "hybridcon"}:
            parser.error("--skip: baseline and/or hybridcon")
    else:
        if not 1 <= args.nodes <= 8:
            parser.error(
                "--nodes must be 1..8 (several: one is killed, the others take its viewers)"
            )
        if args.before <= 0 or args.chat_after <= 0:
            parser.error("--before and --chat-after must be > 0")
    args.server_cpu, args.generator_cpu = _cpus()
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    fit_open_files(FD_LIMIT)
    if args.generator_cpu is not None:
        os.sched_setaffinity(0, {args.generator_cpu})
    if args.kind == "sockets":
        return sockets(args, argv)
    return storm(args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
