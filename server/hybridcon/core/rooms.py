"""The room-provider interface: what hybridcon asks of whatever carries a session's media.

A zoom-style session (``session:<id>``, programme ``online = "room"``) is run by
hybridcon: lobby, roles, floor, breakouts and attendance are its rules
(:mod:`hybridcon.core.sessions`). The media (cameras, microphones) is carried by a
*room provider*: ``builtin`` (aiortc pass-through hubs in this process) or ``janus``
(a Janus VideoRoom hybridcon drives over its API). Browsers talk to hybridcon only:
they send a publish offer and receive subscription offers through hybridcon's HTTP
routes, which check the floor first; the provider then negotiates with its media
server. So a participant without the floor cannot publish whatever its page does.

Negotiation shapes, the same for both providers:

- publish: the participant's offer in, the provider's answer out;
- subscribe: one subscription per watched feed; the provider makes the *offer*
  (Janus's subscriber flow), the participant answers with :meth:`RoomProvider.complete`.

Participants are named by hybridcon's own identifier (the token's subject); providers
map it to their own ids. Everything here is pure types: the drivers live in
:mod:`hybridcon.rooms`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

from hybridcon.core.tokens import Claims

MediaKind = Literal["audio", "video"]


@dataclass(frozen=True, slots=True)
class RoomSpec:
    """A room to make (or make again after the media server came back)."""

    room: str  # the session's id (a breakout: "<session>~<n>")
    title: str
    max_publishers: int
    max_participants: int


@dataclass(frozen=True, slots=True)
class Negotiated:
    """One peer connection's SDP from the provider and the handle to end or answer it."""

    resource: str  # opaque, unguessable; names this peer connection to the provider
    sdp: str


@dataclass(frozen=True, slots=True)
class Feed:
    """A participant currently publishing in a room."""

    participant: str
    audio: bool
    video: bool
    audio_muted: bool = False
    video_muted: bool = False


class RoomEventKind(StrEnum):
    """What a provider reports back about a participant's media."""

    PUBLISHING = "publishing"  # media is flowing from the participant
    UNPUBLISHED = "unpublished"  # the participant's publishing ended (any reason)
    GONE = "gone"  # every peer connection of the participant ended
    PROVIDER_DOWN = "provider_down"  # the media server is unreachable (room = "")
    PROVIDER_UP = "provider_up"  # it is back; rooms were made again (room = "")


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """A provider's report; attendance (time on camera/microphone) is built from these."""

    kind: RoomEventKind
    room: str
    participant: str = ""
    audio: bool = False
    video: bool = False


RoomListener = Callable[[RoomEvent], None]


@dataclass(frozen=True, slots=True)
class MediaAccess:
    """What one person may do with media in a session now; the session rules decide."""

    room: str  # the room the person is in now: the session's, or a breakout's
    participant: str  # the token's subject
    may_publish: bool  # holds the floor (hosts and speakers do by role)
    host: bool


class MediaGate(Protocol):
    """Asked by the media routes before any negotiation (the sessions capability)."""

    def media_access(self, session: str, claims: Claims) -> MediaAccess:
        """The person's access, or raise: NotFound (no such session), Forbidden (not
        admitted, removed, or the session has ended)."""
        ...


class RoomProvider(Protocol):
    """Carries the media of zoom-style rooms. Every method raises
    :class:`hybridcon.errors.Unavailable` while the media server is unreachable and
    :class:`hybridcon.errors.Invalid` for an offer or answer it cannot use."""

    name: str

    @property
    def ready(self) -> bool:
        """Whether the media server answers (for ``/readyz`` and clear errors)."""
        ...

    def listen(self, listener: RoomListener) -> None:
        """Add a listener for :class:`RoomEvent` reports."""
        ...

    async def start(self) -> None:
        """Connect (and keep reconnecting) to the media server."""
        ...

    async def stop(self) -> None:
        """End this node's peer connections and disconnect. Rooms a media server keeps
        for several nodes (Janus) stay: they end with their session
        (:meth:`destroy_room`), not with one node."""
        ...

    async def ensure_room(self, spec: RoomSpec) -> None:
        """Make the room unless it exists (idempotent)."""
        ...

    async def destroy_room(self, room: str) -> None:
        """End the room and every peer connection in it (idempotent)."""
        ...

    async def publish(self, room: str, participant: str, offer: str) -> Negotiated:
        """Take the participant's camera/microphone offer; answer it."""
        ...

    async def subscribe(self, room: str, participant: str, feed: str) -> Negotiated:
        """Offer ``feed``'s media to ``participant``; the answer comes to :meth:`complete`."""
        ...

    async def complete(self, resource: str, answer: str) -> None:
        """The participant's answer to a subscription offer."""
        ...

    async def end(self, resource: str) -> None:
        """End one peer connection (a publish or a subscription); idempotent."""
        ...

    async def mute(self, room: str, participant: str, kind: MediaKind, muted: bool) -> None:
        """Stop (or resume) forwarding one kind of the participant's media to everyone."""
        ...

    async def unpublish(self, room: str, participant: str) -> None:
        """End the participant's publishing (the floor was taken); its subscriptions stay."""
        ...

    async def remove(self, room: str, participant: str) -> None:
        """End every peer connection of the participant in the room."""
        ...

    def feeds(self, room: str) -> list[Feed]:
        """Who is publishing in the room now."""
        ...
