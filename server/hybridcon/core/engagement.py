"""Engagement events: the append-only log behind the report (CONTRACT.md, "Engagement events").

An event is what happened (``kind``), when (``ts``), by whom (``actor``, a keyed hash
of the token subject, never the raw id), where (``topic``) and its details (``data``,
JSON). Each event carries a client-made ``event_id`` so that storing it twice (a replay
after PostgreSQL came back) stores it once.

One event serialises to one line of JSON: the engagement writer's spool file is a
sequence of such lines.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

import orjson

from hybridcon.errors import Invalid

# 22 base64url characters carry 132 bits of the HMAC: collisions among the subjects of
# one event are out of reach, and the column stays short.
ACTOR_HASH_CHARS = 22

# People whose pseudonyms are kept at hand: a node logs the same people all day (a
# heartbeat every 30 s each), and an HMAC costs more than the rest of an event.
ACTOR_HASH_CACHE = 1 << 14

# Event ids are drawn this many at a time: one getrandom() call for 256 ids instead of
# one per event (uuid4 is a third of the cost of logging an event; benchmarks.md).
_IDS_PER_DRAW = 256
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant

_T = TypeVar("_T")


class EventKind(StrEnum):
    """What an engagement event records."""

    JOIN = "join"
    LEAVE = "leave"
    HEARTBEAT = "heartbeat"
    CHAT = "chat"
    CHAT_MODERATED = "chat_moderated"
    POLL_OPENED = "poll_opened"
    POLL_VOTE = "poll_vote"
    POLL_CLOSED = "poll_closed"
    QUESTION = "question"
    UPVOTE = "upvote"
    REACTION = "reaction"
    STREAM_STARTED = "stream_started"
    STREAM_ENDED = "stream_ended"
    STREAM_HEALTH = "stream_health"
    SESSION_JOIN = "session_join"
    SESSION_LEAVE = "session_leave"
    CHECKIN = "checkin"


def actor_hash(key: bytes, sub: str) -> str:
    """The pseudonym of a token subject in the engagement log.

    A keyed hash rather than a plain one: subjects are guessable (``i:<invite uuid>``
    is not, but other subject forms may be), and without the key nobody holding the
    log can test a guess. The same key gives the same pseudonym all day, so the
    report can count distinct people and attentive minutes per person.

    Args:
        key: the server's secret for this purpose (at least 16 bytes).
        sub: the token subject.

    Returns:
        The first 22 characters of base64url(HMAC-SHA256(key, sub)), without padding.

    Raises:
        ValueError: the key is shorter than 16 bytes.
    """
    if len(key) < 16:
        raise ValueError("the actor hash key must be at least 16 bytes")
    return _actor_hash(key, sub)


@functools.lru_cache(maxsize=ACTOR_HASH_CACHE)
def _actor_hash(key: bytes, sub: str) -> str:
    digest = hmac.new(key, sub.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")[:ACTOR_HASH_CHARS]


_spare_ids: list[uuid.UUID] = []
# A forked child must not hand out the ids its parent also holds (a second event with
# the same id would be taken for a replay and not stored).
os.register_at_fork(after_in_child=_spare_ids.clear)


def new_event_id() -> uuid.UUID:
    """A random (version 4) UUID, as :func:`uuid.uuid4` makes, from the operating
    system's random source; drawn in batches, so most calls make no system call."""
    if not _spare_ids:
        raw = os.urandom(16 * _IDS_PER_DRAW)
        _spare_ids.extend(
            uuid.UUID(int=(int.from_bytes(raw[i : i + 16]) & _UUID4_CLEAR) | _UUID4_SET)
            for i in range(0, len(raw), 16)
        )
    return _spare_ids.pop()


@dataclass(frozen=True, slots=True)
class EngagementEvent:
    """One row of the engagement log.

    Attributes:
        event_id: unique per event, made by the node that saw it.
        ts: when it happened; must be timezone-aware.
        kind: what happened.
        actor: the actor hash (see :func:`actor_hash`), or None for system events.
        topic: where it happened (a stage, session or poll topic), if anywhere.
        data: details; must be JSON-serialisable with string keys.
    """

    event_id: uuid.UUID
    ts: datetime
    kind: EventKind
    actor: str | None
    topic: str | None
    data: Mapping[str, Any]

    def __post_init__(self) -> None:
        # A naive time would be stored as if it were UTC, silently shifting the report.
        if self.ts.tzinfo is None or self.ts.utcoffset() is None:
            raise Invalid("an engagement event's ts must be timezone-aware")

    def __hash__(self) -> int:
        # ``data`` is a mapping and so unhashable; the id alone identifies the event.
        return hash(self.event_id)

    @classmethod
    def new(
        cls,
        kind: EventKind,
        *,
        ts: datetime,
        actor: str | None = None,
        topic: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> EngagementEvent:
        """A new event with a fresh random ``event_id``.

        Raises:
            Invalid: ``ts`` is naive.
        """
        return cls(
            event_id=new_event_id(),
            ts=ts,
            kind=kind,
            actor=actor,
            topic=topic,
            data={} if data is None else data,
        )

    def data_json(self) -> str:
        """``data`` as JSON text (what the ``jsonb`` column receives).

        Raises:
            Invalid: ``data`` is not JSON-serialisable.
        """
        try:
            return orjson.dumps(_plain(self.data)).decode()
        except TypeError as exc:
            raise Invalid(f"engagement event data is not JSON: {exc}") from None

    def to_line(self) -> bytes:
        """The event as one line of JSON, ending in a newline.

        Raises:
            Invalid: ``data`` is not JSON-serialisable.
        """
        try:
            body = orjson.dumps(
                {
                    "event_id": str(self.event_id),
                    "ts": self.ts.isoformat(),
                    "kind": self.kind.value,
                    "actor": self.actor,
                    "topic": self.topic,
                    "data": _plain(self.data),
                }
            )
        except TypeError as exc:
            raise Invalid(f"engagement event data is not JSON: {exc}") from None
        # orjson escapes control characters inside strings, so the line has no other newline.
        return body + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> EngagementEvent:
        """Read back a line written by :meth:`to_line` (the trailing newline is optional).

        Raises:
            Invalid: the line is not a complete, well-formed event (a torn write, a
                foreign line, an unknown kind).
        """
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise Invalid(f"not a JSON line: {exc}") from None
        if not isinstance(obj, dict):
            raise Invalid("an engagement line must be a JSON object")
        try:
            event_id = uuid.UUID(_field(obj, "event_id", str))
            ts = datetime.fromisoformat(_field(obj, "ts", str))
            kind = EventKind(_field(obj, "kind", str))
        except ValueError as exc:
            raise Invalid(f"bad engagement line: {exc}") from None
        actor = _optional(obj, "actor")
        topic = _optional(obj, "topic")
        data = _field(obj, "data", dict)
        return cls(event_id=event_id, ts=ts, kind=kind, actor=actor, topic=topic, data=data)


def _plain(data: Mapping[str, Any]) -> dict[str, Any]:
    # orjson serialises dict, not other mappings (MappingProxyType, custom classes).
    return data if isinstance(data, dict) else dict(data)


def _field(obj: dict[str, Any], name: str, kind: type[_T]) -> _T:
    value = obj.get(name)
    if not isinstance(value, kind):
        raise Invalid(f"engagement line field {name!r} missing or not a {kind.__name__}")
    return value


def _optional(obj: dict[str, Any], name: str) -> str | None:
    if name not in obj:
        raise Invalid(f"engagement line field {name!r} missing")
    value = obj[name]
    if value is not None and not isinstance(value, str):
        raise Invalid(f"engagement line field {name!r} is not a string")
    return value
