"""Chat requests: send, moderate, report. The rules are in :mod:`hybridcon.core.chat`.

Per topic the node keeps the :class:`~hybridcon.core.chat.ChatRoom` (settings and
sanctions, loaded from PostgreSQL on first use) and the most recent lines as encoded
messages for subscribe snapshots. A line is stored before it is published; its sequence
number is taken at the moment it is published (see :func:`_publish_line`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from hybridcon.core.chat import ChatRoom, Verdict
from hybridcon.core.engagement import EventKind, actor_hash
from hybridcon.core.tokens import STAFF_ROLES, Role
from hybridcon.errors import Forbidden, NotFound
from hybridcon.realtime.access import check_topic, require_moderator
from hybridcon.realtime.protocol import (
    ChatApprove,
    ChatBan,
    ChatDelete,
    ChatHold,
    ChatReport,
    ChatSend,
    ChatSlowmode,
    ChatTimeout,
    ChatUnban,
    handles,
)
from hybridcon.store import audit
from hybridcon.store import chat as chat_store
from hybridcon.store.chat import ChatLine

if TYPE_CHECKING:
    from hybridcon.realtime.connection import Connection
    from hybridcon.realtime.gateway import Gateway


log = structlog.get_logger(__name__)


HELD_IN_SNAPSHOT = 200
"""At most this many held lines (the oldest) are loaded and shown in a ``mod:`` snapshot."""


@dataclass
class TopicChat:
    """One topic's chat on this node."""

    room: ChatRoom
    recent: deque[tuple[str, bytes]]  # (msg_id, encoded chat.message)
    # Lines waiting for a moderator, oldest first (msg_id -> the mod snapshot's entry).
    # Kept here, changed in the same step as the push to ``mod:<topic>``, so that a
    # moderator's snapshot and the pushes after it never miss or repeat a line.
    held: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ChatState:
    """The chat topics this node has touched."""

    def __init__(self, gateway: Gateway, *, recent: int) -> None:
        self._gateway = gateway
        self._recent = recent
        self._topics: dict[str, TopicChat] = {}
        self._loading: dict[str, asyncio.Future[TopicChat]] = {}

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
            services = self._gateway.services
            pool = services.db()
            room = await chat_store.load_room(pool, topic, services.clock())
            lines = await chat_store.recent(pool, topic, self._recent)
            recent = deque(((line.msg_id, _encode(line)) for line in lines), maxlen=self._recent)
            held = await chat_store.held(pool, topic, HELD_IN_SNAPSHOT)
            loaded = TopicChat(
                room=room, recent=recent, held={line.msg_id: _held(line) for line in held}
            )
            self._topics[topic] = loaded
            future.set_result(loaded)
            return loaded
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it twice
            raise
        finally:
            del self._loading[topic]


def _held(line: ChatLine) -> dict[str, Any]:
    return {"topic": line.topic, **line.message()}


def _encode(line: ChatLine) -> bytes:
    return orjson.dumps(
        {"type": "chat.message", "topic": line.topic, "seq": line.seq, **line.message()}
    )


async def _audit_and_log(
    gateway: Gateway, conn: Connection, action: str, topic: str, target: str, detail: dict[str, Any]
) -> None:
    """Every moderation action: in the audit log (who, what, when) and the engagement log."""
    claims = conn.claims
    # The engagement log holds people only as keyed hashes; the audit log names them.
    logged = dict(detail)
    if "user_id" in logged:
        logged["user_id"] = actor_hash(gateway.services.actor_key, str(logged["user_id"]))
    gateway.engage(EventKind.CHAT_MODERATED, conn, topic, {"action": action, **logged})
    await audit.record_by(
        gateway.services.db(),
        claims,
        f"chat.{action}",
        target=target,
        detail={"topic": topic, **detail},
    )


@handles("chat.send")
async def send(gateway: Gateway, conn: Connection, request: ChatSend) -> dict[str, Any]:
    """Store and publish a line, or hold it for the moderators."""
    topic = request.topic
    check_topic(gateway, conn, topic)
    claims = conn.claims
    if topic == "event" and claims.role not in STAFF_ROLES:
        raise Forbidden("only moderators and organisers post announcements to 'event'")
    chat = await gateway.chat.get(topic)
    services = gateway.services
    now = services.clock()
    decision = chat.room.check_send(
        claims.sub,
        request.text,
        now,
        exempt=claims.role in STAFF_ROLES,
        word_filter=gateway.word_filter,
    )
    line = ChatLine(
        msg_id=uuid.uuid4().hex,
        topic=topic,
        seq=None,
        author_id=claims.sub,
        author_name=claims.name or _anonymous(claims.role),
        author_role=claims.role.value,
        text=decision.text,
        ts=now,
        held=decision.verdict is Verdict.HOLD,
    )
    # Stored first, without a seq: nothing is published that is not stored.
    await chat_store.insert(services.db(), line)
    if decision.verdict is Verdict.HOLD:
        chat.held[line.msg_id] = _held(line)
        gateway.hub.publish(
            f"mod:{topic}",
            "chat.held",
            {**line.message(), "reason": decision.reason, "matched": list(decision.matched)},
        )
    else:
        await _publish_line(gateway, chat, line)
    gateway.engage(
        EventKind.CHAT,
        conn,
        topic,
        {"msg_id": line.msg_id, "length": len(line.text), "held": line.held},
    )
    result: dict[str, Any] = {"msg_id": line.msg_id, "held": line.held}
    if line.held:
        result["reason"] = decision.reason
    return result


async def _publish_line(gateway: Gateway, chat: TopicChat, line: ChatLine) -> int:
    """Publish a stored line: its seq is taken and the message sent in one step (no await
    in between), so seq order is delivery order and a subscriber's snapshot and the live
    stream never straddle a number. The seq is recorded afterwards."""
    seq = gateway.hub.bus.next_seq(line.topic)
    published = replace(line, seq=seq)
    payload = _encode(published)
    chat.recent.append((line.msg_id, payload))
    gateway.hub.bus.publish(line.topic, payload, seq)
    try:
        await chat_store.set_seq(gateway.services.db(), line.topic, line.msg_id, seq)
    except Exception as exc:
        # The line is stored and delivered; only its number is missing in storage, which
        # costs nothing but the order of an equal-timestamp tie after a restart.
        log.warning("chat_seq_not_recorded", msg_id=line.msg_id, error=str(exc))
    return seq


def _anonymous(role: Role) -> str:
    return {Role.MODERATOR: "Moderator", Role.ORGANISER: "Organisatie"}.get(role, "Deelnemer")


@handles("chat.delete")
async def delete(gateway: Gateway, conn: Connection, request: ChatDelete) -> dict[str, Any]:
    """Remove a line everywhere: storage, snapshots, and every client (``chat.deleted``)."""
    topic = request.topic
    require_moderator(conn, topic)
    chat = await gateway.chat.get(topic)
    services = gateway.services
    async with chat.lock:
        deleted = await chat_store.delete(
            services.db(), topic, request.msg_id, by=conn.claims.sub, now=services.clock()
        )
        if not deleted:
            raise NotFound(f"no message {request.msg_id!r} in {topic}")
        chat.recent = deque(
            (item for item in chat.recent if item[0] != request.msg_id), maxlen=chat.recent.maxlen
        )
        chat.held.pop(request.msg_id, None)
        gateway.hub.publish(topic, "chat.deleted", {"msg_id": request.msg_id})
        gateway.hub.publish(f"mod:{topic}", "chat.deleted", {"msg_id": request.msg_id})
    await _audit_and_log(gateway, conn, "delete", topic, request.msg_id, {"msg_id": request.msg_id})
    return {"msg_id": request.msg_id}


async def _sanctioned(
    gateway: Gateway, conn: Connection, topic: str, action: str, detail: dict[str, Any]
) -> dict[str, Any]:
    """Tell the topic's moderators (``chat.sanction``) and audit; returns the result data."""
    gateway.hub.publish(f"mod:{topic}", "chat.sanction", {"action": action, **detail})
    await _audit_and_log(gateway, conn, action, topic, str(detail["user_id"]), detail)
    return detail


@handles("chat.timeout")
async def timeout(gateway: Gateway, conn: Connection, request: ChatTimeout) -> dict[str, Any]:
    """Mute a person in a topic for a while; their sends fail with ``muted``."""
    require_moderator(conn, request.topic)
    chat = await gateway.chat.get(request.topic)
    until = chat.room.timeout(request.user_id, request.seconds, gateway.services.clock())
    await chat_store.sanction(
        gateway.services.db(),
        request.topic,
        request.user_id,
        "timeout",
        until,
        by=conn.claims.sub,
    )
    detail = {"user_id": request.user_id, "seconds": request.seconds, "until": until.isoformat()}
    return await _sanctioned(gateway, conn, request.topic, "timeout", detail)


@handles("chat.ban")
async def ban(gateway: Gateway, conn: Connection, request: ChatBan) -> dict[str, Any]:
    """Ban a person from a topic's chat; their sends fail with ``banned``."""
    require_moderator(conn, request.topic)
    chat = await gateway.chat.get(request.topic)
    chat.room.ban(request.user_id)
    await chat_store.sanction(
        gateway.services.db(), request.topic, request.user_id, "ban", None, by=conn.claims.sub
    )
    return await _sanctioned(gateway, conn, request.topic, "ban", {"user_id": request.user_id})


@handles("chat.unban")
async def unban(gateway: Gateway, conn: Connection, request: ChatUnban) -> dict[str, Any]:
    """Lift a person's ban and timeout in a topic."""
    require_moderator(conn, request.topic)
    chat = await gateway.chat.get(request.topic)
    chat.room.unban(request.user_id)
    await chat_store.lift(gateway.services.db(), request.topic, request.user_id)
    return await _sanctioned(gateway, conn, request.topic, "unban", {"user_id": request.user_id})


async def _settings_changed(
    gateway: Gateway,
    conn: Connection,
    topic: str,
    chat: TopicChat,
    action: str,
    before: tuple[int, bool],
) -> dict[str, Any]:
    try:
        await chat_store.save_settings(gateway.services.db(), chat.room, by=conn.claims.sub)
    except Exception:
        chat.room.slowmode_seconds, chat.room.hold_first = before  # memory follows storage
        raise
    settings = chat.room.settings()
    gateway.hub.publish(topic, "chat.settings", settings)
    await _audit_and_log(gateway, conn, action, topic, topic, settings)
    return settings


@handles("chat.slowmode")
async def slowmode(gateway: Gateway, conn: Connection, request: ChatSlowmode) -> dict[str, Any]:
    """Switch slow mode; everyone in the topic gets ``chat.settings``."""
    require_moderator(conn, request.topic)
    chat = await gateway.chat.get(request.topic)
    before = (chat.room.slowmode_seconds, chat.room.hold_first)
    chat.room.set_slowmode(request.seconds)
    return await _settings_changed(gateway, conn, request.topic, chat, "slowmode", before)


@handles("chat.hold")
async def hold(gateway: Gateway, conn: Connection, request: ChatHold) -> dict[str, Any]:
    """Switch first-message hold; everyone in the topic gets ``chat.settings``."""
    require_moderator(conn, request.topic)
    chat = await gateway.chat.get(request.topic)
    before = (chat.room.slowmode_seconds, chat.room.hold_first)
    chat.room.hold_first = request.enabled
    return await _settings_changed(gateway, conn, request.topic, chat, "hold", before)


@handles("chat.approve")
async def approve(gateway: Gateway, conn: Connection, request: ChatApprove) -> dict[str, Any]:
    """Publish a held line; its author's next lines in the topic are not held."""
    topic = request.topic
    require_moderator(conn, topic)
    chat = await gateway.chat.get(topic)
    pool = gateway.services.db()
    async with chat.lock:  # two moderators approving at once publish it once
        line = await chat_store.get(pool, topic, request.msg_id)
        if line is None or not line.held:
            raise NotFound(f"no held message {request.msg_id!r} in {topic}")
        await chat_store.release(pool, topic, request.msg_id)
        seq = await _publish_line(gateway, chat, replace(line, held=False))
        chat.held.pop(line.msg_id, None)
        gateway.hub.publish(f"mod:{topic}", "chat.approved", {"msg_id": line.msg_id})
    chat.room.approve(line.author_id)
    await _audit_and_log(gateway, conn, "approve", topic, line.msg_id, {"msg_id": line.msg_id})
    return {"msg_id": line.msg_id, "seq": seq}


@handles("chat.report")
async def report(gateway: Gateway, conn: Connection, request: ChatReport) -> dict[str, Any]:
    """Flag a line for the moderators of the topic (``chat.reported`` in ``mod:<topic>``)."""
    topic = request.topic
    check_topic(gateway, conn, topic)
    services = gateway.services
    pool = services.db()
    line = await chat_store.get(pool, topic, request.msg_id)
    if line is None:
        raise NotFound(f"no message {request.msg_id!r} in {topic}")
    async with pool.acquire() as db:
        new = await chat_store.report(
            db,
            topic,
            request.msg_id,
            reporter=conn.claims.sub,
            reason=request.reason,
            now=services.clock(),
        )
    if new:
        gateway.hub.publish(
            f"mod:{topic}",
            "chat.reported",
            {
                "msg_id": line.msg_id,
                "text": line.text,
                "author": {"id": line.author_id, "name": line.author_name},
                "reporter": {"id": conn.claims.sub, "name": conn.claims.name},
                "reason": request.reason,
            },
        )
    return {"msg_id": line.msg_id, "reported": True}
