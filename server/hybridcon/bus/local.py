"""The in-process bus: per-topic sequence numbers and a bounded history, one process.

Every sequenced message on a topic gets the next ``seq`` and is kept (as its encoded
JSON) in a bounded history, so a client that reconnects with ``since`` gets what it
missed. Sequence numbers start, per topic and per process, from the wall clock in
milliseconds, or above the topic's last number in the journal if that is higher: after a
restart they keep rising, never reusing a number a client may hold.

With a journal (the node's data directory), every sequenced message is also appended to
a file as it is delivered, and the history is read back from it at start, so a client
that comes back after a restart with its last ``seq`` gets what it missed instead of a
``reset``. The append is a plain ``write`` in the same step as the delivery: a process
killed with SIGKILL loses nothing of it (the kernel holds the written pages). A machine
that loses power may lose the file's tail; the journal records the kernel's boot id and
after a reboot its history is not trusted (a ``reset``), only its numbers. Why not
PostgreSQL: only chat lines are stored there with their ``seq`` (poll, Q&A, moderation
and stream pushes are not), and an asynchronous write would lose the last pushes before
a SIGKILL without a way to tell, which would make every resume after one a ``reset``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import structlog

from hybridcon.bus.protocol import Deliver, Reconnected
from hybridcon.errors import ConfigError

log = structlog.get_logger(__name__)

DEFAULT_HISTORY = 500
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
# The journal is rewritten with only the kept history once this many lines (and four
# times the kept ones) were appended since it was last written whole.
COMPACT_AFTER = 20_000


def _boot_id() -> bytes:
    try:
        return BOOT_ID.read_bytes().strip()
    except OSError:
        return b"unknown"


@dataclass
class _TopicLog:
    seq: int
    frames: deque[tuple[int, bytes]] = field(default_factory=deque)


class LocalBus:
    """Sequence numbers and history per topic; delivery to this process's subscribers.

    Args:
        deliver: called with ``(topic, frame)`` for every published message (or later,
            through :meth:`bind`); until then messages are only kept.
        history: how many sequenced messages each topic keeps for ``since``.
        epoch_ms: the first sequence base (tests pass a fixed value).
        journal: a file to keep the history in across restarts (read by :meth:`start`);
            None keeps it in memory only.
    """

    def __init__(
        self,
        deliver: Deliver | None = None,
        *,
        history: int = DEFAULT_HISTORY,
        epoch_ms: int | None = None,
        journal: Path | None = None,
    ) -> None:
        self._deliver: Deliver = deliver if deliver is not None else _nowhere
        self._history = history
        self._epoch = epoch_ms if epoch_ms is not None else int(time.time() * 1000)
        self._topics: dict[str, _TopicLog] = {}
        self._journal_path = journal
        self._journal: int | None = None  # the append descriptor while journaling
        self._lock: IO[bytes] | None = None
        self._appended = 0

    def bind(self, deliver: Deliver) -> None:
        """Set where published messages are delivered."""
        self._deliver = deliver

    async def start(self) -> None:
        """Read the journal's history back (if there is a journal) and keep appending.

        Raises:
            ConfigError: another process holds the journal (a second node on this data
                directory), or it cannot be written.
        """
        if self._journal_path is not None and self._journal is None:
            await asyncio.to_thread(self._open_journal, self._journal_path)

    async def stop(self) -> None:
        """Close the journal."""
        if self._journal is not None:
            os.close(self._journal)
            self._journal = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # --- the journal ---------------------------------------------------------------------

    def _open_journal(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            lock = open(path.with_name(path.name + ".lock"), "ab")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(f"cannot use the topic journal {path}: {exc}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ConfigError(
                f"another node is using the topic journal {path}; several nodes on one "
                "data directory need HYBRIDCON_REDIS_URL"
            ) from None
        self._lock = lock
        kept, lines = self._read_journal(path)
        log.info(
            "topic_journal_loaded", topics=len(kept.topics), messages=lines, trusted=kept.trusted
        )
        self._rewrite(path)
        self._journal = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _read_journal(self, path: Path) -> tuple[_Loaded, int]:
        """Fill every topic's history and number from the journal."""
        loaded = _Loaded()
        lines = 0
        try:
            journal = open(path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            return loaded, 0
        boot = _boot_id()
        with journal:
            for line in journal:
                if not line.endswith(b"\n"):
                    break  # torn last line: the rest was never written
                if line.startswith(b"#boot "):
                    if line[6:-1] != boot:
                        loaded.trusted = False
                    continue
                if line.startswith(b"#seq "):
                    with contextlib.suppress(ValueError):
                        number, name = line[5:-1].split(b" ", 1)
                        kept = self._log(name.decode())
                        kept.seq = max(kept.seq, int(number))
                    continue
                try:
                    seq_text, topic_bytes, payload = line[:-1].split(b" ", 2)
                    seq, topic = int(seq_text), topic_bytes.decode()
                except ValueError:
                    # A damaged line in the middle: what came before it cannot be
                    # relied on to be complete, on any topic.
                    for damaged in self._topics.values():
                        damaged.frames.clear()
                    continue
                lines += 1
                found = self._topics.get(topic)
                if found is None:
                    found = self._topics[topic] = _TopicLog(seq=self._epoch)
                topic_log = found
                topic_log.seq = max(topic_log.seq, seq)
                frames = topic_log.frames
                frames.append((seq, payload))
                if len(frames) > self._history:
                    frames.popleft()
                loaded.topics.add(topic)
        if not loaded.trusted:
            # Written before a reboot: the file's tail may have been lost with the page
            # cache. Keep the numbers (they only rise), drop the history (a reset).
            for topic_log in self._topics.values():
                topic_log.frames.clear()
        return loaded, lines

    def _rewrite(self, path: Path) -> None:
        """Write the journal anew with only the kept history (atomically, fsync'd)."""
        temp = path.with_name(path.name + ".new")
        with open(temp, "wb") as out:
            out.write(b"#boot %b\n" % _boot_id())
            for topic, topic_log in self._topics.items():
                name = topic.encode()
                out.writelines(b"%d %b %b\n" % (seq, name, p) for seq, p in topic_log.frames)
            # A topic whose history is empty (not trusted) still keeps its number.
            for topic, topic_log in self._topics.items():
                if not topic_log.frames and topic_log.seq > self._epoch:
                    out.write(b"#seq %d %b\n" % (topic_log.seq, topic.encode()))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
        self._appended = 0

    def _append(self, topic: str, seq: int, payload: bytes) -> None:
        assert self._journal is not None
        try:
            os.write(self._journal, b"%d %b %b\n" % (seq, topic.encode(), payload))
            self._appended += 1
            if self._appended >= COMPACT_AFTER and self._appended >= 4 * self._kept():
                assert self._journal_path is not None
                os.close(self._journal)
                self._journal = None
                self._rewrite(self._journal_path)
                self._journal = os.open(self._journal_path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            # A journal with a hole would answer `since` wrongly after a restart: remove
            # it and go on without (a restart then answers `reset`, as without a journal).
            log.error("topic_journal_failed", error=str(exc))
            if self._journal is not None:
                os.close(self._journal)
                self._journal = None
            if self._journal_path is not None:
                with contextlib.suppress(OSError):
                    self._journal_path.unlink()

    def _kept(self) -> int:
        return sum(len(t.frames) for t in self._topics.values())

    async def watch(self, topic: str) -> None:
        """Every topic is here already."""

    def on_reconnect(self, callback: Reconnected) -> None:
        """One process has no connection to lose: never called."""

    @property
    def connected(self) -> bool:
        """Always: there is nothing between this node and itself."""
        return True

    def publish_sequenced(
        self, topic: str, head: bytes, tail: bytes
    ) -> asyncio.Future[tuple[int, bytes]]:
        """Number, keep and deliver a message now; the future is already done."""
        seq = self.next_seq(topic)
        payload = b"%b%d%b" % (head, seq, tail)
        self.publish(topic, payload, seq)
        done: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        done.set_result((seq, payload))
        return done

    def _log(self, topic: str) -> _TopicLog:
        log = self._topics.get(topic)
        if log is None:
            log = self._topics[topic] = _TopicLog(seq=self._epoch)
        return log

    def next_seq(self, topic: str) -> int:
        """Reserve the next sequence number of ``topic`` (for a message about to be built)."""
        log = self._log(topic)
        log.seq += 1
        return log.seq

    def last_seq(self, topic: str) -> int:
        """The newest sequence number of ``topic`` (the base when nothing was sent yet)."""
        return self._log(topic).seq

    def publish(self, topic: str, payload: bytes, seq: int | None = None) -> None:
        """Deliver an encoded message; with ``seq``, keep it in the topic's history."""
        if seq is not None:
            frames = self._log(topic).frames
            frames.append((seq, payload))
            if len(frames) > self._history:
                frames.popleft()
            # After the history: a compaction in the append keeps this message too.
            if self._journal is not None:
                self._append(topic, seq, payload)
        self._deliver(topic, payload)

    def since(self, topic: str, seq: int) -> list[bytes] | None:
        """The messages after ``seq``, oldest first.

        Returns:
            The encoded messages, or ``None`` when history does not reach back to ``seq``
            (or ``seq`` is from the future, e.g. from before a restart with a clock that
            went back): the client must then reload the snapshot.
        """
        log = self._log(topic)
        if seq == log.seq:
            return []
        if seq > log.seq:
            return None
        frames = log.frames
        if not frames or frames[0][0] > seq + 1:
            return None
        return [payload for s, payload in frames if s > seq]


@dataclass
class _Loaded:
    topics: set[str] = field(default_factory=set)
    trusted: bool = True


def _nowhere(_topic: str, _payload: bytes) -> None:
    """Delivery before a hub is bound: nobody on this node subscribes yet."""
