"""What a capability may use: the node's narrow side, and one connection's context.

Capabilities never see the gateway. They get a :class:`Node` at construction (the
clock, storage, publishing, the engagement log, background work) and a
:class:`Context` with each request (the connection, and the same effects on behalf of
its person). Every effect a handler has, a push, an engagement record, an audit row,
goes through these few methods, so there is one place that carries each out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from hybridcon.core.payloads import Payload
from hybridcon.core.programme import Programme
from hybridcon.core.tokens import STAFF_ROLES, Claims
from hybridcon.errors import Forbidden, NotFound

if TYPE_CHECKING:
    import asyncio

    import asyncpg

    from hybridcon.core.wordfilter import WordFilter
    from hybridcon.realtime.connection import Connection
    from hybridcon.realtime.signals import Resync, SignalHandler
    from hybridcon.settings import Settings


class Node(Protocol):
    """The node as a capability sees it."""

    @property
    def settings(self) -> Settings:
        """The node's settings."""

    @property
    def programme(self) -> Programme:
        """The event's programme."""

    @property
    def actor_key(self) -> bytes:
        """The key of the engagement log's keyed hashes."""

    @property
    def word_filter(self) -> WordFilter:
        """The chat's word filter."""

    def clock(self) -> datetime:
        """The current time (timezone-aware)."""

    def db(self) -> asyncpg.Pool:
        """The database pool (raises ``Unavailable`` when there is none)."""

    def publish(
        self, topic: str, kind: str, fields: Mapping[str, Any]
    ) -> asyncio.Future[tuple[int, bytes]]:
        """Push a sequenced message to ``topic`` (kept for ``since``), in call order.

        The push is queued when called; await the future only for its ``seq`` and
        encoded message (done at once on one node; once Redis has ordered it on several).
        """

    def broadcast(self, topic: str, kind: str, fields: Mapping[str, Any]) -> None:
        """Push an unsequenced state message (newer state replaces it; not kept)."""

    def broadcast_here(self, topic: str, kind: str, fields: Mapping[str, Any]) -> None:
        """Push an unsequenced state message to this node's subscribers only (state
        every node holds alike and pushes to its own clients)."""

    async def watch(self, topic: str) -> None:
        """Make sure this node receives ``topic``'s messages from now on."""

    def on_delivered(self, tap: Callable[[str, bytes], None]) -> None:
        """Call ``tap(topic, message)`` for every message this node delivers, in the same
        step as its subscribers get it (state kept from the pushes themselves)."""

    def signal(self, kind: str, data: Mapping[str, Any]) -> None:
        """Tell the other nodes that the shared state ``data`` names changed."""

    def on_signal(self, kind: str, handler: SignalHandler) -> None:
        """Handle the other nodes' signals of ``kind`` (see realtime/signals.py)."""

    def on_resync(self, resync: Resync) -> None:
        """Run ``resync`` (read shared state again) after the bus reconnected."""

    async def claim(self, key: str, seconds: float) -> float:
        """Hold ``key`` for ``seconds`` across nodes; 0 when taken, else the seconds
        until it is free (always 0 on one node, whose own rules decide)."""

    def engage(self, payload: Payload, topic: str | None, claims: Claims | None = None) -> None:
        """Log an engagement event; ``claims`` names the person (as a keyed hash)."""

    async def audit(
        self, claims: Claims, action: str, target: str, detail: Mapping[str, Any]
    ) -> None:
        """Append an audit row for a staff action (the audit log names people)."""

    def background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the node keeps until it ends."""

    def every(
        self, seconds: float, action: Callable[[], Awaitable[None] | None], name: str
    ) -> None:
        """Run ``action`` every ``seconds`` from start to shutdown (errors logged, not fatal)."""

    def viewers(self, topic: str) -> int:
        """Distinct people subscribed to ``topic`` on this node."""

    def audience(self, topic: str) -> int:
        """Distinct people subscribed to ``topic`` across nodes (as of the last count
        exchange, corrected by this node's changes since)."""


class Subscriptions(Protocol):
    """The node's topics, for the capability that subscribes connections to them."""

    def subscribe(self, conn: Connection, topic: str) -> bool:
        """Add ``conn`` to ``topic``; False when it already was."""

    def unsubscribe(self, conn: Connection, topic: str) -> bool:
        """Remove ``conn`` from ``topic``; False when it was not subscribed."""

    def last_seq(self, topic: str) -> int:
        """The newest sequence number of ``topic``."""

    def since(self, topic: str, seq: int) -> list[bytes] | None:
        """The messages after ``seq``, or None when history does not reach back."""

    async def watch(self, topic: str) -> None:
        """Make sure the node receives ``topic`` (as subscribed, ``mod:`` included)."""

    async def load(self, topic: str) -> None:
        """Make every capability's state of ``topic`` ready for :meth:`snapshot`."""

    def snapshot(self, ctx: Context, topic: str, moderator: bool) -> dict[str, Any]:
        """Every capability's (and hook's) part of ``topic``'s snapshot (no await)."""


class Context:
    """One connection, as its requests' handlers see it.

    Made once per connection after ``auth.ok``; the effects act for its person.
    """

    __slots__ = ("conn", "node")

    def __init__(self, node: Node, conn: Connection) -> None:
        self.node = node
        self.conn = conn

    @property
    def claims(self) -> Claims:
        """The connection's token claims."""
        return self.conn.claims

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics the connection is subscribed to."""
        return self.conn.topics

    def check_topic(self, topic: str) -> None:
        """Raise unless ``topic`` exists and the token may subscribe to it.

        Raises:
            NotFound: no such stage or session in the programme.
            Forbidden: the token's role or scopes do not cover it.
        """
        if not self.node.programme.has_topic(topic):
            raise NotFound(f"no topic {topic!r} in the programme")
        if not self.conn.claims.may_subscribe(topic):
            raise Forbidden(f"your token does not give access to {topic}")

    def require_moderator(self, topic: str) -> None:
        """Raise unless the connection may moderate ``topic``.

        Raises:
            Forbidden: not a moderator or organiser, or without the topic's scope.
        """
        claims = self.conn.claims
        if claims.role not in STAFF_ROLES:
            raise Forbidden("only moderators and organisers may do this")
        if not claims.may_subscribe(f"mod:{topic}"):
            raise Forbidden(f"your token does not cover {topic}")

    def engage(self, payload: Payload, topic: str | None) -> None:
        """Log an engagement event about this connection's person."""
        self.node.engage(payload, topic, self.conn.claims)

    async def audit(self, action: str, target: str, detail: Mapping[str, Any]) -> None:
        """Append an audit row for what this connection's person did."""
        await self.node.audit(self.conn.claims, action, target, detail)

    def push(self, topic: str | None, kind: str, fields: Mapping[str, Any]) -> bool:
        """Push a message to this connection only: unsequenced, not kept for ``since``;
        ``topic`` None leaves it out of the envelope (a push about no topic).

        For what concerns one person (a session's ``session.admitted``, ``session.floor``):
        a capability keeps the context of the connection that asked and pushes to it when
        another person's request changes its state. It reaches this node's connection
        only; what everyone must see goes to the topic.

        Returns:
            Whether it was queued (False: the connection is closing).

        Raises:
            ValueError: ``fields`` carries ``type``, ``topic`` or ``seq``.
        """
        if not {"type", "topic", "seq"}.isdisjoint(fields):
            raise ValueError(f"{kind} fields may not carry the envelope's type, topic or seq")
        head: dict[str, Any] = {"type": kind} if topic is None else {"type": kind, "topic": topic}
        return self.conn.send({**head, **fields})
