"""The bus between nodes: Redis (or Valkey) pub/sub for fan-out, a Stream per topic for ``since``.

Per topic, Redis holds a counter (the topic's ``seq``), a bounded Stream of its sequenced
messages (entry id ``<seq>-0``, trimmed to about ``history`` entries) and a pub/sub
channel; the three share a hash tag, so in a cluster they live on one shard. A
sequenced message is numbered, stored and published by one script, atomically, so
every node sees the same order; the number is spliced into the message there
(``head + seq + tail``, see :mod:`hybridcon.bus.protocol`).

Every node delivers a topic's messages, its own included, as they come back from the
channel, so all nodes deliver the same bytes in the same order. A node listens to a
topic from the first time one of its clients subscribes to it (:meth:`RedisBus.watch`),
and then keeps a local copy of the topic's recent history (filled from the Stream when
it starts listening), from which ``since`` is answered without a round trip.

redis-py does not resubscribe after a dropped connection: a supervisor task reconnects
(retrying at least once a second), subscribes again to every watched topic, and
delivers from the Streams what was published meanwhile, in order and once, before live
messages of that topic. It also pings Redis every second: a Redis that hangs (a paused
process, a network that drops packets) counts as away after :data:`SILENT_MAX` seconds
without an answer, as one that refuses does at once. Should a Stream have been trimmed
past what this node delivered (more than ``history`` messages while it was away), the
node says so in its log and answers ``since`` from before that with a reset.

Publishing waits for Redis (up to ``publish_timeout`` from the moment each message is
queued, a hanging Redis included) while it is away; a publish that cannot be sent by
then fails with ``Unavailable``. A publish whose command Redis received but did not
answer in time (a hang) may still be carried out when Redis resumes: the caller that
withdraws what it stored must also publish the withdrawal (see ``realtime/chat.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from hybridcon.bus.protocol import Deliver, Reconnected
from hybridcon.errors import Unavailable

log = structlog.get_logger(__name__)

# Number, store and publish one sequenced message. The counter starts from the caller's
# clock in milliseconds when the topic has none (a Redis that lost its data): numbers keep
# rising, so a client's `since` from before is older than any history, never mistaken
# for a newer message.
_PUBLISH = """
redis.call('SET', KEYS[1], ARGV[3], 'NX')
local seq = redis.call('INCR', KEYS[1])
local msg = ARGV[1] .. seq .. ARGV[2]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 'm', msg)
redis.call(ARGV[5], ARGV[6], 'S' .. seq .. ' ' .. msg)
return seq
"""

RECONNECT_FIRST = 0.1
# At most this long between attempts: a listener that comes back later than the
# publishers (whose retries reach the restarted Redis first) would find the Stream
# trimmed past what it missed once more than `history` messages went out meanwhile.
RECONNECT_MAX = 1.0
PING_EVERY = 1.0
# No answer on the listening connection for this long: Redis hangs; the bus is away.
SILENT_MAX = 3.0
# While Redis stays away, its absence is logged again at most this often.
LOG_AGAIN = 10.0
# How long stop() waits for the send and listen loops before it closes the connection.
STOP_WAIT = 5.0


def _keys(topic: str) -> tuple[str, str, str]:
    """The counter, the Stream and the channel of ``topic`` (one hash slot)."""
    tag = "{" + topic + "}"
    return f"hc:{tag}:seq", f"hc:{tag}:log", f"hc:{tag}"


@dataclass
class _Topic:
    """What this node knows of a watched topic."""

    seq: int = 0
    frames: deque[tuple[int, bytes]] = field(default_factory=deque)
    # While its history is (re)loaded from the Stream, live messages wait here.
    held: list[tuple[int | None, bytes]] | None = None


@dataclass
class _Send:
    topic: str
    head: bytes
    tail: bytes | None  # None: an unsequenced message (head is all of it)
    done: asyncio.Future[tuple[int, bytes]] | None
    deadline: float  # time.monotonic() by which it is sent, or failed


class RedisBus:
    """A :class:`~hybridcon.bus.protocol.Bus` over Redis or Valkey.

    Args:
        url: ``redis://host:port/db``.
        history: sequenced messages kept per topic (in the Stream, and on each node).
        publish_timeout: seconds a publish may wait for Redis before it fails.
    """

    def __init__(self, url: str, *, history: int = 500, publish_timeout: float = 4.0) -> None:
        self._url = url
        self._history = history
        self._publish_timeout = publish_timeout
        self._deliver: Deliver = _nowhere
        self._topics: dict[str, _Topic] = {}
        self._by_channel: dict[str, str] = {}
        self._queue: list[_Send] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._redis: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._sharded = False
        self._script: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        # Set by stop(): the loops end by themselves too, because redis-py can swallow a
        # cancellation that lands inside a command (seen as a shutdown that hung).
        self._stopping = False
        self._connected = asyncio.Event()
        self._reconnected: list[Reconnected] = []
        self.reconnects = 0

    # --- life cycle ----------------------------------------------------------------------

    def bind(self, deliver: Deliver) -> None:
        """Set where messages are delivered on this node."""
        self._deliver = deliver

    def on_reconnect(self, callback: Reconnected) -> None:
        """Call ``callback`` after each reconnect, once every watched topic is listened
        to again and caught up (so nothing published after it is missed)."""
        self._reconnected.append(callback)

    @property
    def connected(self) -> bool:
        """Whether the listener is connected to Redis now."""
        return self._connected.is_set()

    @property
    def client(self) -> aioredis.Redis:
        """The connection pool, for state kept in Redis beside the topics.

        Raises:
            Unavailable: before :meth:`start`.
        """
        if self._redis is None:
            raise Unavailable("the Redis bus is not started")
        return self._redis

    async def start(self) -> None:
        """Connect, learn whether the server has sharded pub/sub, start the tasks.

        Raises:
            Unavailable: Redis does not answer.
        """
        # No command waits longer than a publish may (a hanging Redis): the viewer
        # counts, the connection cap and slow mode give up and carry on without it.
        self._redis = aioredis.Redis.from_url(
            self._url,
            health_check_interval=5,
            socket_timeout=self._publish_timeout,
            socket_connect_timeout=self._publish_timeout,
        )
        try:
            await self._redis.ping()
            self._sharded = await self._has_sharded_pubsub()
            # A registered script is loaded again by itself when Redis lost it (a restart).
            self._script = self._redis.register_script(_PUBLISH)
        except (RedisError, OSError) as exc:
            await self._redis.aclose()
            raise Unavailable(f"Redis at {self._url} does not answer: {exc}") from None
        self._tasks = [
            asyncio.create_task(self._listen(), name="redis-bus-listen"),
            asyncio.create_task(self._send_loop(), name="redis-bus-send"),
        ]
        log.info("redis_bus_started", sharded=self._sharded)

    async def stop(self) -> None:
        """Send what is queued (briefly), then stop listening and disconnect."""
        if not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 2.0)
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        _done, stuck = await asyncio.wait(self._tasks, timeout=STOP_WAIT)
        if stuck:  # left to the loop's end; the connection is closed under them below
            log.warning("redis_bus_task_stuck", tasks=sorted(t.get_name() for t in stuck))
        self._tasks = []
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    async def _has_sharded_pubsub(self) -> bool:
        assert self._redis is not None
        try:
            await self._redis.execute_command("PUBSUB", "SHARDNUMSUB")  # type: ignore[no-untyped-call]
        except ResponseError:
            return False
        return True

    # --- publishing ----------------------------------------------------------------------

    def publish_sequenced(
        self, topic: str, head: bytes, tail: bytes
    ) -> asyncio.Future[tuple[int, bytes]]:
        """Queue a sequenced message; the future has its seq once Redis ordered it."""
        done: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        # Callers that do not need the seq never await it: a failure is logged here.
        done.add_done_callback(_log_failure)
        self._queue.append(_Send(topic, head, tail, done, self._deadline()))
        self._idle.clear()
        self._wake.set()
        return done

    def publish(self, topic: str, payload: bytes, seq: int | None = None) -> None:
        """Queue an unsequenced message (in order with the sequenced ones)."""
        self._queue.append(_Send(topic, payload, None, None, self._deadline()))
        self._idle.clear()
        self._wake.set()

    def _deadline(self) -> float:
        return time.monotonic() + self._publish_timeout

    async def _send_loop(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                await self._send(batch)
            self._idle.set()

    async def _send(self, batch: list[_Send]) -> None:
        """One pipeline for the batch, in order; retried while Redis is away or silent,
        each message until its deadline, then failed with ``Unavailable``."""
        wait = RECONNECT_FIRST
        failing = False
        while batch:
            first = min(send.deadline for send in batch)
            try:
                # A hanging Redis answers nothing: the attempt ends at the first deadline.
                async with asyncio.timeout(max(first - time.monotonic(), RECONNECT_FIRST)):
                    results = await self._execute(batch)
            except (RedisError, OSError) as exc:  # TimeoutError is an OSError
                now = time.monotonic()
                expired = [send for send in batch if send.deadline <= now]
                if expired:
                    if not failing:  # once per batch, not per message or attempt
                        log.warning(
                            "redis_publish_failed",
                            error=str(exc) or type(exc).__name__,
                            messages=len(expired),
                        )
                    failing = True
                    for send in expired:
                        if send.done is not None and not send.done.done():
                            send.done.set_exception(
                                Unavailable("the message could not be sent; please try again")
                            )
                    batch = [send for send in batch if send.deadline > now]
                if batch:
                    pause = min(wait, min(send.deadline for send in batch) - now)
                    await asyncio.sleep(max(pause, 0.0))
                    wait = min(wait * 2, RECONNECT_MAX)
                continue
            for send, result in zip(batch, results, strict=True):
                if send.done is not None and send.tail is not None and not send.done.done():
                    seq = int(result)
                    send.done.set_result((seq, b"%b%d%b" % (send.head, seq, send.tail)))
            return

    async def _execute(self, batch: list[_Send]) -> list[Any]:
        assert self._redis is not None
        command = "SPUBLISH" if self._sharded else "PUBLISH"
        pipe = self._redis.pipeline(transaction=False)
        now_ms = int(time.time() * 1000)
        for send in batch:
            seq_key, log_key, channel = _keys(send.topic)
            if send.tail is None:
                pipe.execute_command(command, channel, b"U " + send.head)
            else:
                # Awaiting it only queues the call on the pipeline.
                await self._script(
                    keys=[seq_key, log_key],
                    args=[send.head, send.tail, now_ms, self._history, command, channel],
                    client=pipe,
                )
        return list(await pipe.execute())

    # --- listening -----------------------------------------------------------------------

    async def watch(self, topic: str) -> None:
        """Listen to ``topic`` from now on (once), with its recent history loaded.

        Raises:
            Unavailable: Redis has been away for ``publish_timeout`` seconds.
        """
        if topic in self._topics:
            return
        try:
            await asyncio.wait_for(self._connected.wait(), self._publish_timeout)
        except TimeoutError:
            raise Unavailable(f"{topic} cannot be followed now; please try again") from None
        if topic in self._topics:  # watched by another request meanwhile
            return
        state = self._topics[topic] = _Topic(held=[])
        channel = _keys(topic)[2]
        self._by_channel[channel] = topic
        await self._subscribe([channel])
        await self._catch_up(topic, state, reload=True)

    async def _subscribe(self, channels: list[str]) -> None:
        if not channels:
            return
        if self._sharded:
            await self._pubsub.ssubscribe(*channels)
        else:
            await self._pubsub.subscribe(*channels)

    async def _catch_up(self, topic: str, state: _Topic, *, reload: bool) -> None:
        """Fill ``topic``'s history from its Stream, then let held live messages through.

        Args:
            reload: take the newest ``history`` entries (first watch); otherwise only the
                entries after the last one this node delivered (after a reconnect),
                which are delivered too.
        """
        assert self._redis is not None
        seq_key, log_key, _ = _keys(topic)
        if reload:
            # The counter and the Stream change together (one script): read them together.
            # A topic without a counter gets its base now, as the first publish would give
            # it: a client subscribing before anything is said can come back with `since`.
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(seq_key, int(time.time() * 1000), nx=True)
            pipe.get(seq_key)
            pipe.xrevrange(log_key, count=self._history)
            _, current, entries = await pipe.execute()
            entries.reverse()
            state.seq = int(current) if current else 0
        else:
            # What was trimmed from the Stream is read with it: entries after the last
            # this node delivered that are gone leave a gap it cannot fill.
            pipe = self._redis.pipeline(transaction=True)
            pipe.xrange(log_key, min=f"{state.seq + 1}-0")
            pipe.xinfo_stream(log_key)
            entries, info = await pipe.execute(raise_on_error=False)
            if isinstance(entries, Exception):
                raise entries
            trimmed = _last_trimmed(info)
            if trimmed > state.seq:
                log.error(
                    "redis_bus_history_lost",
                    topic=topic,
                    delivered_up_to=state.seq,
                    lost_up_to=trimmed,
                    history=self._history,
                )
                # `since` from before the gap gets a reset; what is left is delivered.
                state.frames.clear()
        for entry_id, fields in entries:
            seq = int(entry_id.split(b"-")[0])
            if not reload and seq <= state.seq:
                continue
            payload = fields[b"m"]
            self._keep(state, seq, payload)
            if not reload:
                self._deliver(topic, payload)
        held, state.held = state.held or [], None
        for seq_or_none, payload in held:
            self._arrived(topic, state, seq_or_none, payload)

    def _keep(self, state: _Topic, seq: int, payload: bytes) -> None:
        state.frames.append((seq, payload))
        if len(state.frames) > self._history:
            state.frames.popleft()
        state.seq = max(state.seq, seq)

    def _arrived(self, topic: str, state: _Topic, seq: int | None, payload: bytes) -> None:
        if state.held is not None:
            state.held.append((seq, payload))
            return
        if seq is not None:
            if seq <= state.seq:
                return  # already delivered from the Stream
            self._keep(state, seq, payload)
        self._deliver(topic, payload)

    def _received(self, channel: bytes, data: bytes) -> None:
        topic = self._by_channel.get(channel.decode())
        state = self._topics.get(topic) if topic is not None else None
        if topic is None or state is None:
            return
        if data.startswith(b"S"):
            number, _, payload = data[1:].partition(b" ")
            self._arrived(topic, state, int(number), payload)
        elif data.startswith(b"U "):
            self._arrived(topic, state, None, data[2:])

    async def _listen(self) -> None:
        """The supervisor: listen; after a drop, reconnect, resubscribe and catch up."""
        assert self._redis is not None
        wait = RECONNECT_FIRST
        first = True
        away_since: float | None = None
        logged_at = 0.0
        attempts = 0
        while not self._stopping:
            try:
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                if not first:
                    for state in self._topics.values():
                        state.held = []
                await self._subscribe(list(self._by_channel))
                await self._pubsub.ping()
                await self._answered()  # a Redis that accepts but hangs is not back
                self._connected.set()
                if not first:
                    self.reconnects += 1
                    away = time.monotonic() - away_since if away_since is not None else 0.0
                    log.info(
                        "redis_bus_reconnected",
                        topics=len(self._topics),
                        away_seconds=round(away, 1),
                    )
                    for topic, state in list(self._topics.items()):
                        await self._catch_up(topic, state, reload=False)
                    for callback in self._reconnected:
                        callback()
                first, wait, away_since, attempts = False, RECONNECT_FIRST, None, 0
                await self._receive()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._connected.clear()
                now = time.monotonic()
                attempts += 1
                if away_since is None:
                    away_since = logged_at = now
                    log.warning("redis_bus_disconnected", error=str(exc) or type(exc).__name__)
                elif now - logged_at >= LOG_AGAIN:
                    logged_at = now
                    log.warning(
                        "redis_bus_still_away",
                        error=str(exc) or type(exc).__name__,
                        seconds=round(now - away_since),
                        attempts=attempts,
                    )
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await self._pubsub.aclose()
                await asyncio.sleep(wait)
                wait = min(wait * 2, RECONNECT_MAX)

    async def _next(self, wait: float) -> dict[str, Any] | None:
        """The next message, pong or None after ``wait`` seconds of nothing."""
        if self._sharded:
            msg = await self._pubsub.get_sharded_message(timeout=wait)
        else:
            msg = await self._pubsub.get_message(timeout=wait)
        return msg  # type: ignore[no-any-return]

    async def _answered(self) -> None:
        """Wait for the answer to the ping just sent; what comes before it is received as
        usual (held back while its topic catches up).

        Raises:
            RedisConnectionError: no answer within :data:`SILENT_MAX` seconds.
        """
        deadline = time.monotonic() + SILENT_MAX
        while (left := deadline - time.monotonic()) > 0:
            msg = await self._next(min(left, PING_EVERY))
            if msg is None:
                continue
            if msg["type"] == "pong":
                return
            if msg["type"] in ("message", "smessage"):
                self._received(msg["channel"], msg["data"])
        raise RedisConnectionError(f"Redis did not answer for {SILENT_MAX:.0f} s")

    async def _receive(self) -> None:
        """Deliver what comes in, and ping every second: a Redis silent for
        :data:`SILENT_MAX` seconds is taken as gone.

        Raises:
            RedisError, OSError: the connection failed or Redis stopped answering.
        """
        heard = pinged = time.monotonic()
        while not self._stopping:
            msg = await self._next(PING_EVERY)
            now = time.monotonic()
            if msg is not None:
                heard = now
                if msg["type"] in ("message", "smessage"):
                    self._received(msg["channel"], msg["data"])
            if now - heard > SILENT_MAX:
                raise RedisConnectionError(f"Redis did not answer for {SILENT_MAX:.0f} s")
            if now - pinged >= PING_EVERY:
                pinged = now
                await self._pubsub.ping()

    # --- what the hub asks ---------------------------------------------------------------

    def last_seq(self, topic: str) -> int:
        """The newest seq of ``topic`` delivered on this node (0 before it is watched)."""
        state = self._topics.get(topic)
        return state.seq if state is not None else 0

    def since(self, topic: str, seq: int) -> list[bytes] | None:
        """The messages after ``seq`` this node has (None when that does not reach)."""
        state = self._topics.get(topic)
        if state is None:
            return None
        if seq == state.seq:
            return []
        if seq > state.seq:
            return None
        frames = state.frames
        if not frames or frames[0][0] > seq + 1:
            return None
        return [payload for s, payload in frames if s > seq]


def _nowhere(_topic: str, _payload: bytes) -> None:
    """Delivery before a hub is bound."""


def _last_trimmed(info: Any) -> int:
    """The seq of the newest entry trimmed from a Stream (from XINFO STREAM): entries
    leave it only from its head, by the trimming of each publish, so the trimmed ones
    are those before its first entry. 0 when nothing was trimmed, or when the Stream
    does not exist (an error in its place)."""
    if not isinstance(info, dict):
        return 0
    if int(info.get("entries-added") or 0) <= int(info.get("length") or 0):
        return 0
    first = info.get("recorded-first-entry-id") or (info.get("first-entry") or (b"0-0",))[0]
    if isinstance(first, str):
        first = first.encode()
    return int(bytes(first).split(b"-")[0]) - 1


def _log_failure(done: asyncio.Future[tuple[int, bytes]]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.debug("redis_publish_not_delivered", error=str(done.exception()))
