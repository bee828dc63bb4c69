"""Viewer counts (``presence.count``) across nodes: each node's count per topic, summed.

Once a second every node tells the others how many distinct people (token ``sub``s) it
has on each topic and learns the totals; it pushes ``presence.count`` to its own
subscribers for each topic whose total changed. On one node (:class:`LocalCounts`) the
total is the node's own count. Over Redis (:class:`RedisCounts`) each node writes its
counts into one hash per topic (a field per node) and keeps itself in a sorted set of
live nodes (score: when it counts as gone), so a node that dies stops counting within
:data:`NODE_TTL` seconds. A person connected to two nodes counts on each.

While Redis is away the counts are not pushed (the last ones stand); they are written
again in full on the first tick after it is back, a restarted Redis included.
"""

from __future__ import annotations

import time
from typing import Protocol

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from hybridcon.realtime.hub import Hub

log = structlog.get_logger(__name__)

NODE_TTL = 5.0
NODES_KEY = "hc:nodes"


def _key(topic: str) -> str:
    return "hc:{" + topic + "}:viewers"


class Counts(Protocol):
    """Where nodes meet to add up their counts."""

    async def exchange(self, local: dict[str, int]) -> dict[str, int]:
        """Give this node's counts; return the totals of the same topics.

        Raises:
            RedisError, OSError: the counts could not be exchanged now.
        """

    async def leave(self) -> None:
        """Take this node's counts out (at shutdown)."""


class LocalCounts:
    """One node: its counts are the totals."""

    async def exchange(self, local: dict[str, int]) -> dict[str, int]:
        """The node's own counts."""
        return dict(local)

    async def leave(self) -> None:
        """Nothing was shared."""


class RedisCounts:
    """Counts added up in Redis (see the module's docstring)."""

    def __init__(self, redis: aioredis.Redis, node_id: str) -> None:
        self._redis = redis
        self._node = node_id
        self._written: set[str] = set()

    async def exchange(self, local: dict[str, int]) -> dict[str, int]:
        """Write this node's counts (all of them: Redis may have restarted empty), read
        the totals over the live nodes."""
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(NODES_KEY, {self._node: now + NODE_TTL})
        pipe.zremrangebyscore(NODES_KEY, "-inf", now)
        for topic, count in local.items():
            pipe.hset(_key(topic), self._node, count)
        for topic in self._written - local.keys():
            pipe.hdel(_key(topic), self._node)
        pipe.zrange(NODES_KEY, 0, -1)
        topics = list(local)
        for topic in topics:
            pipe.hgetall(_key(topic))
        results = await pipe.execute()
        self._written = set(local)
        tables = results[-len(topics) :] if topics else []
        live = {n.decode() for n in results[-len(topics) - 1]}
        totals: dict[str, int] = {}
        gone: list[tuple[str, bytes]] = []
        for topic, table in zip(topics, tables, strict=True):
            total = 0
            for node, count in table.items():
                if node.decode() in live:
                    total += int(count)
                else:
                    gone.append((topic, node))
            totals[topic] = total
        if gone:  # fields of nodes that died: no longer counted, now removed
            pipe = self._redis.pipeline(transaction=False)
            for topic, node in gone:
                pipe.hdel(_key(topic), node)
            await pipe.execute()
        return totals

    async def leave(self) -> None:
        """Remove this node's fields and its place among the live nodes."""
        pipe = self._redis.pipeline(transaction=False)
        for topic in self._written:
            pipe.hdel(_key(topic), self._node)
        pipe.zrem(NODES_KEY, self._node)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("viewer_counts_not_removed", error=str(exc))


class ViewerCounts:
    """Exchanges counts every tick and pushes the totals that changed to this node's
    subscribers.

    Args:
        hub: this node's topics.
        counts: where the nodes add up their counts.
    """

    def __init__(self, hub: Hub, counts: Counts) -> None:
        self._hub = hub
        self._counts = counts
        self._local: dict[str, int] = {}
        self._totals: dict[str, int] = {}
        self._failing = False

    def total(self, topic: str) -> int:
        """People on ``topic`` across nodes: the last total, corrected by what changed
        on this node since."""
        here = self._hub.viewers(topic)
        return max(here, self._totals.get(topic, 0) - self._local.get(topic, 0) + here)

    async def tick(self) -> None:
        """Exchange the counts; push ``presence.count`` where the total changed."""
        local = self._hub.counts()
        try:
            totals = await self._counts.exchange(local)
        except (RedisError, OSError) as exc:
            if not self._failing:
                log.warning("viewer_counts_not_exchanged", error=str(exc))
            self._failing = True
            return
        self._failing = False
        previous = self._totals
        self._local, self._totals = local, totals
        for topic, total in totals.items():
            if previous.get(topic) != total:
                self._hub.broadcast_here(topic, "presence.count", {"viewers": total})

    async def stop(self) -> None:
        """Take this node's counts out of the totals."""
        await self._counts.leave()
