"""The soak: a day in miniature with faults. ``python -m tests.bench.soak [--help]``.

``--viewers`` people (2,000 by default) on the plenary with the client SDK (which comes
back with ``since`` after every disconnect), each sending a heartbeat every 30 s and a
reaction now and then and voting in every poll; ``--chatters`` of them also chat; a
moderator opens a poll every minute and closes the one before. Every ``--fault-every``
seconds a fault is injected, in turn: the embedded PostgreSQL killed (SIGKILL),
hybridcon stopped (SIGTERM) and started again, PostgreSQL killed, hybridcon killed
(SIGKILL) and started again. Every ``--sample-every`` seconds the server's RSS, open
file descriptors, threads and event-loop tasks (``hybridcon_event_loop_tasks``) are
printed; at the end, growth within each server process's lifetime is flagged (a leak
would show as a rise between the samples after two faults of the same process).

A benchmark, not a test: its exit status is 0 whatever the figures (docs/benchmarks.md
has the runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tests.bench.hybridcon_process import PROGRAMME, free_port, spawn, stop, wait_for_line

TOPIC = "stage:plenary"
EMOJI = ("👏", "❤️", "🎉")
CHAT_AFTER = 20.0  # seconds: the audience is connected by then
# The last seconds have no chat and no fault: every viewer catches up before it counts.
QUIET = 30.0
FAULTS = ("postgres-sigkill", "hybridcon-sigterm", "postgres-sigkill", "hybridcon-sigkill")


# --- the audience, in processes of its own ------------------------------------------------


async def _person(
    url: str,
    token: str,
    chat: bool,
    chat_from: float,
    stop_at: float,
    stats: dict[str, Any],
    seed: int,
) -> None:
    from hybridcon_client import HybridconClient
    from hybridcon_client.errors import HybridconClientError, HybridconError

    rng = random.Random(seed)
    client = HybridconClient(url, token, backoff_max=5.0, request_timeout=20.0)
    try:
        await client.connect()
        await client.subscribe(TOPIC)
    except (HybridconClientError, OSError, TimeoutError) as exc:
        stats["failed"] += 1
        stats["errors"].append(f"{type(exc).__name__}: {exc}")
        return
    stats["connected"] += 1
    chat_seen: set[str] = set()

    async def read() -> None:
        async for event in client.events():
            kind = event.get("type")
            if kind == "chat.message":
                chat_seen.add(str(event.get("text")))
            elif kind == "client.resync":
                stats["resyncs"] += 1
            elif kind == "poll.opened":
                poll_id = event.get("poll_id")
                asyncio.get_running_loop().create_task(vote(str(poll_id)))

    async def vote(poll_id: str) -> None:
        await asyncio.sleep(rng.uniform(0, 20))
        await act(client.vote(poll_id, rng.choice(["a", "b"])), "votes")

    async def act(call: Any, what: str) -> None:
        try:
            await call
            stats[what] += 1
        except HybridconError as exc:
            key = f"{what} {exc.code}: {exc.message[:48]}"
            stats["refused"][key] = stats["refused"].get(key, 0) + 1
        except (HybridconClientError, OSError, TimeoutError) as exc:
            key = f"{what} {type(exc).__name__}"
            stats["refused"][key] = stats["refused"].get(key, 0) + 1

    reader = asyncio.get_running_loop().create_task(read())
    next_beat = time.monotonic() + rng.uniform(0, 30)
    n = 0
    while time.monotonic() < stop_at:
        await asyncio.sleep(rng.uniform(2, 8))
        if time.monotonic() >= next_beat:
            next_beat += 30
            await act(client.heartbeat(TOPIC, playing=True, visible=True), "heartbeats")
        if rng.random() < 0.2:
            await act(client.react(TOPIC, rng.choice(EMOJI)), "reactions")
        if chat and chat_from <= time.monotonic() < stop_at - QUIET:
            text = f"{seed}-{n} soak"
            n += 1
            await act(client.send_chat(TOPIC, text), "lines")
    stats["reconnects"] += client.reconnects
    stats["chat_seen_min"] = min(stats["chat_seen_min"], len(chat_seen))
    stats["chat_seen_max"] = max(stats["chat_seen_max"], len(chat_seen))
    await client.close()
    reader.cancel()


def audience_process(
    ctl: Connection, url: str, tokens: list[str], chatters: int, seconds: float, first: int
) -> None:
    """Run ``tokens`` people until ``seconds`` have passed; send the stats over ``ctl``."""
    stats: dict[str, Any] = {
        "connected": 0, "failed": 0, "errors": [], "resyncs": 0, "reconnects": 0,
        "heartbeats": 0, "reactions": 0, "votes": 0, "lines": 0, "refused": {},
        "chat_seen_min": 1 << 60, "chat_seen_max": 0,
    }  # fmt: skip

    async def main() -> None:
        stop_at = time.monotonic() + seconds
        # Chat starts once everyone is in: then every viewer should see every line.
        chat_from = time.monotonic() + CHAT_AFTER
        people = []
        for i, token in enumerate(tokens):
            people.append(
                asyncio.create_task(
                    _person(url, token, i < chatters, chat_from, stop_at, stats, first + i)
                )
            )
            if i % 50 == 49:
                await asyncio.sleep(0.2)  # a ramp, as people arrive
        await asyncio.gather(*people)

    asyncio.run(main())
    stats["errors"] = stats["errors"][:3]
    ctl.send(stats)


# --- the server, its faults and its samples -----------------------------------------------


@dataclass
class Node:
    work: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        log = self.work / f"hybridcon-{self.starts}.log"
        self.proc = spawn(["hybridcon.cli", "serve"], log, env=self.env, cpu=None)
        wait_for_line(self.proc, log, r"is running at", "hybridcon serve")

    def postmaster(self) -> int:
        return int((self.work / "data" / "postgres" / "postmaster.pid").read_text().split()[0])


@dataclass
class Sample:
    t: float
    pid: int
    rss_mib: float
    fds: int
    threads: int
    tasks: int
    connections: int
    note: str = ""


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)


def _metric(port: int, name: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " "):
                    return int(float(line.split()[-1]))
    except OSError:
        return -1
    return -1


def sample(node: Node, t0: float) -> Sample | None:
    assert node.proc is not None
    pid = node.proc.pid
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return Sample(
        t=time.monotonic() - t0,
        pid=pid,
        rss_mib=int(fields["VmRSS"].split()[0]) / 1024,
        fds=fds,
        threads=int(fields["Threads"]),
        tasks=_metric(node.port, "hybridcon_event_loop_tasks"),
        connections=_metric(node.port, "hybridcon_ws_connections"),
    )


def inject(node: Node, fault: str) -> None:
    if fault == "postgres-sigkill":
        os.kill(node.postmaster(), signal.SIGKILL)
        return
    assert node.proc is not None
    if fault == "hybridcon-sigterm":
        stop(node.proc)
    else:
        node.proc.kill()
        node.proc.wait(10)
    node.start()


def growth(run: Run) -> list[str]:
    """Per server process: the first sample after its first fault against its last.

    Within one process, the audience is back at full size after each fault, so RSS,
    descriptors and tasks should be flat from one such sample to the next.
    """
    flags = []
    by_pid: dict[int, list[Sample]] = {}
    for s in run.samples:
        by_pid.setdefault(s.pid, []).append(s)
    for pid, samples in by_pid.items():
        steady = [s for s in samples if "after" in s.note] or samples[len(samples) // 2 :]
        if len(steady) < 2:
            continue
        a, b = steady[0], steady[-1]
        for name, limit in (("rss_mib", 0.15), ("fds", 0.05), ("tasks", 0.05)):
            x, y = getattr(a, name), getattr(b, name)
            if x > 0 and (y - x) / x > limit:
                flags.append(f"pid {pid}: {name} {x:.0f} → {y:.0f} ({(y - x) / x:+.0%})")
    return flags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.soak", description=__doc__)
    parser.add_argument("--viewers", type=int, default=2000)
    parser.add_argument("--chatters", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fault-every", type=float, default=180.0, help="seconds")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--processes", type=int, default=4, help="audience processes")
    args = parser.parse_args(argv)

    from hybridcon.core.tokens import Role, TokenRequest, issue_token
    from hybridcon.settings import Settings
    from hybridcon.store.keyfile import load_or_create_keyset

    work = Path(tempfile.mkdtemp(prefix="hybridcon-soak-"))
    data = work / "data"
    data.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "HYBRIDCON_DATA_DIR": str(data),
        "HYBRIDCON_HOST": "127.0.0.1",
        "HYBRIDCON_PORT": str(port),
        "HYBRIDCON_PROGRAMME": str(PROGRAMME),
        "HYBRIDCON_LOG_LEVEL": "warning",
        "HYBRIDCON_SHUTDOWN_GRACE": "0",
        "HYBRIDCON_ICE_ADDRESSES": '["lo"]',
        # The audience comes from one address; the per-address caps are for the Internet.
        "HYBRIDCON_HTTP_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "HYBRIDCON_WS_SIGNING_IN_PER_ADDRESS": str(args.viewers + 100),
    }
    for name in ("HYBRIDCON_DATABASE_URL", "HYBRIDCON_REDIS_URL", "HYBRIDCON_SIGNING_KEYS_FILE"):
        env.pop(name, None)
    settings = Settings(_env_file=None, data_dir=data)  # type: ignore[call-arg]
    keyset = load_or_create_keyset(settings.keys_path, datetime.now(UTC))

    def tokens(role: Role, n: int) -> list[str]:
        now = datetime.now(UTC)
        return [
            issue_token(
                keyset, TokenRequest(role=role, scopes=("*",), name=f"{role.value} {i}"),
                issuer=settings.token_issuer, audience=settings.token_audience, now=now,
                default_ttl=timedelta(hours=3), max_ttl=timedelta(hours=3),
            )[0]
            for i in range(n)
        ]  # fmt: skip

    node = Node(work, port, env)
    node.start()
    url = f"ws://127.0.0.1:{port}/ws"
    seconds = args.minutes * 60
    people = tokens(Role.VIEWER, args.viewers)
    per = -(-args.viewers // args.processes)
    ctx = multiprocessing.get_context("spawn")
    audience = []
    for i in range(args.processes):
        parent, child = ctx.Pipe()
        chunk = people[i * per : (i + 1) * per]
        chatters = max(0, min(len(chunk), args.chatters - i * per))
        proc = ctx.Process(
            target=audience_process, args=(child, url, chunk, chatters, seconds, i * per)
        )
        proc.start()
        audience.append((proc, parent))
    (mod_token,) = tokens(Role.MODERATOR, 1)
    run = Run()
    t0 = time.monotonic()
    print(f"soak: {args.viewers} viewers, {args.chatters} chatting, {args.minutes:g} min, "
          f"a fault every {args.fault_every:g} s; work dir {work}", flush=True)  # fmt: skip
    print("  t (s)    pid   RSS MiB   fds  threads  tasks  sockets  note", flush=True)

    async def moderate() -> None:
        from hybridcon_client import HybridconClient
        from hybridcon_client.errors import HybridconClientError

        client = HybridconClient(url, mod_token, backoff_max=5.0)
        await client.connect()
        previous = None
        while time.monotonic() - t0 < seconds - 30:
            await asyncio.sleep(60)
            try:
                opened = await client.request(
                    "poll.create", topics=[TOPIC], question="Nog een vraag?", kind="single",
                    options=["Ja", "Nee"], open=True,
                )  # fmt: skip
                if previous is not None:
                    await client.request("poll.close", poll_id=previous)
                previous = opened["poll_id"]
            except (HybridconClientError, OSError, TimeoutError):
                pass
        await client.close()

    async def watch() -> None:
        next_fault = t0 + args.fault_every
        next_sample = t0
        faults = 0
        note = ""
        while time.monotonic() - t0 < seconds:
            now = time.monotonic()
            if now >= next_fault and now - t0 < seconds - QUIET:
                fault = FAULTS[faults % len(FAULTS)]
                faults += 1
                await asyncio.to_thread(inject, node, fault)
                run.faults.append((now - t0, fault))
                note = f"after {fault}"
                next_fault += args.fault_every
                # The next sample once the audience is back (a minute at most).
                next_sample = now + min(30.0, args.fault_every / 2)
            if now >= next_sample:
                s = await asyncio.to_thread(sample, node, t0)
                if s is not None:
                    s.note, note = note, ""
                    run.samples.append(s)
                    print(f"{s.t:7.0f} {s.pid:6d} {s.rss_mib:9.1f} {s.fds:5d} {s.threads:8d} "
                          f"{s.tasks:6d} {s.connections:8d}  {s.note}", flush=True)  # fmt: skip
                next_sample = now + args.sample_every
            await asyncio.sleep(0.5)

    async def both() -> None:
        await asyncio.gather(moderate(), watch())

    asyncio.run(both())
    totals: dict[str, Any] = {}
    for proc, conn in audience:
        stats = conn.recv() if conn.poll(120) else {}
        proc.join(30)
        for key, value in stats.items():
            if key in ("chat_seen_min",):
                totals[key] = min(totals.get(key, value), value)
            elif key == "chat_seen_max":
                totals[key] = max(totals.get(key, value), value)
            elif isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
            elif isinstance(value, dict):
                merged = totals.setdefault(key, {})
                for k, v in value.items():
                    merged[k] = merged.get(k, 0) + v
            elif isinstance(value, list):
                totals.setdefault(key, []).extend(value)
    assert node.proc is not None
    stop(node.proc)
    # After a SIGKILL of hybridcon the wheel still counts the dead process as holding the
    # cluster and leaves PostgreSQL running: stop it, then drop the data (logs are kept).
    with contextlib.suppress(OSError, ValueError, IndexError):
        os.kill(node.postmaster(), signal.SIGQUIT)
    shutil.rmtree(data, ignore_errors=True)
    print("faults:", ", ".join(f"{t:.0f} s {f}" for t, f in run.faults) or "none")
    print("audience:", {k: v for k, v in totals.items() if k != "errors"})
    if totals.get("errors"):
        print("errors:", totals["errors"][:3])
    flags = growth(run)
    print("growth:", "; ".join(flags) if flags else "none flagged (RSS ±15 %, fds and tasks ±5 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
