"""Chat: send, moderate, report. The rules are in :mod:`hybridcon.core.chat`.

Per topic the node keeps the :class:`~hybridcon.core.chat.ChatRoom` (settings and
sanctions, loaded from PostgreSQL on first use) and the most recent lines as encoded
messages for subscribe snapshots. A line is stored before it is published; its sequence
number is taken at the moment it is published (see :meth:`Chat._publish_line`).

The recent lines and the held lines are kept from the pushes themselves, as this node
delivers them (``chat.message`` and ``chat.deleted`` on the topic; ``chat.held``,
``chat.approved`` and ``chat.deleted`` on ``mod:<topic>``): a node listens to both
topics from the moment it loads a topic's chat, so on one node and on many, a snapshot
holds exactly what was pushed before it, and the pushes after it hold the rest. Settings
and sanctions are signalled: after a sanction or a settings change the node signals the
others, which read them again from PostgreSQL (signals that queue up while one read
runs cost one more read). A person's slow-mode timer stays on the node that took their
lines (slow mode itself is also claimed per person across nodes, see :meth:`Chat.send`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Annotated, Any, ClassVar, Literal

import orjson
import structlog
from pydantic import Field, StringConstraints

from hybridcon.core.chat import ChatRoom, Verdict
from hybridcon.core.engagement import actor_hash
from hybridcon.core.payloads import ChatLine as ChatLineSent
from hybridcon.core.payloads import ChatModerated
from hybridcon.core.tokens import STAFF_ROLES
from hybridcon.errors import Forbidden, NotFound, RateLimited, Unavailable
from hybridcon.realtime.command import (
    Capability,
    MsgId,
    RawText,
    Request,
    Role,
    Topic,
    UserId,
    command,
)
from hybridcon.realtime.context import Context, Node
from hybridcon.store import chat as chat_store
from hybridcon.store.chat import ChatLine

log = structlog.get_logger(__name__)


HELD_IN_SNAPSHOT = 200
"""At most this many held lines (the oldest) are loaded and shown in a ``mod:`` snapshot."""

WITHDRAWN_BY = "hybridcon:not-published"
"""``deleted_by`` of a line whose publish failed (its sender was told ``unavailable``)."""


# --- requests ------------------------------------------------------------------------------


class ChatSend(Request):
    """Say something in a topic's chat."""

    type: Literal["chat.send"]
    topic: Topic
    text: RawText


class ChatDelete(Request):
    """Moderator: remove a line (published or held)."""

    type: Literal["chat.delete"]
    topic: Topic
    msg_id: MsgId


class ChatTimeout(Request):
    """Moderator: mute a person in a topic for ``seconds``."""

    type: Literal["chat.timeout"]
    topic: Topic
    user_id: UserId
    seconds: int = Field(ge=1, le=86_400)


class ChatBan(Request):
    """Moderator: ban a person from a topic's chat."""

    type: Literal["chat.ban"]
    topic: Topic
    user_id: UserId


class ChatUnban(Request):
    """Moderator: lift a ban or timeout."""

    type: Literal["chat.unban"]
    topic: Topic
    user_id: UserId


class ChatSlowmode(Request):
    """Moderator: one line per ``seconds`` per person (0: off)."""

    type: Literal["chat.slowmode"]
    topic: Topic
    seconds: int = Field(ge=0, le=600)


class ChatHold(Request):
    """Moderator: hold each person's first line in the topic for approval."""

    type: Literal["chat.hold"]
    topic: Topic
    enabled: bool


class ChatApprove(Request):
    """Moderator: publish a held line."""

    type: Literal["chat.approve"]
    topic: Topic
    msg_id: MsgId


class ChatReport(Request):
    """Anyone: flag a line for the moderators."""

    type: Literal["chat.report"]
    topic: Topic
    msg_id: MsgId
    reason: Annotated[str, StringConstraints(max_length=300)] = ""


# --- state ---------------------------------------------------------------------------------


@dataclass
class TopicChat:
    """One topic's chat on this node."""

    room: ChatRoom
    recent: deque[tuple[str, bytes]]  # (msg_id, encoded chat.message)
    # Lines waiting for a moderator, oldest first (msg_id -> the mod snapshot's entry).
    # Changed by the pushes to ``mod:<topic>`` as this node delivers them, so that a
    # moderator's snapshot and the pushes after it never miss or repeat a line.
    held: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_NOT_IN_HELD = frozenset(("type", "topic", "seq", "reason", "matched"))
"""The fields of a ``chat.held`` push that its snapshot entry leaves out."""


def _held(line: ChatLine) -> dict[str, Any]:
    return {"topic": line.topic, **line.message()}


def _encode(line: ChatLine) -> bytes:
    return orjson.dumps(
        {"type": "chat.message", "topic": line.topic, "seq": line.seq, **line.message()}
    )


class Chat(Capability):
    """The chat topics this node has touched, and the chat requests."""

    pushes: ClassVar[Mapping[str, str]] = {
        "chat.message": "a line was published (or approved)",
        "chat.deleted": "a moderator removed a line (also on mod:<topic>)",
        "chat.settings": "slow mode or first-line hold changed",
        "chat.held": "mod:<topic>: a line waits for approval",
        "chat.approved": "mod:<topic>: a held line was published",
        "chat.sanction": "mod:<topic>: a person was timed out, banned or unbanned",
        "chat.reported": "mod:<topic>: someone flagged a line",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self._recent = node.settings.chat_recent
        self._topics: dict[str, TopicChat] = {}
        self._loading: dict[str, asyncio.Future[TopicChat]] = {}
        self._stale: set[str] = set()
        # Pushes delivered while a topic's chat is being read (topic -> (topic, message)).
        self._early: dict[str, list[tuple[str, bytes]]] = {}
        # Withdrawn lines whose `chat.deleted` has not gone out yet (msg_id -> topic):
        # published again after the bus reconnects, until it does.
        self._withdrawn: dict[str, str] = {}
        node.on_delivered(self._delivered)

    async def start(self) -> None:
        """Listen to the other nodes' chat changes."""
        self._node.on_signal("chat", self._signalled)
        self._node.on_resync(self.resync)

    async def _read_lines(self, topic: str, chat: TopicChat) -> None:
        """Read the topic's recent and held lines from PostgreSQL into ``chat``."""
        pool = self._node.db()
        lines = await chat_store.recent(pool, topic, self._recent)
        held = await chat_store.held(pool, topic, HELD_IN_SNAPSHOT)
        chat.recent = deque(((line.msg_id, _encode(line)) for line in lines), maxlen=self._recent)
        chat.held = {line.msg_id: _held(line) for line in held}

    def _delivered(self, topic: str, payload: bytes) -> None:
        """A push this node delivers: keep the recent and held lines in step with it."""
        if not payload.startswith(b'{"type":"chat.'):
            return
        base = topic.removeprefix("mod:")
        chat = self._topics.get(base)
        if chat is not None:
            self._apply(chat, topic, payload)
            return
        early = self._early.get(base)
        if early is not None:
            early.append((topic, payload))

    def _apply(self, chat: TopicChat, topic: str, payload: bytes) -> None:
        push = orjson.loads(payload)
        kind, msg_id = push["type"], push.get("msg_id")
        if not isinstance(msg_id, str):
            return
        if topic.startswith("mod:"):
            if kind == "chat.held":
                entry = {k: v for k, v in push.items() if k not in _NOT_IN_HELD}
                chat.held[msg_id] = {"topic": topic.removeprefix("mod:"), **entry}
            elif kind in ("chat.approved", "chat.deleted"):
                chat.held.pop(msg_id, None)
        elif kind == "chat.message":
            for i, (known, _) in enumerate(chat.recent):
                if known == msg_id:  # read from storage while its push was on the way
                    chat.recent[i] = (msg_id, payload)
                    return
            chat.recent.append((msg_id, payload))
        elif kind == "chat.deleted":
            chat.recent = deque(
                (item for item in chat.recent if item[0] != msg_id), maxlen=chat.recent.maxlen
            )

    def _signalled(self, data: dict[str, Any]) -> Coroutine[Any, Any, None] | None:
        topic = str(data["topic"])
        if topic not in self._topics:
            return None  # read whole when this node first needs it
        self._stale.add(topic)
        return self._refresh(topic)

    async def _refresh(self, topic: str) -> None:
        if topic not in self._stale:
            return  # a read after this signal arrived has already taken it in
        self._stale.discard(topic)
        chat = self._topics[topic]
        node = self._node
        room = await chat_store.load_room(node.db(), topic, node.clock())
        # Settings and sanctions as stored; slow-mode timers and trust stay this node's.
        chat.room.slowmode_seconds, chat.room.hold_first = room.slowmode_seconds, room.hold_first
        chat.room.banned, chat.room.muted_until = room.banned, room.muted_until

    async def resync(self) -> None:
        """Read every chat topic this node holds again: the bus came back, and pushes may
        have been lost with a Redis that restarted empty."""
        for msg_id, topic in list(self._withdrawn.items()):
            self._publish_withdrawal(topic, msg_id)
        for topic, chat in list(self._topics.items()):
            self._stale.add(topic)
            await self._refresh(topic)
            await self._read_lines(topic, chat)

    def _changed(self, topic: str) -> None:
        self._node.signal("chat", {"topic": topic})

    async def get(self, topic: str) -> TopicChat:
        """The topic's chat, loading it from the database once."""
        found = self._topics.get(topic)
        if found is not None:
            return found
        pending = self._loading.get(topic)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[TopicChat] = asyncio.get_running_loop().create_future()
        self._loading[topic] = future
        try:
            node = self._node
            # From here on every push of the topic reaches this node: what is stored
            # before the reads below is in them, what is pushed during them is kept
            # aside and applied after, in order.
            await node.watch(topic)
            await node.watch(f"mod:{topic}")
            self._early[topic] = []
            pool = node.db()
            room = await chat_store.load_room(pool, topic, node.clock())
            loaded = TopicChat(room=room, recent=deque(maxlen=self._recent))
            await self._read_lines(topic, loaded)
            for early_topic, payload in self._early.pop(topic):
                self._apply(loaded, early_topic, payload)
            self._topics[topic] = loaded
            future.set_result(loaded)
            return loaded
        except BaseException as exc:
            self._early.pop(topic, None)
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it twice
            raise
        finally:
            del self._loading[topic]

    async def load(self, topic: str) -> None:
        """Load the topic's chat."""
        await self.get(topic)

    def snapshot(self, ctx: Context, topic: str, moderator: bool) -> dict[str, Any]:
        """Held lines for moderators; settings and the recent lines for everyone else."""
        chat = self._topics[topic]
        if moderator:
            return {"held": list(islice(chat.held.values(), HELD_IN_SNAPSHOT))}
        recent = b"[" + b",".join(payload for _, payload in chat.recent) + b"]"
        return {"settings": chat.room.settings(), "chat": orjson.Fragment(recent)}

    # --- effects -------------------------------------------------------------------------

    async def _publish_line(self, chat: TopicChat, line: ChatLine) -> int:
        """Publish a stored line; the caller records its seq afterwards. On one node the
        seq is taken and the message delivered in one step (no await), so seq order is
        delivery order and a subscriber's snapshot and the live stream never straddle a
        number; the line joins the recent ones as this node delivers it (_delivered)."""
        seq, _ = await self._node.publish(line.topic, "chat.message", line.message())
        return seq

    async def _withdraw(self, line: ChatLine) -> None:
        """Take back a stored line whose publish failed: its sender was told
        ``unavailable`` (safe to retry), so it must not stay to be found in the recent
        lines after a resync, or be said twice by the retry. A Redis that hung may still
        carry out the publish it received when it resumes: the deletion is published
        too, after it, so every client removes the line again."""
        node = self._node
        try:
            await chat_store.delete(
                node.db(), line.topic, line.msg_id, by=WITHDRAWN_BY, now=node.clock()
            )
        except Exception as exc:
            log.warning("chat_line_not_withdrawn", msg_id=line.msg_id, error=str(exc))
        self._publish_withdrawal(line.topic, line.msg_id)

    def _publish_withdrawal(self, topic: str, msg_id: str) -> None:
        """``chat.deleted`` for a withdrawn line, kept until it is out: when Redis is
        away for longer than a publish waits, :meth:`resync` sends it again, after the
        bus is back (and so after anything a hung Redis carried out when it resumed)."""
        self._withdrawn[msg_id] = topic

        def sent(done: asyncio.Future[tuple[int, bytes]]) -> None:
            if not done.cancelled() and done.exception() is None:
                self._withdrawn.pop(msg_id, None)

        self._node.publish(topic, "chat.deleted", {"msg_id": msg_id}).add_done_callback(sent)

    async def _record_seq(self, line: ChatLine, seq: int) -> None:
        try:
            await chat_store.set_seq(self._node.db(), line.topic, line.msg_id, seq)
        except Exception as exc:
            # The line is stored and delivered; only its number is missing in storage,
            # which costs nothing but the order of an equal-timestamp tie after a restart.
            log.warning("chat_seq_not_recorded", msg_id=line.msg_id, error=str(exc))

    async def _moderated(
        self,
        ctx: Context,
        action: str,
        topic: str,
        target: str,
        detail: dict[str, Any],
        payload: ChatModerated,
    ) -> None:
        """Every moderation action: in the engagement log and the audit log (who, what)."""
        ctx.engage(payload, topic)
        await ctx.audit(f"chat.{action}", target, {"topic": topic, **detail})

    def _hashed(self, user_id: str) -> str:
        # The engagement log holds people only as keyed hashes; the audit log names them.
        return actor_hash(self._node.actor_key, user_id)

    # --- requests ------------------------------------------------------------------------

    @command(ChatSend, scope="topic")
    async def send(self, ctx: Context, request: ChatSend) -> dict[str, Any]:
        """Store and publish a line, or hold it for the moderators."""
        topic = request.topic
        claims = ctx.claims
        if topic == "event" and claims.role not in STAFF_ROLES:
            raise Forbidden("only moderators and organisers post announcements to 'event'")
        chat = await self.get(topic)
        node = self._node
        now = node.clock()
        exempt = claims.role in STAFF_ROLES
        last_sent = chat.room.last_sent.get(claims.sub)
        decision = chat.room.check_send(
            claims.sub, request.text, now, exempt=exempt, word_filter=node.word_filter
        )
        slow = chat.room.slowmode_seconds
        if slow and not exempt:
            # Slow mode is per person, whichever node their lines go through: this node
            # decided on its own lines; the others' are seen in Redis.
            wait = await node.claim(f"hc:{{{topic}}}:slow:{claims.sub}", slow)
            if wait > 0:
                if last_sent is None:
                    chat.room.last_sent.pop(claims.sub, None)
                else:
                    chat.room.last_sent[claims.sub] = last_sent
                raise RateLimited(f"slow mode: one message every {slow} s", retry_after=wait)
        line = ChatLine(
            msg_id=uuid.uuid4().hex,
            topic=topic,
            seq=None,
            author_id=claims.sub,
            author_name=claims.shown_name,
            author_role=claims.role.value,
            text=decision.text,
            ts=now,
            held=decision.verdict is Verdict.HOLD,
        )
        # Stored first, without a seq: nothing is published that is not stored.
        await chat_store.insert(node.db(), line)
        if decision.verdict is Verdict.HOLD:
            node.publish(
                f"mod:{topic}",
                "chat.held",
                {**line.message(), "reason": decision.reason, "matched": list(decision.matched)},
            )
        else:
            try:
                seq = await self._publish_line(chat, line)
            except Unavailable:
                await self._withdraw(line)
                raise
            await self._record_seq(line, seq)
        ctx.engage(ChatLineSent(msg_id=line.msg_id, length=len(line.text), held=line.held), topic)
        result: dict[str, Any] = {"msg_id": line.msg_id, "held": line.held}
        if line.held:
            result["reason"] = decision.reason
        return result

    @command(ChatDelete, role=Role.MODERATOR, scope="topic")
    async def delete(self, ctx: Context, request: ChatDelete) -> dict[str, Any]:
        """Remove a line everywhere: storage, snapshots, and every client (``chat.deleted``)."""
        topic = request.topic
        chat = await self.get(topic)
        node = self._node
        async with chat.lock:
            deleted = await chat_store.delete(
                node.db(), topic, request.msg_id, by=ctx.claims.sub, now=node.clock()
            )
            if not deleted:
                raise NotFound(f"no message {request.msg_id!r} in {topic}")
            node.publish(topic, "chat.deleted", {"msg_id": request.msg_id})
            node.publish(f"mod:{topic}", "chat.deleted", {"msg_id": request.msg_id})
        detail = {"msg_id": request.msg_id}
        payload = ChatModerated(action="delete", msg_id=request.msg_id)
        await self._moderated(ctx, "delete", topic, request.msg_id, detail, payload)
        return {"msg_id": request.msg_id}

    async def _sanctioned(
        self, ctx: Context, topic: str, action: str, detail: dict[str, Any]
    ) -> dict[str, Any]:
        """Tell the topic's moderators (``chat.sanction``) and audit; returns the result."""
        self._node.publish(f"mod:{topic}", "chat.sanction", {"action": action, **detail})
        self._changed(topic)
        user_id = str(detail["user_id"])
        payload = ChatModerated(
            action=action,
            user_id=self._hashed(user_id),
            seconds=detail.get("seconds"),
            until=detail.get("until"),
        )
        await self._moderated(ctx, action, topic, user_id, detail, payload)
        return detail

    @command(ChatTimeout, role=Role.MODERATOR, scope="topic")
    async def timeout(self, ctx: Context, request: ChatTimeout) -> dict[str, Any]:
        """Mute a person in a topic for a while; their sends fail with ``muted``."""
        chat = await self.get(request.topic)
        until = chat.room.timeout(request.user_id, request.seconds, self._node.clock())
        await chat_store.sanction(
            self._node.db(), request.topic, request.user_id, "timeout", until, by=ctx.claims.sub
        )
        detail = {
            "user_id": request.user_id,
            "seconds": request.seconds,
            "until": until.isoformat(),
        }
        return await self._sanctioned(ctx, request.topic, "timeout", detail)

    @command(ChatBan, role=Role.MODERATOR, scope="topic")
    async def ban(self, ctx: Context, request: ChatBan) -> dict[str, Any]:
        """Ban a person from a topic's chat; their sends fail with ``banned``."""
        chat = await self.get(request.topic)
        chat.room.ban(request.user_id)
        await chat_store.sanction(
            self._node.db(), request.topic, request.user_id, "ban", None, by=ctx.claims.sub
        )
        return await self._sanctioned(ctx, request.topic, "ban", {"user_id": request.user_id})

    @command(ChatUnban, role=Role.MODERATOR, scope="topic")
    async def unban(self, ctx: Context, request: ChatUnban) -> dict[str, Any]:
        """Lift a person's ban and timeout in a topic."""
        chat = await self.get(request.topic)
        chat.room.unban(request.user_id)
        await chat_store.lift(self._node.db(), request.topic, request.user_id)
        return await self._sanctioned(ctx, request.topic, "unban", {"user_id": request.user_id})

    async def _settings_changed(
        self, ctx: Context, topic: str, chat: TopicChat, action: str, before: tuple[int, bool]
    ) -> dict[str, Any]:
        try:
            await chat_store.save_settings(self._node.db(), chat.room, by=ctx.claims.sub)
        except Exception:
            chat.room.slowmode_seconds, chat.room.hold_first = before  # memory follows storage
            raise
        settings = chat.room.settings()
        self._node.publish(topic, "chat.settings", settings)
        self._changed(topic)
        payload = ChatModerated(action=action, settings=settings)
        await self._moderated(ctx, action, topic, topic, settings, payload)
        return settings

    @command(ChatSlowmode, role=Role.MODERATOR, scope="topic")
    async def slowmode(self, ctx: Context, request: ChatSlowmode) -> dict[str, Any]:
        """Switch slow mode; everyone in the topic gets ``chat.settings``."""
        chat = await self.get(request.topic)
        before = (chat.room.slowmode_seconds, chat.room.hold_first)
        chat.room.set_slowmode(request.seconds)
        return await self._settings_changed(ctx, request.topic, chat, "slowmode", before)

    @command(ChatHold, role=Role.MODERATOR, scope="topic")
    async def hold(self, ctx: Context, request: ChatHold) -> dict[str, Any]:
        """Switch first-message hold; everyone in the topic gets ``chat.settings``."""
        chat = await self.get(request.topic)
        before = (chat.room.slowmode_seconds, chat.room.hold_first)
        chat.room.hold_first = request.enabled
        return await self._settings_changed(ctx, request.topic, chat, "hold", before)

    @command(ChatApprove, role=Role.MODERATOR, scope="topic")
    async def approve(self, ctx: Context, request: ChatApprove) -> dict[str, Any]:
        """Publish a held line; its author's next lines in the topic are not held."""
        topic = request.topic
        chat = await self.get(topic)
        pool = self._node.db()
        async with chat.lock:  # two moderators approving at once publish it once
            line = await chat_store.get(pool, topic, request.msg_id)
            if line is None or not line.held:
                raise NotFound(f"no held message {request.msg_id!r} in {topic}")
            await chat_store.release(pool, topic, request.msg_id)
            try:
                seq = await self._publish_line(chat, replace(line, held=False))
            except Unavailable:
                # Not approved after all: held again, so that it can be approved again.
                # (No withdrawal as for a sent line: this msg_id is published again by
                # that approval, which a late `chat.deleted` would take back.)
                try:
                    await chat_store.hold_again(pool, topic, request.msg_id)
                except Exception as exc:
                    log.warning("chat_line_not_held_again", msg_id=line.msg_id, error=str(exc))
                raise
            await self._record_seq(line, seq)
            self._node.publish(f"mod:{topic}", "chat.approved", {"msg_id": line.msg_id})
        chat.room.approve(line.author_id)
        detail = {"msg_id": line.msg_id}
        payload = ChatModerated(action="approve", msg_id=line.msg_id)
        await self._moderated(ctx, "approve", topic, line.msg_id, detail, payload)
        return {"msg_id": line.msg_id, "seq": seq}

    @command(ChatReport, scope="topic")
    async def report(self, ctx: Context, request: ChatReport) -> dict[str, Any]:
        """Flag a line for the moderators of the topic (``chat.reported`` in ``mod:<topic>``)."""
        topic = request.topic
        node = self._node
        pool = node.db()
        line = await chat_store.get(pool, topic, request.msg_id)
        if line is None:
            raise NotFound(f"no message {request.msg_id!r} in {topic}")
        async with pool.acquire() as db:
            new = await chat_store.report(
                db,
                topic,
                request.msg_id,
                reporter=ctx.claims.sub,
                reason=request.reason,
                now=node.clock(),
            )
        if new:
            node.publish(
                f"mod:{topic}",
                "chat.reported",
                {
                    "msg_id": line.msg_id,
                    "text": line.text,
                    "author": {"id": line.author_id, "name": line.author_name},
                    "reporter": {"id": ctx.claims.sub, "name": ctx.claims.name},
                    "reason": request.reason,
                },
            )
        return {"msg_id": line.msg_id, "reported": True}
