"""The engagement writer: one batched task per node, spooling to a local file while
PostgreSQL is away, so the log behind the report loses nothing and stores nothing twice.

Drivers call :meth:`EngagementWriter.log` (synchronous, cheap, never fails for database
trouble). A single task stores the buffered events in batches with ``COPY``. When
PostgreSQL cannot take a batch (down, restarting, unreachable, pool exhausted), the
batch is appended to a spool file (JSON lines, fsync'd) and the writer keeps appending
there, so the order of events is kept, until a replay of the whole spool succeeds;
then the file is removed and batches go straight to the table again. A spool left by
a crash is replayed at the next start.

Exactly once: every event carries an ``event_id`` (UNIQUE in ``engagement_events``).
The replay sends each chunk with ``COPY`` too (most spooled events were never sent:
PostgreSQL was away, or the writer fell behind); a chunk of which some rows are stored
already (the acknowledgement lost with the connection, or the process dying before the
spool was removed) fails on the unique key as a whole, and is then inserted with
``ON CONFLICT (event_id) DO NOTHING``. Either way it is stored once.

File I/O on the spool is synchronous on purpose: appends happen only while PostgreSQL
is away (a few per second), and with no ``await`` between reading the end of the
spool and removing it, no event can slip in between and be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, TypeAlias

import asyncpg
import structlog

from hybridcon.core.engagement import EngagementEvent
from hybridcon.errors import ConfigError, Invalid

log = structlog.get_logger(__name__)

TABLE = "engagement_events"
COLUMNS = ("event_id", "ts", "kind", "actor", "topic", "data")

# For a chunk of which some rows are stored already: an array insert that skips them.
# ORDER BY the ordinality keeps the spool's order in the table's ids. Measured here
# against COPY into a temporary table followed by the same INSERT ... SELECT: both
# ~55k rows/s, so the one statement without session state wins. Plain COPY, ~75k
# rows/s, is tried first, the replay included: a writer that fell behind spools what
# it could not hold, and a replay at the insert's speed could not catch up with events
# arriving at the COPY's.
INSERT_SKIPPING_STORED = """
INSERT INTO engagement_events (event_id, ts, kind, actor, topic, data)
SELECT e, t, k, a, o, d
FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::jsonb[])
     WITH ORDINALITY AS x(e, t, k, a, o, d, n)
ORDER BY n
ON CONFLICT (event_id) DO NOTHING
"""

# SQLSTATE classes meaning "these rows are wrong" (22 data exception, 23 integrity
# violation): retrying cannot help, so the rows are isolated and dropped. Any other
# failure (connection, shutdown, missing schema, a bug) keeps the events in the spool.
REFUSED_SQLSTATE_CLASSES = frozenset({"22", "23"})

Record: TypeAlias = tuple[uuid.UUID, datetime, str, str | None, str | None, str]
CountHook: TypeAlias = Callable[[str, int], None]


def refused(exc: BaseException) -> bool:
    """Whether PostgreSQL (or asyncpg, encoding the arguments) refused the rows themselves.

    Args:
        exc: what storing a batch raised.

    Returns:
        True for data errors that a retry would repeat; False for everything else,
        which the writer treats as "PostgreSQL is unavailable, keep the events".
    """
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None) or ""
        return sqlstate[:2] in REFUSED_SQLSTATE_CLASSES
    # asyncpg's client-side DataError (an argument it cannot encode) is both of these.
    return isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)


class SpoolFull(OSError):
    """The spool is at its size limit: refused as a full disk would refuse it."""


class EngagementWriter:
    """Stores engagement events in batches; spools them to a file while PostgreSQL is away.

    Args:
        pool: the node's connection pool.
        spool_path: the spool file (JSON lines); its directory is created if needed. One
            writer per spool: a second one on the same path fails to start.
        batch_size: events per ``COPY`` and per replayed chunk.
        flush_interval: seconds between flushes of a partial batch.
        max_buffered: events held in memory at most; reaching it moves them to the spool.
        retry_interval: seconds between replay attempts while spooling.
        timeout: seconds allowed to acquire a connection and to run one statement.
        on_count: called with ``(counter, n)`` whenever a counter grows (``written``,
            ``spooled``, ``replayed``, ``dropped``, ``corrupt``), e.g. to feed Prometheus.
        max_spool_bytes: the spool's size on disk at most; past it the spool refuses
            like a full disk (events are kept in memory up to ``max_buffered``, then
            dropped and counted), so an outage cannot fill the node's disk.
        spool_slots: how many writers may share the spool's folder (nodes of one event on
            one machine): each takes the first free of ``engagement.jsonl``,
            ``engagement-2.jsonl``, …, and replays what a writer before it left there.
        busy_hint: said after "another engagement writer is using the spool" when every
            slot is taken.
    """

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        spool_path: Path,
        batch_size: int = 2000,
        flush_interval: float = 0.25,
        max_buffered: int = 50_000,
        retry_interval: float = 1.0,
        timeout: float = 10.0,
        on_count: CountHook | None = None,
        spool_slots: int = 1,
        busy_hint: str = "",
        max_spool_bytes: int = 1 << 30,
    ) -> None:
        if batch_size < 1 or max_buffered < 1 or spool_slots < 1:
            raise ValueError("batch_size and max_buffered must be positive")
        self._pool = pool
        self._spool_path = spool_path
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_buffered = max_buffered
        self._retry_interval = retry_interval
        self._timeout = timeout
        self._on_count = on_count
        self._spool_slots = spool_slots
        self._max_spool_bytes = max_spool_bytes
        self._busy_hint = busy_hint

        self._buffer: list[EngagementEvent] = []
        # The batch being sent directly; if memory runs over meanwhile it is spooled
        # too (ahead of the newer events) and a success leaves a copy that the replay
        # recognises by event_id.
        self._inflight: list[EngagementEvent] = []
        self._inflight_spooled = False
        # While the spool file exists, every batch goes there (order is kept).
        self._spooling = False
        # Bytes at the start of the spool already stored by the replay in progress.
        self._spool_offset = 0
        # A torn last line (crash, full disk) must not swallow the next appended event.
        self._spool_needs_newline = False
        self._failing = False
        # The spool refused (full disk, or its limit): said once until it takes events
        # again, not once per flush (the fault suite saw 200 error lines in 3 s).
        self._spool_refusing = False

        self._wake = asyncio.Event()
        self._stopping = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._lock_file: IO[bytes] | None = None
        self._counts = {"written": 0, "spooled": 0, "replayed": 0, "dropped": 0, "corrupt": 0}

    # -- counters -------------------------------------------------------------------

    @property
    def written(self) -> int:
        """Rows this writer added to ``engagement_events`` (directly or by replay)."""
        return self._counts["written"]

    @property
    def spooled(self) -> int:
        """Events appended to the spool file."""
        return self._counts["spooled"]

    @property
    def replayed(self) -> int:
        """Spooled events since confirmed in PostgreSQL (added, or found already there)."""
        return self._counts["replayed"]

    @property
    def dropped(self) -> int:
        """Events refused as invalid (not JSON, or rejected by PostgreSQL), or lost when
        neither PostgreSQL nor the spool's disk could take them."""
        return self._counts["dropped"]

    @property
    def corrupt(self) -> int:
        """Unreadable spool lines skipped (torn writes)."""
        return self._counts["corrupt"]

    @property
    def buffered(self) -> int:
        """Events in memory, not yet stored or spooled."""
        return len(self._buffer)

    @property
    def spooling(self) -> bool:
        """Whether events are going to the spool file (PostgreSQL away, or replay pending)."""
        return self._spooling

    def _count(self, name: str, n: int) -> None:
        if n <= 0:
            return
        self._counts[name] += n
        if self._on_count is not None:
            self._on_count(name, n)

    # -- the public surface ---------------------------------------------------------

    def log(self, event: EngagementEvent) -> None:
        """Queue one event for storage. Never blocks on PostgreSQL, never raises for it.

        Call it from the event loop's thread (it is not thread-safe). When ``max_buffered``
        events are waiting, they are appended to the spool here, synchronously.
        Before :meth:`start` events wait in memory; after :meth:`stop` they are appended
        to the spool at once (to be replayed at the next start).
        """
        if self._closed:
            self._spool_now([event])
            return
        self._buffer.append(event)
        size = len(self._buffer)
        if size >= self._max_buffered:
            self._spill()
        elif size >= self._batch_size:
            self._wake.set()

    def start(self) -> None:
        """Take the spool, find what a previous run left there, and start the writer task.

        Must be called from a running event loop.

        Raises:
            ConfigError: another writer holds this spool, or its directory is unusable.
        """
        if self._task is not None or self._closed:
            raise RuntimeError("an engagement writer starts once")
        self._take_spool_lock()
        try:
            size = self._spool_path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size > 0:
            self._spooling = True
            self._spool_needs_newline = not self._spool_ends_with_newline()
            log.info("engagement_spool_found", path=str(self._spool_path), bytes=size)
        else:
            self._spool_path.unlink(missing_ok=True)
        self._task = asyncio.create_task(self._run(), name="engagement-writer")

    async def stop(self) -> None:
        """Store everything buffered, then stop the task.

        What PostgreSQL cannot take now (it is away) is left in the fsync'd spool, to be
        replayed by the next writer on this spool path. Call it after the producers have
        stopped; events logged later still reach the spool.
        """
        if self._closed:
            return
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        self._closed = True
        # Events logged while the last flush was under way.
        self._spool_buffer()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    # -- the task -------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_retry = loop.time()  # a spool left by a previous run is replayed first
        final_passes = 0
        while True:
            try:
                if self._spooling:
                    # Newer events go behind the spooled ones: the table keeps their order.
                    self._spool_buffer()
                    due = self._stopping or loop.time() >= next_retry
                    if due and not await self._replay():
                        next_retry = loop.time() + self._retry_interval
                if not self._spooling:
                    await self._flush_direct()
                    if self._spooling:
                        next_retry = loop.time() + self._retry_interval
            except Exception:
                # A bug or an unexpected disk error must not end the task: the events are
                # still in memory or in the spool, and a later pass tries again.
                log.exception("engagement_writer_error")
                next_retry = loop.time() + self._retry_interval
                if self._stopping:
                    return
            if self._stopping:
                final_passes += 1
                # Events may have arrived during the last flush; a few more passes take
                # them while PostgreSQL is there, stop() spools whatever is left.
                if not self._buffer or self._spooling or final_passes >= 3:
                    return
                continue
            timeout = self._flush_interval
            if self._spooling:
                timeout = min(timeout, max(0.0, next_retry - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    async def _flush_direct(self) -> None:
        while self._buffer and not self._spooling:
            batch = self._buffer[: self._batch_size]
            del self._buffer[: self._batch_size]
            self._inflight, self._inflight_spooled = batch, False
            try:
                self._count("written", await self._store(batch, skip_stored=False))
                self._recovered()
            except Exception as exc:
                # Not a refusal of the rows (those are handled inside _store): PostgreSQL
                # is away or broken. Keep the batch and everything after it, in order.
                self._unavailable(exc)
                pending = self._buffer
                self._buffer = []
                if not self._inflight_spooled:
                    pending = batch + pending
                if not self._append_or_keep(pending):
                    return
            finally:
                self._inflight, self._inflight_spooled = [], False

    async def _replay(self) -> bool:
        """Store the spool in order, chunk by chunk; True once all of it is in and the
        file is removed, False when PostgreSQL is still away."""
        while True:
            events, end, corrupt = self._read_spool(self._spool_offset, self._batch_size)
            if end == self._spool_offset:
                # Nothing left to read, and no await since the read: no event can have
                # been appended in between, so the file can go.
                self._spool_path.unlink(missing_ok=True)
                self._spooling = False
                self._spool_offset = 0
                self._spool_needs_newline = False
                log.info("engagement_spool_replayed", replayed=self.replayed)
                return True
            try:
                # COPY first: a chunk with rows already stored fails on the unique key
                # and is then inserted skipping them (_insert).
                inserted = await self._store(events, skip_stored=False)
            except Exception as exc:
                self._unavailable(exc)
                return False
            self._recovered()
            for offset, error in corrupt:
                log.warning(
                    "engagement_spool_line_skipped",
                    path=str(self._spool_path),
                    offset=offset,
                    error=error,
                )
            self._count("corrupt", len(corrupt))
            self._count("replayed", len(events))
            self._count("written", inserted)
            self._spool_offset = end
            # A long replay must not let memory grow: newer events join the spool's tail.
            if len(self._buffer) >= self._batch_size:
                self._spool_buffer()

    def _unavailable(self, exc: Exception) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "engagement_db_unavailable",
                error=f"{type(exc).__name__}: {exc}",
                spool=str(self._spool_path),
            )
        else:
            log.debug("engagement_db_still_unavailable", error=f"{type(exc).__name__}: {exc}")

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("engagement_db_available")

    # -- PostgreSQL -----------------------------------------------------------------

    async def _store(self, events: Sequence[EngagementEvent], *, skip_stored: bool) -> int:
        """Insert ``events`` in order; returns how many rows were added.

        Raises:
            Exception: anything but a refusal of the rows (PostgreSQL away, or a bug).
        """
        records: list[Record] = []
        for event in events:
            try:
                data = event.data_json()
            except Invalid as exc:
                self._drop(event, str(exc))
                continue
            records.append(
                (event.event_id, event.ts, str(event.kind), event.actor, event.topic, data)
            )
        return await self._insert(records, skip_stored=skip_stored)

    async def _insert(self, records: list[Record], *, skip_stored: bool) -> int:
        if not records:
            return 0
        try:
            async with self._pool.acquire(timeout=self._timeout) as conn:
                if skip_stored:
                    status = await conn.execute(
                        INSERT_SKIPPING_STORED,
                        *(list(column) for column in zip(*records, strict=True)),
                        timeout=self._timeout,
                    )
                    return int(status.rsplit(" ", 1)[-1])
                await conn.copy_records_to_table(
                    TABLE, records=records, columns=COLUMNS, timeout=self._timeout
                )
                return len(records)
        except asyncpg.UniqueViolationError:
            if skip_stored:
                raise
            # Some of these are stored already (an event logged twice): add the rest once.
            return await self._insert(records, skip_stored=True)
        except Exception as exc:
            if not refused(exc):
                raise
            if len(records) == 1:
                self._drop_record(records[0], f"{type(exc).__name__}: {exc}")
                return 0
            # Halve until the refused rows are alone: one bad event must not cost its batch.
            middle = len(records) // 2
            first = await self._insert(records[:middle], skip_stored=skip_stored)
            return first + await self._insert(records[middle:], skip_stored=skip_stored)

    def _drop(self, event: EngagementEvent, reason: str) -> None:
        log.error("engagement_event_dropped", event_id=str(event.event_id), reason=reason)
        self._count("dropped", 1)

    def _drop_record(self, record: Record, reason: str) -> None:
        log.error(
            "engagement_event_dropped", event_id=str(record[0]), kind=record[2], reason=reason
        )
        self._count("dropped", 1)

    # -- the spool file -------------------------------------------------------------

    def _spill(self) -> None:
        """The buffer is full (PostgreSQL slower than the events, or away while the task
        waits on it): move it to the spool, behind the batch in flight."""
        pending = self._buffer
        self._buffer = []
        inflight = [] if self._inflight_spooled else self._inflight
        try:
            self._append_spool(inflight + pending)
        except OSError as exc:
            # Neither PostgreSQL nor the disk can take them; memory must stay bounded.
            log.error("engagement_events_lost", count=len(pending), error=str(exc), reason="spool")
            self._count("dropped", len(pending))
            return
        self._inflight_spooled = True

    def _spool_buffer(self) -> None:
        if self._buffer:
            pending = self._buffer
            self._buffer = []
            self._append_or_keep(pending)

    def _append_or_keep(self, events: list[EngagementEvent]) -> bool:
        """Append ``events`` to the spool, or put them back at the head of the buffer
        (to be tried again) when the disk refuses. Returns whether they were spooled."""
        try:
            self._append_spool(events)
        except OSError as exc:
            if not self._spool_refusing:
                self._spool_refusing = True
                log.error("engagement_spool_write_failed", error=str(exc), kept=len(events))
            else:
                log.debug("engagement_spool_still_refusing", error=str(exc), kept=len(events))
            self._buffer[:0] = events
            return False
        if self._spool_refusing:
            self._spool_refusing = False
            log.info("engagement_spool_writable")
        return True

    def _spool_now(self, events: list[EngagementEvent]) -> None:
        try:
            self._append_spool(events)
        except OSError as exc:
            log.error("engagement_events_lost", count=len(events), error=str(exc))
            self._count("dropped", len(events))

    def _append_spool(self, events: Sequence[EngagementEvent]) -> None:
        """Append ``events`` as JSON lines and fsync; the writer is spooling from now on.

        Raises:
            OSError: the spool cannot be written (what was written is still replayed).
        """
        lines: list[bytes] = []
        for event in events:
            try:
                lines.append(event.to_line())
            except Invalid as exc:
                self._drop(event, str(exc))
        if not lines:
            return
        # After a torn line, start on a fresh one; empty lines are skipped on reading.
        data = (b"\n" if self._spool_needs_newline else b"") + b"".join(lines)
        try:
            size = self._spool_path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size + len(data) > self._max_spool_bytes:
            raise SpoolFull(
                errno.ENOSPC,
                f"the spool would pass its limit of {self._max_spool_bytes} bytes",
                str(self._spool_path),
            )
        self._spooling = True
        created = not self._spool_path.exists()
        if created:
            # log() may overflow before start() has made the directory.
            self._spool_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._spool_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            self._spool_needs_newline = True
            raise
        finally:
            os.close(fd)
        self._spool_needs_newline = False
        if created:
            # Make the new directory entry durable too, or a crash could lose the file.
            dir_fd = os.open(self._spool_path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._count("spooled", len(lines))

    def _read_spool(
        self, offset: int, limit: int
    ) -> tuple[list[EngagementEvent], int, list[tuple[int, str]]]:
        """Up to ``limit`` events from byte ``offset`` on.

        Returns:
            The events, the offset after them, and the unreadable lines (offset, error).
        """
        events: list[EngagementEvent] = []
        corrupt: list[tuple[int, str]] = []
        try:
            with open(self._spool_path, "rb") as spool:
                spool.seek(offset)
                while len(events) < limit:
                    line = spool.readline()
                    if not line:
                        break
                    start, offset = offset, offset + len(line)
                    if not line.strip():
                        continue
                    try:
                        events.append(EngagementEvent.from_line(line))
                    except Invalid as exc:
                        corrupt.append((start, exc.message))
        except FileNotFoundError:
            pass
        return events, offset, corrupt

    def _spool_ends_with_newline(self) -> bool:
        with open(self._spool_path, "rb") as spool:
            spool.seek(-1, os.SEEK_END)
            return spool.read(1) == b"\n"

    @property
    def spool_path(self) -> Path:
        """The spool this writer uses (known once started)."""
        return self._spool_path

    def _take_spool_lock(self) -> None:
        first = self._spool_path
        for slot in range(1, self._spool_slots + 1):
            path = first if slot == 1 else first.with_name(f"{first.stem}-{slot}{first.suffix}")
            lock_file = self._open_lock(path)
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock_file.close()
                continue
            self._spool_path = path
            self._lock_file = lock_file
            return
        hint = f"; {self._busy_hint}" if self._busy_hint else ""
        raise ConfigError(f"another engagement writer is using the spool {first}{hint}")

    @staticmethod
    def _open_lock(spool: Path) -> IO[bytes]:
        lock_path = spool.with_name(spool.name + ".lock")
        try:
            spool.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            return open(lock_path, "ab")
        except OSError as exc:
            raise ConfigError(f"cannot use the engagement spool {spool}: {exc}") from None


def attentive(row: str = "") -> str:
    """SQL that is true for an attentive heartbeat (R6 in docs/report-definitions.md): the
    player playing and the page visible. ``row`` is the engagement row's alias, if any.
    The report, the live view and the attendance export share this one condition."""
    p = f"{row}." if row else ""
    return (
        f"{p}kind = 'heartbeat' AND {p}data->>'playing' = 'true' AND {p}data->>'visible' = 'true'"
    )
