"""The per-person connection cap across nodes (``max_connections_per_person``).

Each node caps a person's connections on itself at once (:class:`ConnectionRegistry`).
Over Redis, a node also adds each connection to the person's sorted set in Redis
(member ``<node>:<connection>``, scored by when it opened) and, if the person now has
more than the cap across the live nodes, has the oldest closed with 4008, by a signal
to the node that holds it. Members of nodes that stopped counting as live (see
:mod:`hybridcon.realtime.viewers`) are not counted. This check follows the connection's
``auth.ok`` by a round trip, and is skipped (the node's own cap still holds) while
Redis is away.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from hybridcon.core.connections import to_evict
from hybridcon.errors import CLOSE_POLICY
from hybridcon.realtime.connection import Connection
from hybridcon.realtime.context import Node
from hybridcon.realtime.viewers import NODES_KEY

log = structlog.get_logger(__name__)

KEY_TTL_MS = 86_400_000  # a person's set outlives no conference day
REASON = "too many connections for this person"


def _key(sub: str) -> str:
    return "hc:{person:" + sub + "}:conns"


class PeopleAcrossNodes:
    """Counts a person's connections on every node and closes the oldest over the cap.

    Args:
        node: this node (signals, background tasks).
        redis: the Redis connection pool, or None on one node (nothing to do).
        node_id: this node's id among the live nodes.
        cap: connections per person.
        find: this node's connection by id, if it is still open.
    """

    def __init__(
        self,
        node: Node,
        redis: aioredis.Redis | None,
        node_id: str,
        cap: int,
        find: Callable[[str], Connection | None],
    ) -> None:
        self._node = node
        self._redis = redis
        self._id = node_id
        self._cap = cap
        self._find = find
        self._failing = False
        if redis is not None:
            node.on_signal("conn.evict", self._evict_signalled)

    def joined(self, conn: Connection) -> None:
        """A connection signed in: count it, and close the person's oldest over the cap."""
        if self._redis is not None:
            self._node.background(self._joined(conn))

    def left(self, conn: Connection) -> None:
        """A connection ended."""
        if self._redis is not None:
            self._node.background(self._left(conn))

    async def _joined(self, conn: Connection) -> None:
        assert self._redis is not None
        key = _key(conn.claims.sub)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(key, {f"{self._id}:{conn.id}": int(time.time() * 1000)})
        pipe.pexpire(key, KEY_TTL_MS)
        pipe.zrange(key, 0, -1)
        pipe.zrangebyscore(NODES_KEY, time.time(), "+inf")
        try:
            *_, members, live_nodes = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return
        self._failing = False
        live = {n.decode() for n in live_nodes} | {self._id}
        open_now: list[tuple[str, str]] = []
        for member in members:
            node_id, _, conn_id = member.decode().partition(":")
            if node_id in live:  # a dead node's members expire with the key
                open_now.append((node_id, conn_id))
        for node_id, conn_id in to_evict(open_now, self._cap):
            if node_id == self._id:
                self._close(conn_id)
            else:
                self._node.signal("conn.evict", {"node": node_id, "conn": conn_id})

    async def _left(self, conn: Connection) -> None:
        assert self._redis is not None
        try:
            await self._redis.zrem(_key(conn.claims.sub), f"{self._id}:{conn.id}")
        except (RedisError, OSError) as exc:
            self._warn(exc)

    def _evict_signalled(self, data: dict[str, Any]) -> None:
        if data.get("node") == self._id:
            self._close(str(data["conn"]))

    def _close(self, conn_id: str) -> None:
        conn = self._find(conn_id)
        if conn is not None:
            conn.close(CLOSE_POLICY, REASON)

    def _warn(self, exc: Exception) -> None:
        if not self._failing:
            log.warning("connection_cap_not_shared", error=str(exc))
        self._failing = True
