"""The engagement-ingest benchmark (issue 14): ``python -m tests.bench.ingest [--help]``.

The engagement writer (:class:`hybridcon.store.engagement.EngagementWriter`) as a node runs
it: made as ``app.py`` makes it (the pool from ``open_pool``, the spool under the data
directory, the spool's size limit from the settings), fed through the node's real entry
point, :meth:`hybridcon.realtime.node.GatewayNode.engage` (the keyed hash of the person,
the role, the payload's data; here heartbeats of ``--people`` viewers), on the embedded
PostgreSQL the server starts (``hybridcon.store.embedded``), in one process: the writer
and the producer share one event loop on one core, as a node's handlers and its writer do,
and PostgreSQL runs on the other core. Driving it through WebSockets instead would
measure the gateway (tens of microseconds per request), not the writer: 50,000 events/s
is more than one core can take in as requests.

In one invocation:

1. **offered**: ``--rate`` events/s (50,000) for ``--seconds``: events/s stored, and each
   event's time from ``engage`` to its ``COPY`` having returned (committed), p50/p99/max;
   events that had to go to the spool (the writer fell behind).
2. **capacity**: as fast as the writer takes them (the producer keeps four batches
   waiting) for ``--seconds``: events/s stored.
3. **raw copy** (the baseline): the very rows stored in 2, read back, then written with
   asyncpg's ``copy_records_to_table`` in batches of the writer's size on one connection
   into a twin table (``LIKE engagement_events INCLUDING ALL``: the same indexes and
   unique key): rows/s. Capacity ÷ raw copy is the ratio of the goal.
4. **SIGTERM**: a child process runs the same writer at ``--rate`` and gets SIGTERM after
   ``--sigterm-after`` seconds; it does what the server does on SIGTERM (its producers
   stop, then ``writer.stop()``, then the pool closes) and writes the id of every event it
   handed to the writer. Whatever it left in the spool is replayed by a writer started on
   the same spool (as the next ``hybridcon serve`` would). Then every one of those ids
   must be in the table once: lost and doubled are counted.

A benchmark, not a test: the exit status is 0 whatever the figures (1 only when the run
could not be made).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from array import array
from bisect import bisect_left
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
from tests.bench.hybridcon_process import log_tail, pin, spawn

# The goals.
GOAL_RATE = 50_000.0
GOAL_FLUSH_S = 1.0
GOAL_RATIO = 0.3

TICK = 0.005  # the producer's pace: events due are logged every 5 ms
# Events logged between two turns of the event loop: a node's handlers log one or two
# per request (tens of microseconds each), so the writer's I/O is never held up for long.
CHUNK = 50
TOPICS = tuple(f"stage:{s}" for s in ("plenary", "impact", "nabijheid", "eerstelijn"))
TWIN = "engagement_events_raw_copy"


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the node's entry point ----------------------------------------------------------------


class Audience:
    """``--people`` viewers' claims, and ``engage`` as the node calls it."""

    def __init__(self, people: int, sink: Any) -> None:
        from hybridcon.core.payloads import Heartbeat
        from hybridcon.core.tokens import Claims, Role
        from hybridcon.realtime.node import GatewayNode

        now = datetime.now(UTC)
        self.claims = [
            Claims(
                sub=f"i:{uuid.uuid4()}",
                role=Role.VIEWER,
                scopes=("*",),
                name="Bench",
                jti=uuid.uuid4().hex,
                iss="hybridcon",
                aud="hybridcon",
                iat=now,
                nbf=now,
                exp=now + timedelta(hours=2),
            )
            for _ in range(people)
        ]
        self.payload = Heartbeat(playing=True, visible=True, muted=False, quality="720p")
        from hybridcon.clock import system_clock

        # GatewayNode.engage reads the services' writer, clock and actor key, nothing else:
        # the node's own code runs, without a hub, a bus or sockets around it.
        self._node = cast(
            Any,
            SimpleNamespace(
                _services=SimpleNamespace(
                    engagement=sink, clock=system_clock, actor_key=os.urandom(32)
                )
            ),
        )
        self._engage: Callable[..., None] = GatewayNode.engage
        self.n = 0

    async def engage_spread(self, count: int) -> None:
        """``count`` heartbeats, ``CHUNK`` at a time with a turn of the loop in between."""
        while count > 0:
            self.engage(min(CHUNK, count))
            count -= CHUNK
            await asyncio.sleep(0)

    def engage(self, count: int) -> None:
        """``count`` heartbeats, people and stages in turn."""
        claims, topics, engage, node, payload = (
            self.claims,
            TOPICS,
            self._engage,
            self._node,
            self.payload,
        )
        n = self.n
        for i in range(n, n + count):
            engage(node, payload, topics[i & 3], claims[i % len(claims)])
        self.n = n + count


class Confirmed:
    """Counts events confirmed in PostgreSQL, in order, from the writer's ``on_count``
    hook (the one app.py feeds Prometheus from): a direct ``COPY`` adds ``written``
    outside spooling, a replayed chunk adds ``replayed``."""

    def __init__(self) -> None:
        self.writer: Any = None
        self.total = 0
        self.marks_n = array("q")
        self.marks_t = array("d")

        self.changed = asyncio.Event()

    def __call__(self, name: str, n: int) -> None:
        if (name == "written" and not self.writer.spooling) or name == "replayed":
            self.total += n
            self.marks_n.append(self.total)
            self.marks_t.append(time.monotonic())
            self.changed.set()

    async def reach(self, n: int, timeout: float) -> None:
        """Wait until ``n`` events are confirmed, at most ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.total < n:
                    self.changed.clear()
                    await self.changed.wait()


def make_writer(
    settings: Any, pool: asyncpg.Pool, on_count: Any, batch_size: int | None = None
) -> Any:
    """The writer as app.py makes it on one node (``batch_size``: its default if None)."""
    from hybridcon.store.engagement import EngagementWriter

    return EngagementWriter(
        pool=pool,
        spool_path=settings.spool_path,
        on_count=on_count,
        max_spool_bytes=settings.engagement_spool_max_bytes,
        **({} if batch_size is None else {"batch_size": batch_size}),
    )


# --- the phases ----------------------------------------------------------------------------


async def _offered(settings: Any, pool: asyncpg.Pool, args: argparse.Namespace) -> dict[str, Any]:
    confirmed = Confirmed()
    writer = make_writer(settings, pool, confirmed, args.batch_size_arg)
    confirmed.writer = writer
    audience = Audience(args.people, writer)
    writer.start()
    logged_n = array("q")
    logged_t = array("d")
    loop = asyncio.get_running_loop()
    cpu0 = time.process_time()
    t0 = time.monotonic()
    end = t0 + args.seconds
    lag = 0.0
    try:
        while (now := time.monotonic()) < end:
            due = int((now - t0) * args.rate) - audience.n
            if due > 0:
                await audience.engage_spread(due)
                logged_n.append(audience.n)
                logged_t.append(now)
            wake = loop.time() + TICK
            await asyncio.sleep(TICK)
            lag = max(lag, loop.time() - wake)
        produced = audience.n
        last_logged = time.monotonic()
        await confirmed.reach(produced, 60)
        cpu = time.process_time() - cpu0
    finally:
        await writer.stop()
    # Each event's latency: its tick's time to the first confirmation that covers it.
    latencies: list[float] = []
    marks_n, marks_t = list(confirmed.marks_n), list(confirmed.marks_t)
    previous = 0
    for upto, at in zip(logged_n, logged_t, strict=True):
        k = bisect_left(marks_n, upto)
        if k < len(marks_n):
            latencies.extend([marks_t[k] - at] * (upto - previous))
        previous = upto
    done_at = marks_t[-1] if marks_t else last_logged
    return {
        "offered_per_s": args.rate,
        "produced": produced,
        "confirmed": confirmed.total,
        "stored_per_s": confirmed.total / (done_at - t0) if done_at > t0 else 0.0,
        "behind_at_end_s": max(0.0, done_at - last_logged),
        "p50_ms": (_quantile(latencies, 0.5) or 0) * 1000,
        "p99_ms": (_quantile(latencies, 0.99) or 0) * 1000,
        "max_ms": max(latencies, default=0) * 1000,
        "unconfirmed": produced - len(latencies),
        "spooled": writer.spooled,
        "dropped": writer.dropped,
        "loop_lag_max_ms": lag * 1000,
        "cpu_us_per_event": cpu / max(1, produced) * 1e6,
    }


async def _capacity(
    settings: Any, pool: asyncpg.Pool, args: argparse.Namespace
) -> tuple[dict[str, Any], int]:
    confirmed = Confirmed()
    writer = make_writer(settings, pool, confirmed, args.batch_size_arg)
    confirmed.writer = writer
    audience = Audience(args.people, writer)
    first_id = int(await pool.fetchval("SELECT coalesce(max(id), 0) FROM engagement_events"))
    writer.start()
    cpu0 = time.process_time()
    t0 = time.monotonic()
    end = t0 + args.seconds
    waiting = 4 * args.batch_size
    try:
        while time.monotonic() < end:
            if writer.buffered < waiting:
                audience.engage(CHUNK)
            await asyncio.sleep(0)
        produced = audience.n
        await confirmed.reach(produced, 60)
        elapsed = (confirmed.marks_t[-1] if confirmed.marks_t else time.monotonic()) - t0
        cpu = time.process_time() - cpu0
    finally:
        await writer.stop()
    return {
        "produced": produced,
        "confirmed": confirmed.total,
        "stored_per_s": confirmed.total / elapsed,
        "spooled": writer.spooled,
        "cpu_us_per_event": cpu / max(1, produced) * 1e6,
    }, first_id


async def _raw_copy(pool: asyncpg.Pool, after_id: int, batch_size: int) -> dict[str, Any]:
    from hybridcon.store.engagement import COLUMNS

    async with pool.acquire() as conn:
        await conn.execute(f"DROP TABLE IF EXISTS {TWIN}")
        await conn.execute(f"CREATE TABLE {TWIN} (LIKE engagement_events INCLUDING ALL)")
        rows = await conn.fetch(
            "SELECT event_id, ts, kind, actor, topic, data::text AS data FROM engagement_events"
            " WHERE id > $1 ORDER BY id",
            after_id,
        )
        records = [tuple(r) for r in rows]
        t0 = time.monotonic()
        for start in range(0, len(records), batch_size):
            await conn.copy_records_to_table(
                TWIN, records=records[start : start + batch_size], columns=COLUMNS
            )
        elapsed = time.monotonic() - t0
        stored = int(await conn.fetchval(f"SELECT count(*) FROM {TWIN}"))
        await conn.execute(f"DROP TABLE {TWIN}")
    return {"rows": len(records), "stored": stored, "rows_per_s": len(records) / elapsed}


async def _measure(settings: Any, dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    from hybridcon.app import open_pool

    pool = await open_pool(settings, dsn)
    try:
        _log(f"offered: {args.rate:,.0f} events/s for {args.seconds:g} s")
        offered = await _offered(settings, pool, args)
        rounds = []
        for n in range(1, args.rounds + 1):
            _log(f"round {n}: capacity (as fast as the writer takes them), then a raw copy")
            capacity, after_id = await _capacity(settings, pool, args)
            raw = await _raw_copy(pool, after_id, args.batch_size)
            rounds.append(
                {
                    "capacity": capacity,
                    "raw": raw,
                    "ratio": capacity["stored_per_s"] / raw["rows_per_s"],
                }
            )
    finally:
        await pool.close()
    return {"offered": offered, "rounds": rounds}


# --- SIGTERM -------------------------------------------------------------------------------


class _Recorder:
    """Between ``engage`` and the writer: notes each event's id (the child's only extra)."""

    def __init__(self, writer: Any, ids: bytearray) -> None:
        self.writer = writer
        self.ids = ids

    def log(self, event: Any) -> None:
        self.ids += event.event_id.bytes
        self.writer.log(event)


async def _child(args: argparse.Namespace) -> None:
    from hybridcon.app import open_pool
    from hybridcon.settings import Settings

    settings = Settings(_env_file=None, data_dir=args.data_dir)
    pool = await open_pool(settings, args.dsn)
    writer = make_writer(settings, pool, None)
    ids = bytearray()
    audience = Audience(args.people, _Recorder(writer, ids))
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    writer.start()
    print("ingesting", flush=True)
    t0 = time.monotonic()
    while not stopping.is_set():
        due = int((time.monotonic() - t0) * args.rate) - audience.n
        if due > 0:
            await audience.engage_spread(due)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), TICK)
    # What the server does after SIGTERM: the producers (sockets) are closed, then the
    # writer stores what it holds (or spools it), then the pool closes.
    buffered = writer.buffered
    await writer.stop()
    await pool.close()
    args.ids.write_bytes(bytes(ids))
    print(
        json.dumps(
            {
                "logged": audience.n,
                "buffered_at_sigterm": buffered,
                "written": writer.written,
                "spooled": writer.spooled,
                "dropped": writer.dropped,
                "seconds": time.monotonic() - t0,
            }
        ),
        flush=True,
    )


def _sigterm(settings: Any, dsn: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    ids_path = work / "sigterm-ids.bin"
    log_path = work / "sigterm-child.log"
    command = [
        "tests.bench.ingest",
        "--child",
        "--dsn",
        dsn,
        "--data-dir",
        str(settings.data_dir),
        "--ids",
        str(ids_path),
        "--rate",
        repr(args.rate),
        "--people",
        str(args.people),
    ]
    child = spawn(command, log_path, env=None, cpu=args.writer_cpu)
    started = time.monotonic()
    while "ingesting" not in log_path.read_text("utf-8", "replace"):
        if child.poll() is not None or time.monotonic() - started > 120:
            child.kill()
            raise RuntimeError(f"the SIGTERM child did not start:\n{log_tail(log_path, 20)}")
        time.sleep(0.05)
    time.sleep(args.sigterm_after)
    child.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    try:
        child.wait(60)
    except Exception:
        child.kill()
        raise RuntimeError("the SIGTERM child did not stop within 60 s") from None
    stop_s = time.monotonic() - sent
    if child.returncode != 0:
        raise RuntimeError(
            f"the SIGTERM child exited {child.returncode}:\n{log_tail(log_path, 20)}"
        )
    said = json.loads(log_path.read_text("utf-8").strip().splitlines()[-1])
    raw = ids_path.read_bytes()
    ids = [uuid.UUID(bytes=raw[i : i + 16]) for i in range(0, len(raw), 16)]
    spool = Path(settings.spool_path)
    spool_left = spool.stat().st_size if spool.exists() else 0
    found, distinct, replayed = asyncio.run(_check_ids(settings, dsn, ids, spool_left > 0))
    return {
        **said,
        "acknowledged": len(ids),
        "stop_s": stop_s,
        "spool_bytes_left": spool_left,
        "replayed_after": replayed,
        "found": found,
        "lost": len(ids) - distinct,
        "doubled": found - distinct,
    }


async def _check_ids(
    settings: Any, dsn: str, ids: list[uuid.UUID], replay: bool
) -> tuple[int, int, int]:
    """(rows with those ids, distinct ids among them, events replayed from the spool)."""
    from hybridcon.app import open_pool

    pool = await open_pool(settings, dsn)
    try:
        replayed = 0
        if replay:  # what the next start of the server does with a spool left behind
            writer = make_writer(settings, pool, None)
            writer.start()
            await writer.stop()
            replayed = writer.replayed
        row = await pool.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM engagement_events"
            " WHERE event_id = ANY($1::uuid[])",
            ids,
        )
    finally:
        await pool.close()
    assert row is not None
    return int(row["n"]), int(row["d"]), replayed


# --- the run -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from hybridcon.settings import Settings
    from hybridcon.store import embedded

    work = Path(tempfile.mkdtemp(prefix="hybridcon-ingest-"))
    settings = Settings(_env_file=None, data_dir=work / "data")
    try:
        # PostgreSQL inherits the core of the process that starts it.
        pin(os.getpid(), args.pg_cpu)
        _log("starting the embedded PostgreSQL")
        dsn = asyncio.run(embedded.start(settings.embedded_pgdata))
        if args.writer_cpu is not None:
            pin(os.getpid(), args.writer_cpu)
        elif args.pg_cpu is not None:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        figures = asyncio.run(_measure(settings, dsn, args))
        _log(f"SIGTERM after {args.sigterm_after:g} s of {args.rate:,.0f} events/s")
        figures["sigterm"] = _sigterm(settings, dsn, args, work)
    finally:
        if args.keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return figures


def _verdict(met: bool, how: str) -> str:
    return f"MET ({how})" if met else f"MISSED ({how})"


def report(f: dict[str, Any], args: argparse.Namespace) -> str:
    o, s = f["offered"], f["sigterm"]
    # The round with the median ratio stands for the run; every round is printed.
    by_ratio = sorted(f["rounds"], key=lambda x: x["ratio"])
    median = by_ratio[len(by_ratio) // 2]
    c, ratio = median["capacity"], median["ratio"]
    ratios = ", ".join(f"{x['ratio']:.2f}" for x in f["rounds"])
    # Kept up: the producer made what was due, every event was stored, none went to the
    # spool, and the last was stored within the flush goal of the last being made.
    kept_up = (
        o["produced"] >= 0.99 * o["offered_per_s"] * args.seconds
        and o["unconfirmed"] == 0
        and o["spooled"] == 0
        and o["behind_at_end_s"] <= GOAL_FLUSH_S
    )
    sustained = kept_up and o["offered_per_s"] >= GOAL_RATE
    flushed = o["max_ms"] <= GOAL_FLUSH_S * 1000 and o["unconfirmed"] == 0
    safe = s["lost"] == 0 and s["doubled"] == 0
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"ingest: the engagement writer in one process (core {args.writer_cpu}), embedded "
        f"PostgreSQL on core {args.pg_cpu}; {args.people:,} people's heartbeats through "
        f"GatewayNode.engage; load average {load}",
        f"  offered   {o['offered_per_s']:,.0f}/s for {args.seconds:g} s: {o['produced']:,} "
        f"events, {o['confirmed']:,} stored, {o['stored_per_s']:,.0f}/s from the first made to "
        "the last stored "
        f"(done {o['behind_at_end_s']:.2f} s after the last); engage to committed p50 "
        f"{o['p50_ms']:.0f} ms, p99 {o['p99_ms']:.0f} ms, max {o['max_ms']:.0f} ms; spooled "
        f"{o['spooled']:,}, dropped {o['dropped']}, loop lag max {o['loop_lag_max_ms']:.0f} ms; "
        f"{o['cpu_us_per_event']:.1f} µs of the process's CPU per event",
        *(
            f"  round {n}   capacity {x['capacity']['stored_per_s']:,.0f}/s "
            f"({x['capacity']['confirmed']:,} events in {args.seconds:g} s, spooled "
            f"{x['capacity']['spooled']:,}, {x['capacity']['cpu_us_per_event']:.1f} µs of CPU "
            f"per event, making it included); raw copy of the same rows "
            f"{x['raw']['rows_per_s']:,.0f} rows/s ({x['raw']['stored']:,} stored); "
            f"ratio {x['ratio']:.2f}"
            for n, x in enumerate(f["rounds"], start=1)
        ),
        f"  ratio     capacity / raw copy: median {ratio:.2f} (rounds {ratios})",
        f"  SIGTERM   after {args.sigterm_after:g} s at {args.rate:,.0f}/s: "
        f"{s['acknowledged']:,} events handed to the writer, {s['buffered_at_sigterm']:,} in "
        f"memory at the signal; stopped in {s['stop_s']:.2f} s; written {s['written']:,}, "
        f"spooled {s['spooled']:,}, spool left {s['spool_bytes_left']:,} bytes (replayed "
        f"after: {s['replayed_after']:,}); found {s['found']:,}: lost {s['lost']:,}, "
        f"doubled {s['doubled']:,}",
        "goals:",
        f"  >= {GOAL_RATE:,.0f} events/s sustained: "
        + _verdict(
            sustained,
            f"{o['stored_per_s']:,.0f}/s at {o['offered_per_s']:,.0f}/s offered; capacity "
            f"{c['stored_per_s']:,.0f}/s"
            + (
                ""
                if c["stored_per_s"] >= GOAL_RATE
                else f", {1 - c['stored_per_s'] / GOAL_RATE:.0%} short"
            ),
        ),
        f"  each flushed within {GOAL_FLUSH_S:g} s: "
        + _verdict(
            flushed,
            f"max {o['max_ms'] / 1000:.2f} s"
            + ("" if o["unconfirmed"] == 0 else f", {o['unconfirmed']:,} never confirmed"),
        ),
        f"  >= {GOAL_RATIO:g} of a raw copy: "
        + _verdict(
            ratio >= GOAL_RATIO,
            f"{ratio:.2f}" + ("" if ratio >= GOAL_RATIO else f", {GOAL_RATIO - ratio:.2f} short"),
        ),
        "  none lost on SIGTERM: "
        + _verdict(safe, f"lost {s['lost']:,}, doubled {s['doubled']:,} of {s['acknowledged']:,}"),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.ingest", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--rate", type=float, default=GOAL_RATE, help="events/s offered (default 50000)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase (default 10)")
    parser.add_argument(
        "--people", type=int, default=5000, help="distinct people the events come from"
    )
    parser.add_argument(
        "--sigterm-after", type=float, default=3.0, help="seconds of ingest before SIGTERM"
    )
    parser.add_argument("--writer-cpu", type=int, default=0, help="core for the writer (-1: any)")
    parser.add_argument("--pg-cpu", type=int, default=1, help="core for PostgreSQL (-1: any)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="capacity and raw-copy pairs, one after the other (default 3; the median "
        "ratio is the run's)",
    )
    parser.add_argument(
        "--batch-size", type=int, help="the writer's batch_size (default: the writer's own)"
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    # The SIGTERM phase's child process (internal).
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ids", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.sigterm_after < 0:
        parser.error("--rate and --seconds must be positive, --sigterm-after not negative")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.people < 1:
        parser.error("--people must be at least 1")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be positive")
    args.batch_size_arg = args.batch_size
    if args.batch_size is None:
        from hybridcon.store.engagement import EngagementWriter

        args.batch_size = inspect.signature(EngagementWriter).parameters["batch_size"].default
    args.writer_cpu = None if args.writer_cpu < 0 else args.writer_cpu
    args.pg_cpu = None if args.pg_cpu < 0 else args.pg_cpu
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        asyncio.run(_child(args))
        return 0
    try:
        figures = run(args)
    except (RuntimeError, OSError, asyncpg.PostgresError) as exc:
        print(f"ingest benchmark: the run could not be made: {exc}", file=sys.stderr)
        return 1
    print(report(figures, args), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
