"""Chat fan-out: N viewers on one stage, M chat lines per second, hybridcon vs a bare loop.

One server process pinned to one core; the load generator (viewer swarms in several
processes, plus the senders) pinned to the other. Each server in the run gets the same
generator, the same N and M; the figures that matter are the ratios between them,
since absolute times drift on these shared machines.

Per server it reports: delivered chat messages per second, deliveries expected vs
received, server CPU seconds per 1,000 deliveries, p50/p99 send-to-receive latency,
RSS per idle connection, and the generator's CPU (a run is invalid when the generator
is above ~70 % of its core). The goal lines are informational: the exit status is 0
whatever the figures, as a benchmark never fails on noise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
from tests.bench.loadgen import BUCKETS, WIRES, percentile, sender_process, viewer_process
from tests.bench.servers import (
    PEERS,
    Server,
    start_hybridcon,
    start_hybridcon_nodes,
    start_peer,
)

TOPIC = "stage:plenary"
SETUP_TIMEOUT = 300.0
SENDER_TIMEOUT = 90.0
GEN_CPU_LIMIT = 70.0  # % of the generator's core above which a run is invalid

# The goals.
GOAL_VIEWERS = 5000
GOAL_RATE = 20.0
GOAL_P99_MS = 250.0
GOAL_CPU_RATIO = 0.5
GOAL_KIB_PER_CONN = 30.0
# Issue 14's goals against the peers: CPU per delivery below every peer at 5,000 x 20, and
# not above 1.2 x the best peer's at 500 x 10.
PEER_GOALS = (
    (GOAL_VIEWERS, GOAL_RATE, 1.0, "below every peer's"),
    (500, 10.0, 1.2, "<= 1.2 x the best peer's"),
)


@dataclass
class RunResult:
    """The figures of one server in one run."""

    server: str
    viewers: int
    kind: str = "hybridcon"  # or one of tests.bench.servers.PEERS
    nodes: int = 1  # hybridcon serve processes (over one Valkey when more than 1)
    connected: int = 0
    failed: int = 0
    rate: float = 0.0
    duration: float = 0.0
    lines_sent_in_window: int = 0
    lines_published_in_window: int = 0  # acknowledged, or seen by a viewer
    sender_errors: dict[str, int] = field(default_factory=dict)
    expected: int = 0
    received: int = 0  # deliveries of the window's lines, whenever they arrived
    received_in_window: int = 0  # chat deliveries that arrived during the window
    closed_by_server: int = 0
    close_codes: dict[str, int] = field(default_factory=dict)
    server_cpu_s: float = 0.0
    server_helpers_cpu_s: float = 0.0
    server_core_busy_pct: float = 0.0
    generator_cpu_s: float = 0.0
    generator_system_s: float = 0.0
    generator_core_busy_pct: float = 0.0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    reply_p50_ms: float | None = None
    rss_idle_bytes: int = 0
    rss_connected_bytes: int = 0
    slab_delta_kib: int = 0
    recv_calls_in_window: int = 0
    drain_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def delivered_per_s(self) -> float:
        return self.received_in_window / self.duration if self.duration else 0.0

    @property
    def cpu_per_1000(self) -> float | None:
        if not self.received_in_window:
            return None
        return self.server_cpu_s / self.received_in_window * 1000

    @property
    def kib_per_conn(self) -> float | None:
        if not self.connected:
            return None
        return (self.rss_connected_bytes - self.rss_idle_bytes) / self.connected / 1024

    @property
    def kernel_kib_per_socket(self) -> float | None:
        # Both ends of every connection live on this machine: two sockets each.
        if not self.connected:
            return None
        return self.slab_delta_kib / (2 * self.connected)

    @property
    def per_read(self) -> float | None:
        """Chat deliveries per socket read: how many messages each write carried (at least)."""
        if not self.recv_calls_in_window:
            return None
        return self.received_in_window / self.recv_calls_in_window

    @property
    def other_load_pct(self) -> float:
        """Busy time of the server's core not spent by the server or its database."""
        if not self.duration:
            return 0.0
        own = (self.server_cpu_s + self.server_helpers_cpu_s) / self.duration * 100
        return max(0.0, self.server_core_busy_pct - own)

    @property
    def generator_pct(self) -> float:
        return self.generator_cpu_s / self.duration * 100 if self.duration else 0.0

    @property
    def server_pct(self) -> float:
        return self.server_cpu_s / self.duration * 100 if self.duration else 0.0

    @property
    def loss(self) -> int:
        return self.expected - self.received


def _slab_kib() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("Slab:"):
                return int(line.split()[1])
    return 0


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def _core_busy(cpu: int | None) -> float:
    """Busy seconds so far of one core (all processes), from /proc/stat."""
    if cpu is None:
        return 0.0
    times = psutil.cpu_times(percpu=True)[cpu]
    return float(times.user + times.system + times.nice + times.irq + times.softirq)


def _recv(conn: Connection, timeout: float, what: str) -> Any:
    if not conn.poll(timeout):
        raise TimeoutError(f"no answer from {what} within {timeout:.0f} s")
    return conn.recv()


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def other_load(cpu: int | None, share: float, stop: Any) -> None:
    """Keep ``cpu`` busy for ``share`` of every 10 ms until ``stop`` is set: another
    tenant on the server's core, so that runs can be compared under a known load."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    slot = 0.010
    while not stop.is_set():
        start = time.monotonic()
        while time.monotonic() - start < slot * share:
            pass
        time.sleep(max(0.0, slot - (time.monotonic() - start)))


def run_one(
    server: Server,
    args: argparse.Namespace,
    run_index: int,
    load: float = 0.0,
) -> RunResult:
    """Drive ``server`` with the viewer swarms and the senders, with a busy loop taking
    ``load`` of its core meanwhile; return its figures."""
    ctx = multiprocessing.get_context("fork")
    gen_cpu = args.generator_cpu
    result = RunResult(server=server.name, viewers=args.viewers, rate=args.rate, kind=server.kind)
    viewer_procs: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    sender: multiprocessing.process.BaseProcess | None = None
    burner: multiprocessing.process.BaseProcess | None = None
    # The join rush's swarm: stopped with the others, not counted in the figures.
    viewer_procs_extra: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    stop_burner = ctx.Event()
    try:
        # Memory with no connections, after the server has settled.
        time.sleep(args.settle)
        result.rss_idle_bytes = server.rss()
        slab_before = _slab_kib()

        _log(f"{server.name}: connecting {args.viewers} viewers from {args.procs} processes")
        viewer_tokens = server.tokens[: args.viewers]
        shares = [viewer_tokens[i :: args.procs] for i in range(args.procs)]
        # Several nodes: the swarms take turns, so the viewers are spread over them.
        ports = server.viewer_ports or [server.port]
        for i, tokens in enumerate(shares):
            here, there = ctx.Pipe()
            src_ip = f"127.0.{10 + run_index % 200}.{10 + i}"
            port = ports[i % len(ports)]
            swarm = ctx.Process(
                target=viewer_process,
                args=(there, "127.0.0.1", port, src_ip, tokens, TOPIC, gen_cpu, server.wire),
                name=f"viewers-{i}",
                daemon=True,
            )
            swarm.start()
            there.close()
            viewer_procs.append((swarm, here))
        started = time.monotonic()
        for proc, conn in viewer_procs:
            left = SETUP_TIMEOUT - (time.monotonic() - started)
            kind, summary = _recv(conn, max(left, 1.0), proc.name or "viewers")
            assert kind == "ready"
            result.connected += summary["connected"]
            result.failed += summary["failed"]
            if summary["failures"]:
                result.notes.append(f"{proc.name}: {summary['failures'][0]}")
        _log(
            f"{server.name}: {result.connected} subscribed ({result.failed} failed) "
            f"in {time.monotonic() - started:.1f} s"
        )

        # Memory with every viewer subscribed and idle.
        time.sleep(args.settle * 1.5)
        result.rss_connected_bytes = server.rss()
        result.slab_delta_kib = _slab_kib() - slab_before

        # The window: senders start, warm up, then `duration` seconds are measured.
        start_at = time.monotonic() + 1.0
        t0 = start_at + args.warmup
        t1 = t0 + args.duration
        for _, conn in viewer_procs:
            conn.send(("window", t0, t1))
        if load:
            burner = ctx.Process(
                target=other_load,
                args=(args.server_cpu, load, stop_burner),
                name="other-load",
                daemon=True,
            )
            burner.start()
        here, there = ctx.Pipe()
        sender = ctx.Process(
            target=sender_process,
            args=(
                there,
                f"ws://127.0.0.1:{server.port}{WIRES[server.wire].path}",
                server.sender_tokens,
                TOPIC,
                args.rate,
                start_at,
                t0,
                t1,
                gen_cpu,
                server.wire,
            ),
            name="senders",
            daemon=True,
        )
        sender.start()
        there.close()
        generator_pids = [p.pid for p, _ in viewer_procs] + [sender.pid]
        gen_ps = [psutil.Process(pid) for pid in generator_pids if pid is not None]

        def gen_cpu_s() -> tuple[float, float]:
            user = system = 0.0
            for p in gen_ps:
                with contextlib.suppress(psutil.Error):
                    times = p.cpu_times()
                    user += times.user
                    system += times.system
            return user, system

        time.sleep(max(0.0, t0 - time.monotonic()))
        cpu0, helpers0, gen0 = server.cpu_seconds(), server.helpers_cpu_seconds(), gen_cpu_s()
        core_s0, core_g0 = _core_busy(args.server_cpu), _core_busy(gen_cpu)
        wall0 = time.monotonic()
        if args.join_rush:
            # More people join while the window is measured (a session starting). They
            # are not measured themselves; the viewers already there are.
            time.sleep(max(0.0, t0 + args.duration / 4 - time.monotonic()))
            rush_at = time.monotonic()
            rush_here, rush_there = ctx.Pipe()
            rush = ctx.Process(
                target=viewer_process,
                args=(
                    rush_there,
                    "127.0.0.1",
                    server.port,
                    f"127.0.{10 + run_index % 200}.{10 + args.procs}",
                    server.tokens[args.viewers : args.viewers + args.join_rush],
                    TOPIC,
                    gen_cpu,
                    server.wire,
                ),
                name="join-rush",
                daemon=True,
            )
            rush.start()
            rush_there.close()
            viewer_procs_extra.append((rush, rush_here))
            if rush.pid is not None:
                gen_ps.append(psutil.Process(rush.pid))
        time.sleep(max(0.0, t1 - time.monotonic()))
        stop_burner.set()
        cpu1, helpers1, gen1 = server.cpu_seconds(), server.helpers_cpu_seconds(), gen_cpu_s()
        core_s1, core_g1 = _core_busy(args.server_cpu), _core_busy(gen_cpu)
        wall = time.monotonic() - wall0
        result.duration = args.duration
        result.server_cpu_s = cpu1 - cpu0
        result.server_helpers_cpu_s = helpers1 - helpers0
        result.generator_cpu_s = sum(gen1) - sum(gen0)
        result.generator_system_s = gen1[1] - gen0[1]
        result.server_core_busy_pct = (core_s1 - core_s0) / wall * 100
        result.generator_core_busy_pct = (core_g1 - core_g0) / wall * 100
        _log(
            f"{server.name}: window over; server {result.server_pct:.0f} % of its core, "
            f"generator {result.generator_pct:.0f} %"
        )

        for _, rush_conn in viewer_procs_extra:
            kind, summary = _recv(rush_conn, SETUP_TIMEOUT, "join-rush")
            result.notes.append(
                f"join rush: {summary['connected']} joined ({summary['failed']} failed) "
                f"from {args.duration / 4:g} s into the window, in "
                f"{time.monotonic() - rush_at:.1f} s or less"
            )

        # The senders finish when every reply is in.
        kind, sent = _recv(here, SENDER_TIMEOUT, "senders")
        result.lines_sent_in_window = sent["sent_in_window"]
        acked = set(sent["published"])
        result.sender_errors = sent["errors"]
        if sent["held"]:
            result.notes.append(f"{sent['held']} lines held by the word filter")
        replies = sorted(sent["reply_ms"])
        if replies:
            result.reply_p50_ms = replies[len(replies) // 2]
        expected = len(acked) * result.connected

        # Drain: wait until the window's lines have all arrived, or stop arriving.
        drain_start = time.monotonic()
        last_total, last_change = -1, time.monotonic()
        while True:
            total = 0
            for proc, conn in viewer_procs:
                conn.send(("report",))
                total += _recv(conn, 30.0, proc.name or "viewers")["chat_sent_in_window"]
            now = time.monotonic()
            if total != last_total:
                last_total, last_change = total, now
            if total >= expected or now - last_change > 3.0:
                break
            if now - drain_start > args.drain_max:
                result.notes.append(f"drain stopped after {args.drain_max:.0f} s")
                break
            time.sleep(0.5)
        result.drain_s = time.monotonic() - drain_start

        hist = [0] * BUCKETS
        seen: set[float] = set()
        for proc, conn in viewer_procs:
            conn.send(("final",))
            final = _recv(conn, 30.0, proc.name or "viewers")
            seen.update(final["lines"])
            result.received += final["chat_sent_in_window"]
            result.received_in_window += final["chat_in_window"]
            result.closed_by_server += final["closed_by_server"]
            result.recv_calls_in_window += final["recv_calls_in_window"]
            for code, count in final["close_codes"].items():
                result.close_codes[str(code)] = result.close_codes.get(str(code), 0) + count
            for i, count in enumerate(final["hist"]):
                if count:
                    hist[i] += count
        # A line whose reply was lost (the sender's connection dropped) but which some
        # viewer received was published too: every viewer should have it.
        result.lines_published_in_window = len(acked | seen)
        result.expected = result.lines_published_in_window * result.connected
        for attr, q in (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99), ("max_ms", 1.0)):
            value = percentile(hist, q)
            setattr(result, attr, None if value is None else value * 1000)
    finally:
        viewer_procs += viewer_procs_extra
        for _, conn in viewer_procs:
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(("stop",))
        for proc, conn in viewer_procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            conn.close()
        stop_burner.set()
        if burner is not None:
            burner.join(5)
        if sender is not None:
            sender.join(10)
            if sender.is_alive():
                sender.terminate()
                sender.join(5)
    return result


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def report(results: list[RunResult], args: argparse.Namespace) -> str:
    """The table, the ratios against the baseline, and the goal lines."""
    lines: list[str] = []
    head = (
        "| server | delivered msg/s | expected | received | loss | server CPU s / 1k deliv "
        "| server % of core | other load on server core % | p50 ms | p99 ms | max ms "
        "| RSS KiB / idle conn | deliveries per read | generator % of core |"
    )
    lines += [head, "|" + "---|" * 14]
    for r in results:
        lines.append(
            f"| {r.server} | {r.delivered_per_s:,.0f} | {r.expected:,} | {r.received:,} "
            f"| {r.loss:,} | {_fmt(r.cpu_per_1000, '.4f')} | {r.server_pct:.0f} "
            f"| {r.other_load_pct:.0f} | {_fmt(r.p50_ms)} | {_fmt(r.p99_ms)} | {_fmt(r.max_ms)} "
            f"| {_fmt(r.kib_per_conn)} | {_fmt(r.per_read, '.2f')} | {r.generator_pct:.0f} |"
        )
    base = next((r for r in results if r.kind == "baseline"), None)
    if base is not None:
        lines += [
            "",
            "Ratios against the bare baseline of the same run (lower is better):",
            "",
            "| server | CPU per delivery | p50 latency | p99 latency | RSS per conn |",
            "|---|---|---|---|---|",
        ]
        for r in results:
            if r is base:
                continue
            lines.append(
                f"| {r.server} | {_ratio(r.cpu_per_1000, base.cpu_per_1000)} "
                f"| {_ratio(r.p50_ms, base.p50_ms)} | {_ratio(r.p99_ms, base.p99_ms)} "
                f"| {_ratio(r.kib_per_conn, base.kib_per_conn)} |"
            )
    lines += ["", "Details:"]
    for r in results:
        lines.append(
            f"- {r.server}: {r.connected}/{r.viewers} viewers subscribed ({r.failed} failed); "
            f"{r.lines_published_in_window}/{r.lines_sent_in_window} lines published in the "
            f"{r.duration:g} s window; p90 {_fmt(r.p90_ms)} ms; sender reply p50 "
            f"{_fmt(r.reply_p50_ms)} ms; server helpers (PostgreSQL"
            f"{', Valkey' if r.nodes > 1 else ''}) {r.server_helpers_cpu_s:.2f} "
            f"CPU s; server core busy {r.server_core_busy_pct:.0f} % (all processes), generator "
            f"core busy {r.generator_core_busy_pct:.0f} %, generator in the kernel "
            f"{r.generator_system_s / r.duration * 100 if r.duration else 0:.0f} % of its core; "
            f"kernel slab ~"
            f"{_fmt(r.kernel_kib_per_socket)} KiB per socket; closed by server "
            f"{r.closed_by_server} {r.close_codes or ''}; drain {r.drain_s:.1f} s"
            + (f"; sender errors {r.sender_errors}" if r.sender_errors else "")
            + (f"; notes: {'; '.join(r.notes)}" if r.notes else "")
        )
    lines += ["", "Goals (informational; a benchmark never fails on noise):"]
    at_goal_size = args.viewers >= GOAL_VIEWERS and args.rate >= GOAL_RATE
    if not at_goal_size:
        lines.append(
            f"  (the goals are stated for {GOAL_VIEWERS} viewers x {GOAL_RATE:g} lines/s; "
            f"this run used {args.viewers} x {args.rate:g})"
        )
    for r in results:
        if r.kind != "hybridcon":
            continue
        valid = r.generator_pct <= GEN_CPU_LIMIT
        held = (
            r.connected == r.viewers
            and r.loss == 0
            and r.closed_by_server == 0
            and r.p99_ms is not None
            and r.p99_ms <= GOAL_P99_MS
        )
        lines.append(
            f"  {r.server}: "
            f"{'PASS' if held else 'FAIL'} held {args.viewers} x {args.rate:g}/s with p99 "
            f"<= {GOAL_P99_MS:g} ms (p99 {_fmt(r.p99_ms)} ms, loss {r.loss:,}); "
            + (
                f"{'PASS' if r.cpu_per_1000 and base.cpu_per_1000 and r.cpu_per_1000 <= GOAL_CPU_RATIO * base.cpu_per_1000 else 'FAIL'}"
                f" CPU per delivery <= {GOAL_CPU_RATIO:g} x baseline "
                f"({_ratio(r.cpu_per_1000, base.cpu_per_1000)}); "
                if base is not None
                else ""
            )
            + f"{'PASS' if r.kib_per_conn is not None and r.kib_per_conn <= GOAL_KIB_PER_CONN else 'FAIL'}"
            f" <= {GOAL_KIB_PER_CONN:g} KiB per idle connection ({_fmt(r.kib_per_conn)})"
            + ("" if valid else f"; INVALID: generator at {r.generator_pct:.0f} % of its core")
        )
    if base is not None and base.generator_pct > GEN_CPU_LIMIT:
        lines.append(f"  baseline run INVALID: generator at {base.generator_pct:.0f} % of its core")
    lines += peer_report(results, args)
    lines += nodes_report(results)
    return "\n".join(lines)


def peer_report(results: list[RunResult], args: argparse.Namespace) -> list[str]:
    """hybridcon's CPU per delivery against each peer of the run and the best one, and the
    issue's goals against the peers (met, or missed by how much)."""
    peers = [r for r in results if r.kind != "hybridcon"]
    measured = [r for r in peers if r.cpu_per_1000]
    hybrids = [r for r in results if r.kind == "hybridcon" and r.cpu_per_1000]
    if not measured or not hybrids or (len(peers) == 1 and peers[0].kind == "baseline"):
        return []
    best = min(measured, key=lambda r: r.cpu_per_1000 or math.inf)
    lines = [
        "",
        "hybridcon's CPU per delivery against each peer of this run, and the best peer "
        "(< 1: hybridcon spends less per delivery):",
        "",
        "| hybridcon | " + " | ".join(p.server for p in measured) + f" | best: {best.server} |",
        "|---|" + "---|" * (len(measured) + 1),
    ]
    for h in hybrids:
        lines.append(
            f"| {h.server} | "
            + " | ".join(_ratio(h.cpu_per_1000, p.cpu_per_1000) for p in measured)
            + f" | {_ratio(h.cpu_per_1000, best.cpu_per_1000)} |"
        )
    lines += ["", "Goals against the peers (informational; measured in this run):"]
    goal = next(
        (g for g in PEER_GOALS if args.viewers == g[0] and math.isclose(args.rate, g[1])), None
    )
    if goal is None:
        lines.append(
            "  (stated for "
            + " and ".join(f"{n} x {m:g}" for n, m, _, _ in PEER_GOALS)
            + f"; this run used {args.viewers} x {args.rate:g}: no verdict)"
        )
        return lines
    n, m, limit, what = goal
    caveats = [
        f"{p.server} {'failed (not compared)' if not p.cpu_per_1000 else 'lost ' + format(p.loss, ',')}"
        for p in peers
        if not p.cpu_per_1000 or p.loss
    ]
    invalid = [r.server for r in results if r.generator_pct > GEN_CPU_LIMIT]
    # The goals compare one process with one process; several nodes are shown above only.
    for h in (r for r in hybrids if r.nodes == 1):
        ratio = (h.cpu_per_1000 or 0.0) / (best.cpu_per_1000 or math.inf)
        above = [p.server for p in measured if (h.cpu_per_1000 or 0.0) >= (p.cpu_per_1000 or 0.0)]
        if limit == 1.0:
            met = not above
            how = (
                f"{ratio:.2f} x the best peer ({best.server})"
                if met
                else f"{ratio:.2f} x the best peer ({best.server}), "
                f"{(ratio - 1) * 100:.0f} % above it; not below {', '.join(above)}"
            )
        else:
            met = ratio <= limit
            how = f"{ratio:.2f} x the best peer ({best.server})" + (
                "" if met else f", {(ratio / limit - 1) * 100:.0f} % over {limit:g} x"
            )
        lines.append(
            f"  {h.server}: CPU per delivery {what} at {n} x {m:g}: "
            f"{'MET' if met else 'MISSED'}, {how}"
            + (f" (hybridcon lost {h.loss:,})" if h.loss else "")
        )
    if caveats:
        lines.append(
            "  caveat: " + "; ".join(caveats) + " (a peer's CPU per delivery counts what arrived)"
        )
    if invalid:
        lines.append(f"  caveat: generator above {GEN_CPU_LIMIT:g} % in: {', '.join(invalid)}")
    return lines


def nodes_report(results: list[RunResult]) -> list[str]:
    """Each multi-node hybridcon row against the one-node row before it (same settings)."""
    lines: list[str] = []
    one: RunResult | None = None
    for r in results:
        if r.kind != "hybridcon":
            continue
        if r.nodes == 1:
            one = r
            continue
        if one is None:
            continue
        if not lines:
            lines += [
                "",
                "Several nodes over Valkey against one node of the same run (ratios; the "
                "nodes' CPU summed, Valkey and PostgreSQL shown apart):",
                "",
                "| nodes | CPU per delivery | with helpers | p50 latency | p99 latency "
                "| loss (nodes / one) |",
                "|---|---|---|---|---|---|",
            ]
        with_helpers = (
            (r.server_cpu_s + r.server_helpers_cpu_s) / r.received_in_window
            if r.received_in_window
            else None
        )
        one_helpers = (
            (one.server_cpu_s + one.server_helpers_cpu_s) / one.received_in_window
            if one.received_in_window
            else None
        )
        lines.append(
            f"| {r.server} | {_ratio(r.cpu_per_1000, one.cpu_per_1000)} "
            f"| {_ratio(with_helpers, one_helpers)} | {_ratio(r.p50_ms, one.p50_ms)} "
            f"| {_ratio(r.p99_ms, one.p99_ms)} | {r.loss:,} / {one.loss:,} |"
        )
    return lines


def flush_spec(text: str) -> tuple[float, float, float]:
    """``INTERVAL[/PERIOD[/LOAD_FACTOR]]`` as ``(interval, period, load_factor)``; the
    period and the load factor default to 0.

    Raises:
        ValueError: not up to three non-negative numbers.
    """
    parts = text.strip().split("/")
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"{text.strip()!r}: INTERVAL[/PERIOD[/LOAD_FACTOR]]")
    interval, period, factor = (float(p or 0) for p in (*parts, "0", "0")[:3])
    if any(not v >= 0 for v in (interval, period, factor)):
        raise ValueError(f"{text.strip()!r}: interval, period and load factor must be >= 0")
    return interval, period, factor


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: 500 viewers, 10/s, 5 s")
    parser.add_argument("--viewers", "-n", type=int, help="viewers on the stage (default 5000)")
    parser.add_argument("--rate", "-m", type=float, help="chat lines per second (default 20)")
    parser.add_argument("--duration", type=float, help="measured seconds (default 20)")
    parser.add_argument("--warmup", type=float, help="seconds of sending before (default 5)")
    parser.add_argument(
        "--flush-intervals",
        help="hybridcon servers to run, comma-separated: INTERVAL[/PERIOD[/LOAD_FACTOR]] sets "
        "HYBRIDCON_WS_FLUSH_INTERVAL, _PERIOD and _LOAD_FACTOR (omitted: 0, i.e. paced by the "
        "interval alone, fixed pacing); default: fixed pacing (0.01/0.12/0) and the server's "
        "own defaults (adaptive), or with --peers the server's own defaults alone",
    )
    parser.add_argument(
        "--peers",
        help="servers to run before hybridcon on the same load, comma-separated, from "
        f"{','.join(PEERS)} (default: baseline); with more than the baseline, hybridcon's "
        "CPU per delivery is compared with each and with the best, and the goals are checked",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="also run each hybridcon server as this many `hybridcon serve` nodes over one "
        "Valkey (one data directory; all on the server's core with Valkey; the viewers "
        "spread over them, the senders on the first), against one node in the same run "
        "(default 1: one node only)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare baseline")
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds before the idle RSS is read, and 1.5 x that with the viewers "
        "subscribed (default 2; the smoke test shortens it)",
    )
    parser.add_argument("--procs", type=int, help="viewer processes (default: 1 per 1,250)")
    parser.add_argument("--senders", type=int, help="sender connections (default: M / 5)")
    parser.add_argument("--drain-max", type=float, default=30.0, help="seconds to wait after")
    parser.add_argument(
        "--join-rush",
        type=int,
        default=0,
        help="viewers that join a quarter into the measured window (not measured "
        "themselves), as at a session's start (default 0)",
    )
    parser.add_argument(
        "--gc-freeze-joins",
        default="",
        help="HYBRIDCON_GC_FREEZE_JOINS values (comma-separated) to run each hybridcon "
        "server with; default: the server's own",
    )
    parser.add_argument(
        "--other-load",
        type=float,
        default=0.0,
        help="share of the server's core (0-0.9) a busy loop takes from the senders' start "
        "to the window's end in the hybridcon runs (not the baseline's), as another tenant "
        "would (default 0: none added)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    quick = args.quick
    args.viewers = args.viewers or (500 if quick else GOAL_VIEWERS)
    args.rate = args.rate or (10.0 if quick else GOAL_RATE)
    args.duration = args.duration or (5.0 if quick else 20.0)
    args.warmup = args.warmup if args.warmup is not None else (2.0 if quick else 5.0)
    if not 1 <= args.nodes <= 8:
        parser.error("--nodes must be 1..8")
    # At least one viewer process per node, for one node too (the same generator).
    args.procs = max(args.procs or max(1, math.ceil(args.viewers / 1250)), args.nodes)
    args.senders = args.senders or max(2, math.ceil(args.rate / 5))
    if args.flush_intervals is None:
        from hybridcon.settings import Settings

        fields = Settings.model_fields
        defaults = (
            f"{fields['ws_flush_interval'].default!r}/{fields['ws_flush_period'].default!r}"
            f"/{fields['ws_flush_load_factor'].default!r}"
        )
        # Without peers: fixed pacing (the default before da0e9c2) against the defaults.
        args.flush_intervals = defaults if args.peers else f"0.01/0.12/0,{defaults}"
    args.peer_list = [p.strip() for p in (args.peers or "baseline").split(",") if p.strip()]
    unknown = [p for p in args.peer_list if p not in PEERS]
    if unknown:
        parser.error(f"--peers: unknown {', '.join(unknown)}; from {','.join(PEERS)}")
    args.peer_list = list(dict.fromkeys(args.peer_list))
    if args.no_baseline and "baseline" in args.peer_list:
        args.peer_list.remove("baseline")
    try:
        args.flush = [flush_spec(x) for x in args.flush_intervals.split(",") if x.strip()]
    except ValueError as exc:
        parser.error(f"--flush-intervals: {exc}")
    cpus = sorted(os.sched_getaffinity(0))
    # One core for the server, another for the whole load generator.
    args.server_cpu = cpus[0] if len(cpus) >= 2 else None
    args.generator_cpu = cpus[1] if len(cpus) >= 2 else None
    if not 1 <= args.viewers + args.join_rush <= 15_000:
        parser.error(
            "--viewers plus --join-rush must be 1..15000 (one server process, ulimit -n 20000)"
        )
    try:
        args.freeze = [int(x) for x in args.gc_freeze_joins.split(",") if x.strip()] or [None]
    except ValueError:
        parser.error("--gc-freeze-joins: whole numbers, comma-separated")
    if any(f is not None and f < 0 for f in args.freeze) or args.join_rush < 0:
        parser.error("--gc-freeze-joins and --join-rush must be >= 0")
    if not 0 <= args.other_load <= 0.9:
        parser.error("--other-load must be in [0, 0.9]")
    if not 0 < args.rate <= 1000 or not 0 < args.duration <= 600:
        parser.error("--rate must be in (0, 1000] and --duration in (0, 600]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.generator_cpu is not None:
        os.sched_setaffinity(0, {args.generator_cpu})
    command = "python -m tests.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    print(
        f"# fan-out benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{args.viewers} viewers x {args.rate:g} lines/s, {args.duration:g} s measured "
        f"after {args.warmup:g} s warm-up"
        + (
            f", a busy loop taking {args.other_load:.0%} of the server's core in hybridcon runs"
            if args.other_load
            else ""
        )
        + f"\n# command: {command.strip()}\n"
        f"# machine: {_cpu_model()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}; "
        f"server pinned to core {args.server_cpu}, generator to core {args.generator_cpu}",
        flush=True,
    )
    results: list[RunResult] = []
    plan: list[tuple[str, tuple[float, float, float] | None, int | None, int]] = []
    plan += [(peer, None, None, 1) for peer in args.peer_list]
    node_counts = [1] if args.nodes == 1 else [1, args.nodes]
    plan += [("hybridcon", f, z, n) for f in args.flush for z in args.freeze for n in node_counts]
    with tempfile.TemporaryDirectory(prefix="hybridcon-bench-") as tmp:
        for index, (kind, flush, freeze, nodes) in enumerate(plan):
            work = Path(tmp) / f"run{index}"
            work.mkdir()
            _log(
                f"starting {kind}" + (f" (flush {flush[0]:g} s / {flush[1]:g} s)" if flush else "")
            )
            if kind != "hybridcon":
                try:
                    server = start_peer(
                        kind,
                        work,
                        viewers=args.viewers + args.join_rush,
                        senders=args.senders,
                        cpu=args.server_cpu,
                    )
                except Exception as exc:
                    _log(f"{kind} did not start: {exc}")
                    failed = RunResult(server=kind, viewers=args.viewers, kind=kind)
                    failed.notes.append(f"did not start: {exc}")
                    results.append(failed)
                    continue
            else:
                assert flush is not None
                interval, period, factor = flush
                # The server inherits this process's environment (tests.bench.servers).
                os.environ["HYBRIDCON_WS_FLUSH_PERIOD"] = repr(period)
                os.environ["HYBRIDCON_WS_FLUSH_LOAD_FACTOR"] = repr(factor)
                if freeze is not None:
                    os.environ["HYBRIDCON_GC_FREEZE_JOINS"] = str(freeze)
                if nodes == 1:
                    server = start_hybridcon(
                        work,
                        flush_interval=interval,
                        viewers=args.viewers + args.join_rush,
                        senders=args.senders,
                        cpu=args.server_cpu,
                    )
                else:
                    server = start_hybridcon_nodes(
                        work,
                        nodes=nodes,
                        flush_interval=interval,
                        viewers=args.viewers + args.join_rush,
                        senders=args.senders,
                        cpu=args.server_cpu,
                    )
                server.name = (
                    ("hybridcon" if nodes == 1 else f"hybridcon {nodes} nodes over Valkey")
                    + f" flush={interval:g}s period={period:g}s"
                    + (f" load×{factor:g}" if factor else "")
                    + ("" if freeze is None else f" freeze={freeze}")
                )
            try:
                # The baseline and the peers run without the added load: their CPU per
                # delivery is the reference, and contention would inflate it (flattering
                # the ratios).
                load = 0.0 if kind != "hybridcon" else args.other_load
                results.append(run_one(server, args, index, load))
                results[-1].nodes = nodes
            except Exception as exc:
                _log(f"{server.name} failed: {exc!r}\n{server.log_tail()}")
                failed = RunResult(server=server.name, viewers=args.viewers, kind=server.kind)
                failed.notes.append(f"run failed: {exc!r}")
                results.append(failed)
            finally:
                server.stop()
            if server.proc.returncode not in (0, None, -15):
                _log(f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
    print()
    print(report(results, args), flush=True)
    if args.json:
        payload = [
            {
                **asdict(r),
                "delivered_per_s": r.delivered_per_s,
                "cpu_per_1000": r.cpu_per_1000,
                "kib_per_conn": r.kib_per_conn,
                "generator_pct": r.generator_pct,
            }
            for r in results
        ]
        args.json.write_text(json.dumps(payload, indent=2))
    return 0
