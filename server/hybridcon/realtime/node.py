"""The node as capabilities see it (:class:`~hybridcon.realtime.context.Node`).

One object carries out every effect a capability has: pushes through the hub, events
into the engagement log (keyed hashes, with the person's role), audit rows, background
tasks and periodic jobs. The gateway makes it; capabilities get it typed as the
narrow protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog
from redis.exceptions import RedisError

from hybridcon.bus.redis import RedisBus
from hybridcon.core.engagement import EngagementEvent, actor_hash
from hybridcon.core.payloads import Payload
from hybridcon.core.programme import Programme
from hybridcon.core.tokens import Claims
from hybridcon.core.wordfilter import WordFilter
from hybridcon.periodic import Action, Periodic
from hybridcon.realtime.hub import Hub
from hybridcon.realtime.signals import SIGNALS, Resync, SignalHandler, Signals
from hybridcon.realtime.viewers import Counts, LocalCounts, RedisCounts, ViewerCounts
from hybridcon.services import Services
from hybridcon.store import audit

if TYPE_CHECKING:
    from hybridcon.settings import Settings

log = structlog.get_logger(__name__)


class GatewayNode:
    """Implements :class:`~hybridcon.realtime.context.Node` over the node's services."""

    def __init__(self, services: Services, hub: Hub, word_filter: WordFilter) -> None:
        self._services = services
        self._hub = hub
        self._word_filter = word_filter
        self.periodic = Periodic()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.signals = Signals(hub.bus)
        hub.on_internal(SIGNALS, self.signals.received)
        # Redis beside the bus, for state the nodes add up there (None on one node).
        self.redis = hub.bus.client if isinstance(hub.bus, RedisBus) else None
        counts: Counts = (
            RedisCounts(self.redis, self.signals.node_id) if self.redis else LocalCounts()
        )
        self.counts = ViewerCounts(hub, counts)
        self._claims_failing = False

    @property
    def word_filter(self) -> WordFilter:
        """The chat's word filter."""
        return self._word_filter

    @property
    def settings(self) -> Settings:
        """The node's settings."""
        return self._services.settings

    @property
    def programme(self) -> Programme:
        """The event's programme."""
        return self._services.programme

    @property
    def actor_key(self) -> bytes:
        """The key of the engagement log's keyed hashes (set once keys are loaded)."""
        return self._services.actor_key

    def clock(self) -> datetime:
        """The current time."""
        return self._services.clock()

    def db(self) -> asyncpg.Pool:
        """The database pool."""
        return self._services.db()

    def publish(
        self, topic: str, kind: str, fields: Mapping[str, Any]
    ) -> asyncio.Future[tuple[int, bytes]]:
        """A sequenced push, queued now (see :meth:`Hub.publish`)."""
        return self._hub.publish(topic, kind, fields)

    def broadcast(self, topic: str, kind: str, fields: Mapping[str, Any]) -> None:
        """An unsequenced state push."""
        self._hub.broadcast(topic, kind, fields)

    def broadcast_here(self, topic: str, kind: str, fields: Mapping[str, Any]) -> None:
        """An unsequenced state push to this node's subscribers only."""
        self._hub.broadcast_here(topic, kind, fields)

    async def watch(self, topic: str) -> None:
        """Make sure this node receives ``topic``'s messages from now on."""
        await self._hub.bus.watch(topic)

    def on_delivered(self, tap: Callable[[str, bytes], None]) -> None:
        """See every message this node delivers, as it delivers it."""
        self._hub.on_delivered(tap)

    def signal(self, kind: str, data: Mapping[str, Any]) -> None:
        """Tell the other nodes that shared state changed (see realtime/signals.py)."""
        self.signals.send(kind, data)

    def on_signal(self, kind: str, handler: SignalHandler) -> None:
        """Handle another node's signals of ``kind``."""
        self.signals.on(kind, handler)

    def on_resync(self, resync: Resync) -> None:
        """Read shared state again after the bus reconnected."""
        self.signals.on_resync(resync)

    async def claim(self, key: str, seconds: float) -> float:
        """Hold ``key`` for ``seconds`` across nodes (a per-person limit).

        Returns:
            0 when this call took it (always on one node, whose own rules already
            decided; and while Redis is away), else the seconds until it is free.
        """
        if self.redis is None or seconds <= 0 or not self._hub.bus.connected:
            return 0.0  # Redis away: not waited for (this node's own rule still holds)
        try:
            taken = await self.redis.set(key, b"1", px=max(1, int(seconds * 1000)), nx=True)
            left = 0 if taken else await self.redis.pttl(key)
        except (RedisError, OSError) as exc:
            if not self._claims_failing:  # once per outage, not once per line
                log.warning("shared_limit_not_checked", error=str(exc))
            self._claims_failing = True
            return 0.0
        self._claims_failing = False
        return max(0.0, left / 1000)

    async def start(self) -> None:
        """Start receiving other nodes' signals; count among the live nodes at once."""
        await self.signals.start()
        await self.counts.tick()

    def engage(self, payload: Payload, topic: str | None, claims: Claims | None = None) -> None:
        """Log an engagement event; a person's as a keyed hash with their role."""
        writer = self._services.engagement
        if writer is None:
            return
        if claims is None:
            event = EngagementEvent.new(
                payload.kind, ts=self._services.clock(), topic=topic, data=payload.data()
            )
        else:
            event = EngagementEvent.new(
                payload.kind,
                ts=self._services.clock(),
                actor=actor_hash(self._services.actor_key, claims.sub),
                topic=topic,
                data={"role": claims.role.value, **payload.data()},
            )
        writer.log(event)

    async def audit(
        self, claims: Claims, action: str, target: str, detail: Mapping[str, Any]
    ) -> None:
        """An audit row naming who did what."""
        await audit.record_by(self._services.db(), claims, action, target=target, detail=detail)

    def background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task kept until it ends (shutdown waits for these)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def every(self, seconds: float, action: Action, name: str) -> None:
        """A periodic job until shutdown (see :class:`~hybridcon.periodic.Periodic`)."""
        self.periodic.every(seconds, action, name)

    def viewers(self, topic: str) -> int:
        """Distinct people subscribed to ``topic`` on this node."""
        return self._hub.viewers(topic)

    def audience(self, topic: str) -> int:
        """Distinct people subscribed to ``topic`` across nodes."""
        return self.counts.total(topic)

    async def stop(self) -> None:
        """Stop the periodic jobs, then wait (5 s at most) for the background tasks."""
        await self.periodic.stop()
        await self.signals.stop()
        await self.counts.stop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
