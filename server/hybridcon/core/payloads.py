"""Typed engagement payloads: one class per event kind, the ``data`` the report reads.

Every engagement event is written from one of these, so each kind's ``data`` has one
shape wherever it is logged (``docs/report-definitions.md`` and the report read them).
A field that is ``None`` is left out of ``data``; a person's events also carry their
``role`` (added by the node that logs them, from the token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from hybridcon.core.engagement import EventKind


@dataclass(frozen=True, slots=True)
class Payload:
    """The base: ``kind`` names the event, :meth:`data` is its JSON ``data``."""

    kind: ClassVar[EventKind]

    def data(self) -> dict[str, Any]:
        """The event's ``data``: the fields that are set, in declaration order."""
        out: dict[str, Any] = {}
        names = _FIELD_NAMES.get(type(self))
        if names is None:
            # dataclasses.fields() filters every field on each call: a tenth of the cost
            # of logging an event, so it runs once per class.
            names = _FIELD_NAMES[type(self)] = tuple(f.name for f in fields(self))
        for name in names:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


_FIELD_NAMES: dict[type[Payload], tuple[str, ...]] = {}


@dataclass(frozen=True, slots=True)
class Join(Payload):
    """A person subscribed to a topic (their first connection on it)."""

    kind = EventKind.JOIN


@dataclass(frozen=True, slots=True)
class Leave(Payload):
    """A person left a topic; ``seconds`` connected when the connection ended."""

    kind = EventKind.LEAVE
    seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat(Payload):
    """What a viewer's player was doing (every 30 s)."""

    kind = EventKind.HEARTBEAT
    playing: bool
    visible: bool
    muted: bool | None = None
    quality: str | None = None


@dataclass(frozen=True, slots=True)
class ChatLine(Payload):
    """A chat line sent (published or held); never its text."""

    kind = EventKind.CHAT
    msg_id: str
    length: int
    held: bool


@dataclass(frozen=True, slots=True)
class ChatModerated(Payload):
    """A moderation action; a person it targets appears as a keyed hash only.

    ``settings`` (slow mode, hold) are spread into ``data`` as their own keys.
    """

    kind = EventKind.CHAT_MODERATED
    action: str
    msg_id: str | None = None
    user_id: str | None = None  # the keyed hash, never the raw subject
    seconds: int | None = None
    until: str | None = None
    settings: Mapping[str, object] | None = None

    def data(self) -> dict[str, Any]:
        """The set fields, with ``settings`` spread."""
        out = Payload.data(self)
        settings = out.pop("settings", None)
        if settings:
            out.update(settings)
        return out


@dataclass(frozen=True, slots=True)
class PollOpened(Payload):
    """A poll opened (by a moderator or on schedule): a system event."""

    kind = EventKind.POLL_OPENED
    poll_id: str
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PollVote(Payload):
    """A vote counted (a first vote or a change; a repeat is not logged)."""

    kind = EventKind.POLL_VOTE
    poll_id: str
    origin: str
    changed: bool


@dataclass(frozen=True, slots=True)
class PollClosed(Payload):
    """A poll closed with this many voters: a system event."""

    kind = EventKind.POLL_CLOSED
    poll_id: str
    voters: int


@dataclass(frozen=True, slots=True)
class QuestionAsked(Payload):
    """A question asked (never its text)."""

    kind = EventKind.QUESTION
    question_id: str
    anonymous: bool


@dataclass(frozen=True, slots=True)
class Upvote(Payload):
    """An upvote counted."""

    kind = EventKind.UPVOTE
    question_id: str


@dataclass(frozen=True, slots=True)
class Reaction(Payload):
    """A reaction."""

    kind = EventKind.REACTION
    emoji: str


@dataclass(frozen=True, slots=True)
class StreamChange(Payload):
    """A stage's stream state changed to ``state`` from ``was``: a system event."""

    state: str
    was: str


@dataclass(frozen=True, slots=True)
class StreamStarted(StreamChange):
    """The stream became live."""

    kind = EventKind.STREAM_STARTED


@dataclass(frozen=True, slots=True)
class StreamEnded(StreamChange):
    """The stream stopped being live (interrupted or ended)."""

    kind = EventKind.STREAM_ENDED


@dataclass(frozen=True, slots=True)
class StreamHealth(Payload):
    """A live stage's ingest health (every few seconds): a system event."""

    kind = EventKind.STREAM_HEALTH
    health: Mapping[str, Any]

    def data(self) -> dict[str, Any]:
        """The health figures as they were pushed to the moderators."""
        return dict(self.health)


@dataclass(frozen=True, slots=True)
class Checkin(Payload):
    """A scan of a hall's QR link (a person on site, R16); ``link_id`` names the link."""

    kind = EventKind.CHECKIN
    link_id: str


@dataclass(frozen=True, slots=True)
class SessionJoin(Payload):
    """A person was let into an online workshop (not while waiting in its lobby).

    ``session_role`` is ``host``, ``speaker`` or ``participant`` (the token's ``role`` is
    added beside it); ``waited_seconds`` is the time spent in the lobby.
    """

    kind = EventKind.SESSION_JOIN
    session_role: str
    waited_seconds: int


@dataclass(frozen=True, slots=True)
class SessionLeave(Payload):
    """A person's stay in an online workshop ended: the attendance record.

    ``reason``: ``left``, ``disconnected``, ``removed`` or ``ended``. ``seconds`` present,
    ``floor_seconds`` holding the floor (allowed to publish), ``audio_seconds`` and
    ``video_seconds`` publishing microphone and camera as the room provider reported it
    (minus time a host muted it).
    """

    kind = EventKind.SESSION_LEAVE
    session_role: str
    reason: str
    seconds: int
    floor_seconds: int
    audio_seconds: int
    video_seconds: int
