"""The ``janus`` room provider: zoom-style rooms' media in a Janus VideoRoom hybridcon drives.

hybridcon is Janus's only client (browsers talk to hybridcon, which checks the floor
first, :mod:`hybridcon.core.rooms`), over one WebSocket and one Janus session:

* **Rooms** are made and destroyed by hybridcon (``create`` with the VideoRoom's
  ``admin_key``, a per-room ``secret`` derived from the room key, an ``allowed`` list).
  Janus names rooms by number: a room's is derived from its name (:func:`room_number`), so
  a restarted hybridcon finds its rooms again.
* **Per-person tokens**: each participant gets a random token hybridcon mints and adds to
  the room's ``allowed`` list; every join (publisher or subscriber) carries it, and
  :meth:`JanusRooms.remove` takes it off the list. Janus refuses a join without one
  (433 UNAUTHORIZED). With Janus's ``token_auth`` on (``janus_admin_url`` set),
  hybridcon also mints its own API token over the admin API at every connect.
* **Publish**: a handle of the participant's own joins as a publisher and publishes in one
  request (``joinandconfigure``) with the participant's offer; Janus answers.
  **Subscribe**: a handle per subscription joins as a subscriber to one feed; Janus
  offers, the participant's answer comes to :meth:`JanusRooms.complete` (``start``).
  Mute is ``moderate``, remove is ``kick``, unpublish is ``unpublish``.
* **What Janus reports**: each room has a *watch* handle of hybridcon's, joined as a
  publisher that never publishes, which hears ``publishers``, ``unpublished``,
  ``leaving``, ``kicked`` and ``moderation``: :meth:`JanusRooms.feeds` is that view, and a
  publisher leaving ends the subscriptions to it (their handles detach). The
  participants' handles report ``webrtcup`` and ``hangup``, which become
  :class:`~hybridcon.core.rooms.RoomEvent` s for attendance.
* **Janus down**: when the socket drops (or a keepalive is refused) ``ready`` turns False,
  every peer connection is reported ended, :data:`~RoomEventKind.PROVIDER_DOWN` goes out
  and calls raise :class:`~hybridcon.errors.Unavailable` naming Janus. A supervisor
  reconnects with backoff; when Janus answers again every room hybridcon knew is made
  again, then :data:`~RoomEventKind.PROVIDER_UP` goes out (participants publish and
  subscribe anew: Janus's peer connections died with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog

from hybridcon.core.rooms import (
    Feed,
    MediaKind,
    Negotiated,
    RoomEvent,
    RoomEventKind,
    RoomListener,
    RoomSpec,
)
from hybridcon.errors import ConfigError, HybridconError, Invalid, NotFound, Unavailable
from hybridcon.rooms.janus_api import (
    NO_SUCH_ROOM,
    ROOM_EXISTS,
    UNREACHABLE,
    JanusAdmin,
    JanusConnection,
    JanusError,
    JanusHandle,
    JanusSession,
    Json,
)

if TYPE_CHECKING:
    from hybridcon.settings import Settings

log = structlog.get_logger(__name__)

WATCHER = "hybridcon"  # the watch handles' display name
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0
KEEPALIVE = 15.0  # Janus's session_timeout is 60 s by default; keep well below it
MIN_SECRET = 16


def room_number(room: str) -> int:
    """The Janus room number for hybridcon's room name: stable, below 2**48 (a safe integer
    in every JSON reader), never 0."""
    digest = hashlib.sha256(f"hybridcon-room:{room}".encode()).digest()
    return int.from_bytes(digest[:6], "big") or 1


def read_secret(path: Path, *, create: bool, what: str) -> str:
    """A secret kept as one line of text in ``path``.

    Args:
        path: the file.
        create: make it (random, mode 0600) when missing.
        what: the secret in words, for errors.

    Raises:
        ConfigError: missing (and not to be created), unreadable or too short.
    """
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
            finally:
                os.close(fd)
    try:
        value = path.read_text("utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"{what}: no file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc}") from None
    if len(value) < MIN_SECRET:
        raise ConfigError(f"{what} in {path} is shorter than {MIN_SECRET} characters")
    return value


@dataclass(eq=False)
class _Peer:
    """One peer connection of a participant: a Janus handle of its own."""

    resource: str
    room: str
    participant: str
    kind: Literal["publish", "subscribe"]
    handle: JanusHandle | None = None
    feed_id: int = 0  # a publish: the participant's id in the Janus room
    audio: bool = False
    video: bool = False
    up: bool = False  # webrtcup seen, no hangup since
    ended: bool = False


@dataclass
class _Published:
    """A publisher as the room's watch handle hears of it."""

    participant: str
    mids: dict[str, MediaKind]  # mid -> kind
    muted: set[str] = field(default_factory=set)  # muted mids


@dataclass(eq=False)
class _Room:
    spec: RoomSpec
    number: int
    secret: str
    watch: JanusHandle | None = None
    watch_token: str = ""
    tokens: dict[str, str] = field(default_factory=dict)  # participant -> its token
    published: dict[int, _Published] = field(default_factory=dict)  # Janus id -> publisher
    muted: dict[str, set[MediaKind]] = field(default_factory=dict)  # host's mutes, kept
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class JanusRooms:
    """:class:`~hybridcon.core.rooms.RoomProvider` on a Janus VideoRoom.

    Args:
        url: the Janus API's WebSocket URL (``ws://host:8188``).
        room_key: the VideoRoom plugin's ``admin_key``; also the seed of the rooms' secrets.
        admin_url: the admin API's WebSocket URL, when Janus has ``token_auth`` on (None:
            requests carry no token).
        admin_secret: Janus's ``admin_secret`` (with ``admin_url``).
        timeout: seconds one request to Janus may take.
        keepalive: seconds between session keepalives.
        backoff_max: longest wait between two reconnect attempts.
    """

    name = "janus"

    def __init__(
        self,
        url: str,
        *,
        room_key: str,
        admin_url: str | None = None,
        admin_secret: str | None = None,
        timeout: float = 10.0,
        keepalive: float = KEEPALIVE,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        if admin_url is not None and not admin_secret:
            raise ConfigError("the Janus admin API needs its admin secret")
        self.url = url
        self.room_key = room_key
        self.admin = (
            JanusAdmin(admin_url, admin_secret or "", timeout=timeout) if admin_url else None
        )
        self.timeout = timeout
        self.keepalive = keepalive
        self.backoff_max = backoff_max
        self._listeners: list[RoomListener] = []
        self._rooms: dict[str, _Room] = {}
        self._peers: dict[str, _Peer] = {}
        self._connection: JanusConnection | None = None
        self._session: JanusSession | None = None
        self._control: JanusHandle | None = None
        self._api_token: str | None = None
        self._ready = False
        self._lost = asyncio.Event()
        self._tried = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> JanusRooms:
        """The provider the settings describe (``rooms_provider = "janus"``).

        Raises:
            ConfigError: a secret file is missing, unreadable or too short.
        """
        room_key = read_secret(
            settings.janus_room_key_path, create=True, what="the Janus VideoRoom admin_key"
        )
        admin_secret = None
        if settings.janus_admin_url is not None:
            admin_secret = read_secret(
                settings.janus_admin_secret_path,
                create=False,
                what="Janus's admin_secret (janus.jcfg; needed with janus_admin_url)",
            )
        return cls(
            settings.janus_url,
            room_key=room_key,
            admin_url=settings.janus_admin_url,
            admin_secret=admin_secret,
            timeout=settings.janus_timeout,
        )

    # --- the provider's life -------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether Janus answers and every known room is made."""
        return self._ready

    def listen(self, listener: RoomListener) -> None:
        """Add a listener for :class:`RoomEvent` reports."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Connect, and keep reconnecting; returns after the first attempt (``ready`` says
        how it went: hybridcon starts whether Janus is up or not)."""
        self._stopping = False
        self._supervisor = asyncio.create_task(self._supervise(), name="janus-supervisor")
        await self._tried.wait()

    async def stop(self) -> None:
        """End the session (Janus then ends its handles: this node's participants' peer
        connections) and disconnect. The rooms stay in Janus: other nodes, or this one
        restarted, serve them on (they end with their session, :meth:`destroy_room`)."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        self._ready = False
        await self._disconnect()
        if self.admin is not None and self._api_token is not None:
            with contextlib.suppress(HybridconError):
                await self.admin.remove_token(self._api_token)
        self._api_token = None

    async def _supervise(self) -> None:
        backoff = BACKOFF_FIRST
        down_reported = False
        while not self._stopping:
            try:
                await self._connect()
            except Exception as exc:  # anything: the supervisor must keep trying
                error = exc.message if isinstance(exc, HybridconError) else repr(exc)
                log.warning("janus_unreachable", url=self.url, error=error, retry_in=backoff)
                await self._disconnect()
                if not down_reported:
                    down_reported = True
                    self._emit(RoomEvent(RoomEventKind.PROVIDER_DOWN, ""))
                self._tried.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                continue
            self._ready = True
            backoff = BACKOFF_FIRST
            log.info("janus_ready", url=self.url, rooms=len(self._rooms))
            if down_reported:
                down_reported = False
                self._emit(RoomEvent(RoomEventKind.PROVIDER_UP, ""))
            self._tried.set()
            await self._lost.wait()
            self._ready = False
            log.warning("janus_lost", url=self.url)
            self._drop_everything()
            await self._disconnect()
            down_reported = True
            self._emit(RoomEvent(RoomEventKind.PROVIDER_DOWN, ""))

    async def _connect(self) -> None:
        self._lost = asyncio.Event()
        lost = self._lost
        if self.admin is not None:
            old, self._api_token = self._api_token, secrets.token_urlsafe(24)
            await self.admin.add_token(self._api_token)
            if old is not None:  # after a restart Janus has forgotten it: nothing to do then
                with contextlib.suppress(HybridconError):
                    await self.admin.remove_token(old)
        connection = JanusConnection(self.url, timeout=self.timeout, on_close=lost.set)
        self._connection = connection
        await connection.connect()
        session = JanusSession(connection, token=self._api_token, keepalive=self.keepalive)
        await session.create()
        self._session = session
        connection.on_session_event(self._on_session_event)
        self._control = await session.attach()
        for room in list(self._rooms.values()):
            await self._make(room)

    async def _disconnect(self) -> None:
        session, connection = self._session, self._connection
        self._session = self._connection = self._control = None
        if session is not None:
            await session.destroy()
        if connection is not None:
            await connection.close()

    def _on_session_event(self, message: Json) -> None:
        if message.get("janus") == "timeout":  # the session expired: start again
            log.warning("janus_session_timeout", session=message.get("session_id"))
            self._lost.set()

    def _usable(self) -> tuple[JanusSession, JanusHandle]:
        """The session and control handle for a caller's request; Unavailable while Janus
        is down or rooms are being made again."""
        if not self._ready:
            raise Unavailable(UNREACHABLE)
        return self._live()

    def _live(self) -> tuple[JanusSession, JanusHandle]:
        """The session and control handle, also while (re)connecting."""
        if self._session is None or self._control is None:
            raise Unavailable(UNREACHABLE)
        return self._session, self._control

    def _room(self, room: str) -> _Room:
        found = self._rooms.get(room)
        if found is None:
            raise NotFound(f"no media room {room!r} (the session's room is not open)")
        return found

    def _emit(self, event: RoomEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("room_listener_failed", kind=event.kind, room=event.room)

    # --- rooms ---------------------------------------------------------------------------

    def _secret(self, room: str) -> str:
        return hmac.new(self.room_key.encode(), f"room:{room}".encode(), "sha256").hexdigest()

    async def ensure_room(self, spec: RoomSpec) -> None:
        """Make the room in Janus unless it exists (idempotent).

        Raises:
            Unavailable: Janus is down.
            JanusError: Janus refused (a wrong admin_key: Forbidden, 433).
        """
        self._usable()
        room = self._rooms.get(spec.room)
        if room is None:
            # Registered before it is made, so a second call waits on the same lock.
            room = _Room(spec, room_number(spec.room), self._secret(spec.room))
            self._rooms[spec.room] = room
        async with room.lock:
            if room.watch is not None:
                return
            try:
                await self._make(room)
            except HybridconError:
                if room.watch is None and self._rooms.get(spec.room) is room:
                    del self._rooms[spec.room]  # not made: nothing to make again later
                raise

    async def _make(self, room: _Room) -> None:
        """Create the room (or find it) and join its watch handle."""
        session, control = self._live()
        room.watch_token = secrets.token_urlsafe(24)
        room.tokens.clear()
        room.published.clear()
        body: Json = {
            "request": "create",
            "room": room.number,
            "admin_key": self.room_key,
            "secret": room.secret,
            "description": room.spec.title[:100],
            "publishers": room.spec.max_publishers,
            "allowed": [room.watch_token],
            "audiocodec": "opus",
            "videocodec": "vp8,h264",
            "notify_joining": False,
        }
        try:
            await control.message(body)
        except JanusError as exc:
            if exc.janus_code != ROOM_EXISTS:
                raise
            # Made by an earlier run of hybridcon (same key, same secret): admit the watch.
            await self._allow(room, "add", [room.watch_token])
        watch = await session.attach()
        watch.listen(lambda message: self._on_watch_event(room, message))
        try:
            reply = await watch.message(
                {
                    "request": "join",
                    "ptype": "publisher",
                    "room": room.number,
                    "display": WATCHER,
                    "token": room.watch_token,
                }
            )
        except HybridconError:
            await watch.detach()
            raise
        room.watch = watch
        self._heard_publishers(room, reply.data.get("publishers"))

    async def _allow(self, room: _Room, action: str, tokens: list[str]) -> None:
        _session, control = self._live()
        await control.message(
            {
                "request": "allowed",
                "room": room.number,
                "secret": room.secret,
                "action": action,
                "allowed": tokens,
            }
        )

    async def destroy_room(self, room: str) -> None:
        """End every peer connection in the room and the room (idempotent).

        Raises:
            Unavailable: Janus is down.
        """
        _session, control = self._usable()
        found = self._rooms.pop(room, None)
        if found is None:
            return
        async with found.lock:
            for peer in [p for p in self._peers.values() if p.room == room]:
                await self._end_peer(peer)
            if found.watch is not None:
                await found.watch.detach()
                found.watch = None
            try:
                await control.message(
                    {"request": "destroy", "room": found.number, "secret": found.secret}
                )
            except JanusError as exc:
                if exc.janus_code != NO_SUCH_ROOM:
                    raise

    def feeds(self, room: str) -> list[Feed]:
        """Who publishes in the room now, as Janus reports it."""
        found = self._rooms.get(room)
        if found is None:
            return []
        feeds = []
        for published in found.published.values():
            kinds = set(published.mids.values())
            muted = {published.mids[mid] for mid in published.muted if mid in published.mids}
            feeds.append(
                Feed(
                    published.participant,
                    audio="audio" in kinds,
                    video="video" in kinds,
                    audio_muted="audio" in muted,
                    video_muted="video" in muted,
                )
            )
        return sorted(feeds, key=lambda f: f.participant)

    # --- tokens --------------------------------------------------------------------------

    async def _token(self, room: _Room, participant: str) -> str:
        token = room.tokens.get(participant)
        if token is None:
            token = secrets.token_urlsafe(24)
            await self._allow(room, "add", [token])
            room.tokens[participant] = token
        return token

    # --- negotiation ---------------------------------------------------------------------

    async def publish(self, room: str, participant: str, offer: str) -> Negotiated:
        """The participant's offer to Janus (``joinandconfigure``); Janus's answer.

        A participant publishes once: an earlier publish of theirs is ended first.

        Raises:
            Unavailable: Janus is down.
            NotFound: no such room.
            Invalid: the offer is not SDP, or Janus cannot use it.
            Conflict: the room has its most publishers.
        """
        session, _control = self._usable()
        found = self._room(room)
        _check_sdp(offer, "offer")
        for old in [p for p in self._peers.values() if _is_publish_of(p, room, participant)]:
            await self._end_peer(old, report=False)
        token = await self._token(found, participant)
        peer = _Peer(secrets.token_urlsafe(18), room, participant, "publish")
        handle = await self._attach(session, peer)
        try:
            reply = await handle.message(
                {
                    "request": "joinandconfigure",
                    "ptype": "publisher",
                    "room": found.number,
                    "display": participant,
                    "token": token,
                    "audio": True,
                    "video": True,
                },
                {"type": "offer", "sdp": offer},
            )
        except HybridconError:
            await self._end_peer(peer, report=False)
            raise
        if reply.jsep is None or reply.jsep.get("type") != "answer":
            await self._end_peer(peer, report=False)
            raise Invalid("the video server (Janus) gave no answer to this offer")
        peer.feed_id = int(reply.data.get("id", 0))
        kinds = {str(s.get("type")) for s in reply.data.get("streams", [])}
        peer.audio, peer.video = "audio" in kinds, "video" in kinds
        for kind in sorted(found.muted.get(participant, set())):
            # The host's mute outlives a new publish (a new Janus id); apply it again.
            with contextlib.suppress(HybridconError):
                await self._moderate(found, peer.feed_id, reply.data.get("streams", []), kind, True)
        return Negotiated(peer.resource, str(reply.jsep["sdp"]))

    async def subscribe(self, room: str, participant: str, feed: str) -> Negotiated:
        """Janus's offer of ``feed``'s media to ``participant``.

        Raises:
            Unavailable: Janus is down.
            NotFound: no such room, or ``feed`` is not publishing in it.
        """
        session, _control = self._usable()
        found = self._room(room)
        feed_id = next((i for i, p in found.published.items() if p.participant == feed), None)
        if feed_id is None:
            raise NotFound(f"{feed!r} is not publishing in room {room!r}")
        token = await self._token(found, participant)
        peer = _Peer(secrets.token_urlsafe(18), room, participant, "subscribe", feed_id=feed_id)
        handle = await self._attach(session, peer)
        try:
            reply = await handle.message(
                {
                    "request": "join",
                    "ptype": "subscriber",
                    "room": found.number,
                    "streams": [{"feed": feed_id}],
                    "token": token,
                }
            )
        except HybridconError:
            await self._end_peer(peer, report=False)
            raise
        if reply.jsep is None or reply.jsep.get("type") != "offer":
            await self._end_peer(peer, report=False)
            raise Unavailable(f"the video server (Janus) made no offer for {feed!r}")
        return Negotiated(peer.resource, str(reply.jsep["sdp"]))

    async def complete(self, resource: str, answer: str) -> None:
        """The participant's answer to a subscription offer (``start``).

        Raises:
            Unavailable: Janus is down.
            NotFound: no such subscription (ended, or never made).
            Invalid: the answer is not SDP, or Janus cannot use it.
        """
        self._usable()
        peer = self._peers.get(resource)
        if peer is None or peer.kind != "subscribe" or peer.handle is None:
            raise NotFound("no such subscription (it ended or was never made)")
        _check_sdp(answer, "answer")
        await peer.handle.message({"request": "start"}, {"type": "answer", "sdp": answer})

    async def end(self, resource: str) -> None:
        """End one peer connection (detach its handle); idempotent."""
        peer = self._peers.get(resource)
        if peer is not None:
            await self._end_peer(peer)

    # --- a host's controls ---------------------------------------------------------------

    async def mute(self, room: str, participant: str, kind: MediaKind, muted: bool) -> None:
        """Stop (or resume) forwarding the participant's ``kind`` to everyone (``moderate``);
        kept for the participant's later publishes in the room.

        Raises:
            Unavailable: Janus is down.
            NotFound: no such room.
        """
        self._usable()
        found = self._room(room)
        kinds = found.muted.setdefault(participant, set())
        if muted:
            kinds.add(kind)
        else:
            kinds.discard(kind)
        for janus_id, published in list(found.published.items()):
            if published.participant == participant:
                streams = [{"type": k, "mid": m} for m, k in published.mids.items()]
                await self._moderate(found, janus_id, streams, kind, muted)

    async def _moderate(
        self, room: _Room, janus_id: int, streams: list[Json], kind: MediaKind, muted: bool
    ) -> None:
        _session, control = self._live()
        for stream in streams:
            if stream.get("type") == kind:
                await control.message(
                    {
                        "request": "moderate",
                        "room": room.number,
                        "secret": room.secret,
                        "id": janus_id,
                        "mid": str(stream.get("mid")),
                        "mute": muted,
                    }
                )

    async def unpublish(self, room: str, participant: str) -> None:
        """End the participant's publishing (``unpublish``, then its handle leaves); its
        subscriptions stay.

        Raises:
            Unavailable: Janus is down.
        """
        self._usable()
        for peer in [p for p in self._peers.values() if _is_publish_of(p, room, participant)]:
            if peer.handle is not None:
                with contextlib.suppress(JanusError):  # 435 NOT_PUBLISHED: already over
                    await peer.handle.message({"request": "unpublish"})
            await self._end_peer(peer)

    async def remove(self, room: str, participant: str) -> None:
        """End every peer connection of the participant (``kick``, then its subscriptions)
        and take its token off the room's ``allowed`` list.

        Raises:
            Unavailable: Janus is down.
        """
        _session, control = self._usable()
        found = self._rooms.get(room)
        if found is None:
            return
        for peer in [p for p in self._peers.values() if _is_publish_of(p, room, participant)]:
            if peer.feed_id:
                with contextlib.suppress(JanusError):  # 428: it left already
                    await control.message(
                        {
                            "request": "kick",
                            "room": found.number,
                            "secret": found.secret,
                            "id": peer.feed_id,
                        }
                    )
        for peer in [
            p for p in self._peers.values() if p.room == room and p.participant == participant
        ]:
            await self._end_peer(peer)
        token = found.tokens.pop(participant, None)
        if token is not None:
            await self._allow(found, "remove", [token])

    # --- peers and their events ------------------------------------------------------------

    async def _attach(self, session: JanusSession, peer: _Peer) -> JanusHandle:
        handle = await session.attach()
        peer.handle = handle
        self._peers[peer.resource] = peer
        handle.listen(lambda message: self._on_peer_event(peer, message))
        return handle

    async def _end_peer(self, peer: _Peer, *, report: bool = True) -> None:
        """Detach the peer's handle and report what ended."""
        if peer.ended:
            return
        self._retire(peer, report=report)
        if peer.handle is not None:
            await peer.handle.detach()

    def _retire(self, peer: _Peer, *, report: bool = True) -> None:
        """Forget the peer; report its publishing's end and, if it was the participant's last
        peer connection in the room, that the participant is gone."""
        if peer.ended:
            return
        peer.ended = True
        self._peers.pop(peer.resource, None)
        if peer.kind == "publish" and peer.up and report:
            self._emit(
                RoomEvent(
                    RoomEventKind.UNPUBLISHED,
                    peer.room,
                    peer.participant,
                    audio=peer.audio,
                    video=peer.video,
                )
            )
        peer.up = False
        if report and not any(
            p.room == peer.room and p.participant == peer.participant for p in self._peers.values()
        ):
            self._emit(RoomEvent(RoomEventKind.GONE, peer.room, peer.participant))

    def _on_peer_event(self, peer: _Peer, message: Json) -> None:
        kind = message.get("janus")
        if kind == "webrtcup" and not peer.ended:
            peer.up = True
            if peer.kind == "publish":
                self._emit(
                    RoomEvent(
                        RoomEventKind.PUBLISHING,
                        peer.room,
                        peer.participant,
                        audio=peer.audio,
                        video=peer.video,
                    )
                )
        elif kind in {"hangup", "detached"} and not peer.ended:
            # The peer connection is over (kicked, ICE or DTLS failed, the browser left):
            # let the handle go too.
            self._retire(peer)
            if peer.handle is not None and self._ready:
                # Kept referenced until done (the loop holds tasks only weakly).
                task = asyncio.get_running_loop().create_task(peer.handle.detach())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _on_watch_event(self, room: _Room, message: Json) -> None:
        if message.get("janus") != "event":
            return
        data = (message.get("plugindata") or {}).get("data") or {}
        self._heard_publishers(room, data.get("publishers"))
        for key in ("unpublished", "leaving", "kicked"):
            gone = data.get(key)
            if isinstance(gone, int):
                room.published.pop(gone, None)
                self._end_subscriptions_to(room, gone)
        moderated = data.get("moderation")
        janus_id, mid = data.get("id"), data.get("mid")
        if moderated in {"muted", "unmuted"} and isinstance(janus_id, int):
            published = room.published.get(janus_id)
            if published is not None and mid is not None:
                if moderated == "muted":
                    published.muted.add(str(mid))
                else:
                    published.muted.discard(str(mid))

    def _end_subscriptions_to(self, room: _Room, feed_id: int) -> None:
        """A publisher left: end the subscriptions to it, as the builtin provider does
        (Janus keeps a subscriber's peer connection up with the stream made inactive; the
        watcher's tracks would never end). Not reported: the watchers are still there.
        Not in a room being destroyed: :meth:`destroy_room` ends (and reports) everyone."""
        if self._rooms.get(room.spec.room) is not room:
            return
        for peer in list(self._peers.values()):
            if peer.kind == "subscribe" and peer.room == room.spec.room and peer.feed_id == feed_id:
                task = asyncio.get_running_loop().create_task(self._end_peer(peer, report=False))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _heard_publishers(self, room: _Room, publishers: object) -> None:
        if not isinstance(publishers, list):
            return
        for entry in publishers:
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
                continue
            mids: dict[str, MediaKind] = {}
            muted: set[str] = set()
            for stream in entry.get("streams", []):
                if stream.get("disabled"):
                    continue
                kind = stream.get("type")
                if kind in {"audio", "video"}:
                    mids[str(stream.get("mid"))] = "audio" if kind == "audio" else "video"
                    if stream.get("moderated"):
                        muted.add(str(stream.get("mid")))
            room.published[entry["id"]] = _Published(str(entry.get("display", "")), mids, muted)

    def _drop_everything(self) -> None:
        """Janus is gone, and every peer connection with it: report each as ended."""
        for peer in list(self._peers.values()):
            peer.handle = None
            self._retire(peer)
        for room in self._rooms.values():
            room.watch = None
            room.tokens.clear()
            room.published.clear()


def _is_publish_of(peer: _Peer, room: str, participant: str) -> bool:
    return peer.kind == "publish" and peer.room == room and peer.participant == participant


def _check_sdp(sdp: object, what: str) -> None:
    """Raises:
    Invalid: ``sdp`` is not session description text (before Janus is bothered with it).
    """
    if not isinstance(sdp, str) or not sdp.lstrip().startswith("v=0"):
        raise Invalid(f"the {what} is not an SDP session description (it must start with v=0)")
    if "m=" not in sdp:
        raise Invalid(f"the {what} has no media section (m=)")
