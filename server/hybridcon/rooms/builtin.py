"""The builtin room provider: zoom-style rooms on the stage hub's pass-through code.

Every publishing participant gets a :class:`~hybridcon.media.hub.StageHub` of their
own (named ``<room>/<participant>``): their WebRTC publish goes in undecoded exactly as
a stage's WHIP publisher does (:func:`~hybridcon.media.peers.accept_publisher`), and
every other participant who watches them gets a subscription: a peer connection this
provider *offers* (:func:`~hybridcon.media.peers.offer_viewer`) with the hub's packets
in the publisher's own codec, which the participant answers. Nothing is decoded or
encoded on the server; a room of six cameras and forty watchers is 6 x 40 forwarded
streams, each at the pass-through's cost.

* **Mute** stops the hub handing a kind to anyone (the publisher keeps sending, the
  hub keeps draining); unmute resumes audio at once and video at the next keyframe.
* **Unpublish** (the floor taken) ends the participant's publish and every
  subscription to it; their own subscriptions stay.
* **Remove** ends every peer connection of the participant in the room.
* **Caps**: ``max_publishers`` per room (from its :class:`RoomSpec`) and
  ``max_peers`` peer connections on the node (publishes and subscriptions), both
  taken before the first await of a negotiation so offers arriving together cannot
  pass a cap together.
* **Events**: ``publishing`` when a publisher's first playable media reaches its hub,
  ``unpublished`` when a publish ends for any reason, ``gone`` when the participant's
  last peer connection ended by itself or on their request, or they were removed
  (not when hybridcon ended their subscriptions because the feed went away: they are
  still there).

No simulcast and no low layer for thumbnails: aiortc negotiates one encoding per
sender and knows neither ``a=rid`` nor ``a=simulcast`` (docs/architecture.md, "Rooms").
A subscriber gets the publisher's one stream, whatever size it shows it at.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiortc import RTCIceServer

from hybridcon.core.rooms import (
    Feed,
    MediaKind,
    Negotiated,
    RoomEvent,
    RoomEventKind,
    RoomListener,
    RoomSpec,
)
from hybridcon.errors import Conflict, Invalid, NotFound, Unavailable
from hybridcon.media.consumer import first_playable
from hybridcon.media.hub import StageHub
from hybridcon.media.packets import Kind, as_kind
from hybridcon.media.peers import Publisher, Viewer, accept_publisher, offer_viewer

log = structlog.get_logger(__name__)

# A subscription offer not answered within this many seconds is withdrawn: its peer
# connection would otherwise hold a place under the node's cap for ever.
ANSWER_TIMEOUT = 30.0
# What a room's publisher may send: H.264 (every browser) and VP8, as for stages.
VIDEO_CODECS = ("H264", "VP8")


@dataclass(eq=False)
class _Feed:
    room: str
    participant: str
    resource: str
    hub: StageHub
    publisher: Publisher | None = None
    kinds: tuple[Kind, ...] = ()
    flowing: bool = False
    watcher: asyncio.Task[None] | None = None


@dataclass(eq=False)
class _Subscription:
    room: str
    participant: str
    resource: str
    feed: _Feed
    viewer: Viewer
    deadline: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Room:
    spec: RoomSpec
    feeds: dict[str, _Feed] = field(default_factory=dict)
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)
    # Participants whose publish offer is being answered (held against the cap).
    publishing: set[str] = field(default_factory=set)
    # What a host muted, per participant: kept for their later publishes in the room.
    muted: dict[str, set[Kind]] = field(default_factory=dict)


class BuiltinRooms:
    """The ``builtin`` :class:`~hybridcon.core.rooms.RoomProvider` (module docstring).

    Attributes:
        name: ``"builtin"``.
        max_peers: peer connections this node takes for rooms.
    """

    name = "builtin"

    def __init__(
        self,
        *,
        max_peers: int,
        ice_servers: Callable[[], Sequence[RTCIceServer]] = list,
        ice_addresses: Sequence[str] = (),
        answer_timeout: float = ANSWER_TIMEOUT,
    ) -> None:
        """Args:
        max_peers: peer connections (publishes and subscriptions) on this node.
        ice_servers: the STUN/TURN servers for each new peer connection (called per
            connection: TURN credentials expire).
        ice_addresses: where host candidates are gathered (the ``ice_addresses``
            setting).
        answer_timeout: seconds a subscription offer waits for its answer.
        """
        self.max_peers = max_peers
        self._ice_servers = ice_servers
        self._ice_addresses = tuple(ice_addresses)
        self._answer_timeout = answer_timeout
        self._rooms: dict[str, _Room] = {}
        self._resources: dict[str, _Feed | _Subscription] = {}
        self._listeners: list[RoomListener] = []
        self._negotiating = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running = False

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether rooms can be served (between :meth:`start` and :meth:`stop`)."""
        return self._running

    def listen(self, listener: RoomListener) -> None:
        """Add a listener for :class:`RoomEvent` reports (called synchronously)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Nothing to connect to: the media is carried in this process."""
        self._running = True

    async def stop(self) -> None:
        """End every room and peer connection."""
        self._running = False
        for room in list(self._rooms):
            await self.destroy_room(room)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def peers(self) -> int:
        """Peer connections on this node: publishes, subscriptions, and offers being
        negotiated."""
        return self._negotiating + sum(
            len(r.feeds) + len(r.subscriptions) for r in self._rooms.values()
        )

    # --- rooms -------------------------------------------------------------------------

    async def ensure_room(self, spec: RoomSpec) -> None:
        """Make the room unless it exists (an existing room keeps the spec it was made
        with: the session rules make it first, the media routes only make sure)."""
        self._check_running()
        if spec.room not in self._rooms:
            self._rooms[spec.room] = _Room(spec=spec)
            log.info("rooms.room_made", room=spec.room)

    async def destroy_room(self, room: str) -> None:
        """End the room and every peer connection in it (idempotent)."""
        state = self._rooms.get(room)
        if state is None:
            return
        participants = {*state.feeds, *(s.participant for s in state.subscriptions.values())}
        for participant in participants:
            await self._remove(state, participant)
        self._rooms.pop(room, None)
        log.info("rooms.room_destroyed", room=room)

    def feeds(self, room: str) -> list[Feed]:
        """Who is publishing in the room now (none for an unknown room)."""
        state = self._rooms.get(room)
        if state is None:
            return []
        return [
            Feed(
                participant=feed.participant,
                audio="audio" in feed.kinds,
                video="video" in feed.kinds,
                audio_muted=feed.hub.muted("audio"),
                video_muted=feed.hub.muted("video"),
            )
            for feed in state.feeds.values()
        ]

    def _room(self, room: str) -> _Room:
        self._check_running()
        state = self._rooms.get(room)
        if state is None:
            raise NotFound(f"no media room {room!r} on this node")
        return state

    def _check_running(self) -> None:
        if not self._running:
            raise Unavailable("the room media is not running on this node", retry_after=10)

    def _take_peer(self) -> None:
        """Hold a place under the node's cap (before the first await), or refuse."""
        if self.peers >= self.max_peers:
            raise Unavailable(
                f"this node carries {self.max_peers} room connections, the most it takes",
                retry_after=30,
            )
        self._negotiating += 1

    # --- publishing --------------------------------------------------------------------

    async def publish(self, room: str, participant: str, offer: str) -> Negotiated:
        """Answer the participant's camera/microphone offer; their media goes into a hub
        of their own. A participant publishing again replaces their previous publish
        (a reloaded page), which ends the subscriptions to it.

        Raises:
            NotFound: no such room.
            Conflict: the room has ``max_publishers`` publishing, or an offer of this
                participant's is being answered.
            Unavailable: the node is at ``max_peers``.
            Invalid: the offer is not usable SDP (see
                :func:`~hybridcon.media.peers.accept_publisher`).
        """
        state = self._room(room)
        if participant in state.publishing:
            raise Conflict(f"a publish offer of {participant}'s is being answered already")
        others = len(state.publishing) + sum(1 for p in state.feeds if p != participant)
        if others >= state.spec.max_publishers:
            raise Conflict(
                f"room {room} has {state.spec.max_publishers} people publishing, the most "
                "it takes; one of them must stop first"
            )
        self._take_peer()
        state.publishing.add(participant)
        feed = _Feed(room, participant, _resource(), StageHub(f"{room}/{participant}"))
        for kind in state.muted.get(participant, ()):
            feed.hub.mute(kind, True)  # before any viewer can see a packet
        try:
            previous = state.feeds.get(participant)
            if previous is not None:
                await self._end_feed(previous, by_participant=False)
            publisher = await accept_publisher(
                offer,
                feed.hub,
                ice_servers=self._ice_servers(),
                ice_addresses=self._ice_addresses,
                video_codecs=VIDEO_CODECS,
                on_closed=lambda: self._background(self._end_feed(feed, by_participant=True)),
            )
        finally:
            state.publishing.discard(participant)
            self._negotiating -= 1
        if self._rooms.get(room) is not state:  # the room ended meanwhile
            await publisher.close()
            await feed.hub.detach()
            raise NotFound(f"room {room} has ended")
        feed.publisher = publisher
        feed.kinds = tuple(k for k in ("audio", "video") if k in publisher.codecs)
        state.feeds[participant] = feed
        self._resources[feed.resource] = feed
        feed.watcher = asyncio.create_task(self._first_media(feed), name=f"room-first-media-{room}")
        log.info("rooms.published", room=room, codecs=publisher.codecs)
        return Negotiated(resource=feed.resource, sdp=publisher.answer_sdp)

    async def _first_media(self, feed: _Feed) -> None:
        """Report ``publishing`` when the feed's first playable packet reaches its hub:
        any audio, or a video keyframe."""
        consumers = [feed.hub.consumer(kind, name="first-media") for kind in feed.kinds]
        arrived = await first_playable(consumers)
        if arrived and self._live(feed):
            feed.flowing = True
            self._emit(RoomEventKind.PUBLISHING, feed)

    def _live(self, feed: _Feed) -> bool:
        state = self._rooms.get(feed.room)
        return state is not None and state.feeds.get(feed.participant) is feed

    async def unpublish(self, room: str, participant: str) -> None:
        """End the participant's publish (the floor was taken) and every subscription to
        it; their own subscriptions stay. Idempotent."""
        state = self._rooms.get(room)
        feed = state.feeds.get(participant) if state is not None else None
        if feed is not None:
            await self._end_feed(feed, by_participant=False)

    async def mute(self, room: str, participant: str, kind: MediaKind, muted: bool) -> None:
        """Stop (or resume) forwarding one kind of the participant's media to everyone,
        now and in their later publishes in the room (a host may mute someone who is not
        publishing yet).

        Raises:
            NotFound: no such room.
            Invalid: an unknown kind.
        """
        state = self._room(room)
        checked = as_kind(kind)
        kinds = state.muted.setdefault(participant, set())
        if muted:
            kinds.add(checked)
        else:
            kinds.discard(checked)
        feed = state.feeds.get(participant)
        if feed is not None:
            feed.hub.mute(checked, muted)
        log.info("rooms.muted", room=room, kind=checked, muted=muted, publishing=feed is not None)

    async def _end_feed(self, feed: _Feed, *, by_participant: bool) -> None:
        state = self._rooms.get(feed.room)
        if state is None or state.feeds.get(feed.participant) is not feed:
            return
        del state.feeds[feed.participant]
        self._resources.pop(feed.resource, None)
        for sub in [s for s in state.subscriptions.values() if s.feed is feed]:
            await self._end_subscription(sub, by_participant=False)
        if feed.watcher is not None:
            feed.watcher.cancel()
        if feed.publisher is not None:
            with contextlib.suppress(Exception):
                await feed.publisher.close()
        await feed.hub.detach()
        self._emit(RoomEventKind.UNPUBLISHED, feed)
        log.info("rooms.unpublished", room=feed.room, by_participant=by_participant)
        if by_participant:
            self._gone_if_last(state, feed.participant)

    # --- subscribing -------------------------------------------------------------------

    async def subscribe(self, room: str, participant: str, feed: str) -> Negotiated:
        """Offer ``feed``'s media to ``participant``; the answer comes to :meth:`complete`.

        A participant has one subscription per feed: a second one replaces the first
        (a reloaded page).

        Raises:
            NotFound: no such room, or ``feed`` is not publishing in it.
            Invalid: a participant subscribing to their own feed.
            Unavailable: the node is at ``max_peers``.
        """
        state = self._room(room)
        if feed == participant:
            raise Invalid("you cannot subscribe to your own feed; show your camera locally")
        source = state.feeds.get(feed)
        if source is None:
            raise NotFound(f"{feed} is not publishing in room {room}")
        for old in [
            s
            for s in state.subscriptions.values()
            if s.participant == participant and s.feed is source
        ]:
            await self._end_subscription(old, by_participant=False)
        self._take_peer()
        resource = _resource()
        sub: _Subscription | None = None

        def closed() -> None:
            if sub is not None:
                self._background(self._end_subscription(sub, by_participant=True))

        try:
            viewer = await offer_viewer(
                source.hub,
                source.kinds,
                ice_servers=self._ice_servers(),
                ice_addresses=self._ice_addresses,
                on_closed=closed,
                name=f"room:{room}:{resource[:8]}",
            )
        finally:
            self._negotiating -= 1
        if not self._live(source):  # unpublished (or the room ended) meanwhile
            await viewer.close()
            raise NotFound(f"{feed} stopped publishing in room {room}")
        sub = _Subscription(room, participant, resource, source, viewer)
        sub.deadline = asyncio.get_running_loop().call_later(
            self._answer_timeout, self._unanswered, sub
        )
        state.subscriptions[resource] = sub
        self._resources[resource] = sub
        return Negotiated(resource=resource, sdp=viewer.offer_sdp)

    async def complete(self, resource: str, answer: str) -> None:
        """The participant's answer to a subscription offer.

        Raises:
            NotFound: no such subscription (ended, withdrawn unanswered, or never made).
            Invalid: a publish (its answer went with the offer), or an unusable answer.
            Conflict: the offer was answered already.
        """
        self._check_running()
        sub = self._resources.get(resource)
        if isinstance(sub, _Feed):
            raise Invalid("this is a publish; its answer came with the offer")
        if sub is None:
            raise NotFound("no such subscription (it ended, or its offer went unanswered)")
        await sub.viewer.complete(answer)
        if sub.deadline is not None:
            sub.deadline.cancel()
            sub.deadline = None

    def _unanswered(self, sub: _Subscription) -> None:
        sub.deadline = None
        if not sub.viewer.answered:
            log.info("rooms.offer_unanswered", room=sub.room, resource=sub.resource[:8])
            self._background(self._end_subscription(sub, by_participant=True))

    async def _end_subscription(self, sub: _Subscription, *, by_participant: bool) -> None:
        state = self._rooms.get(sub.room)
        if state is None or state.subscriptions.get(sub.resource) is not sub:
            return
        del state.subscriptions[sub.resource]
        self._resources.pop(sub.resource, None)
        if sub.deadline is not None:
            sub.deadline.cancel()
        with contextlib.suppress(Exception):
            await sub.viewer.close()
        if by_participant:
            self._gone_if_last(state, sub.participant)

    # --- ending ------------------------------------------------------------------------

    async def end(self, resource: str) -> None:
        """End one peer connection (a publish or a subscription), as its participant asked;
        idempotent."""
        found = self._resources.get(resource)
        if isinstance(found, _Feed):
            await self._end_feed(found, by_participant=True)
        elif found is not None:
            await self._end_subscription(found, by_participant=True)

    async def remove(self, room: str, participant: str) -> None:
        """End every peer connection of the participant in the room (idempotent)."""
        state = self._rooms.get(room)
        if state is not None:
            await self._remove(state, participant)

    async def _remove(self, state: _Room, participant: str) -> None:
        had = False
        feed = state.feeds.get(participant)
        if feed is not None:
            had = True
            await self._end_feed(feed, by_participant=False)
        for sub in [s for s in state.subscriptions.values() if s.participant == participant]:
            had = True
            await self._end_subscription(sub, by_participant=False)
        if had:
            self._events(RoomEvent(RoomEventKind.GONE, state.spec.room, participant))

    def _gone_if_last(self, state: _Room, participant: str) -> None:
        if participant in state.feeds or participant in state.publishing:
            return
        if any(s.participant == participant for s in state.subscriptions.values()):
            return
        self._events(RoomEvent(RoomEventKind.GONE, state.spec.room, participant))

    # --- events and tasks --------------------------------------------------------------

    def _emit(self, kind: RoomEventKind, feed: _Feed) -> None:
        self._events(
            RoomEvent(
                kind,
                feed.room,
                feed.participant,
                audio="audio" in feed.kinds,
                video="video" in feed.kinds,
            )
        )

    def _events(self, event: RoomEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # one listener's bug must not stop the media or the others
                log.exception("rooms.listener_failed", kind=event.kind.value)

    def _background(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _resource() -> str:
    """An unguessable name for one peer connection (it is the capability in the URL)."""
    return secrets.token_urlsafe(18)
