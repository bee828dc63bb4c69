"""Online workshops (``session:<id>`` with ``online = "room"``): lobby, floor, hands,
breakouts, attendance. The rules are in :mod:`hybridcon.core.sessions`.

Each session touched on this node has a :class:`~hybridcon.core.sessions.Workshop` in
memory and, per person in it, the context of the connection that joined: per-person
pushes (``session.admitted``, ``session.floor``, ...) go to that connection, and when
it ends the person has left. Everyone subscribed to ``session:<id>`` gets
``session.state`` (the whole public state, coalesced: at most five a second); hosts on
``mod:session:<id>`` get ``session.lobby``. Chat, polls and Q&A on the session's topic
are the other capabilities'.

Media is carried by an optional room provider (:class:`~hybridcon.core.rooms.RoomProvider`)
handed over with :meth:`Sessions.attach_provider`; without one the sessions run without
media. The media routes ask :meth:`Sessions.media_access` before any negotiation, and the
provider's reports come back through :meth:`Sessions.on_room_event` (attendance).

One node: a session's state lives on the node its people are connected to (several
nodes need a session's people on one node; see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import structlog
from pydantic import Field, StringConstraints

from hybridcon.core.payloads import SessionJoin as SessionJoined
from hybridcon.core.payloads import SessionLeave as SessionLeft
from hybridcon.core.programme import Online
from hybridcon.core.ratelimit import KeyedLimiter
from hybridcon.core.rooms import (
    MediaAccess,
    RoomEvent,
    RoomEventKind,
    RoomProvider,
    RoomSpec,
)
from hybridcon.core.sessions import (
    Departure,
    Member,
    Phase,
    Place,
    SessionRole,
    Workshop,
    group_of,
    room_id,
    session_role,
)
from hybridcon.core.tokens import Claims
from hybridcon.errors import Conflict, Forbidden, Invalid, NotFound, RateLimited, Unavailable
from hybridcon.realtime.command import ID_PATTERN, Capability, Request, UserId, command
from hybridcon.realtime.context import Context, Node

log = structlog.get_logger(__name__)

STATE_INTERVAL = 0.2  # session.state at most five times a second per session
TICK_INTERVAL = 1.0  # breakout timers
HAND_RATE = 0.5  # hand changes per second per person, on average
HAND_BURST = 4.0

SessionId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


# --- requests ------------------------------------------------------------------------------


class SessionJoin(Request):
    """Come into a session (hosts and speakers at once; participants via the lobby)."""

    type: Literal["session.join"]
    session: SessionId
    take_over: bool = False


class SessionLeave(Request):
    """Leave a session (the lobby or the room)."""

    type: Literal["session.leave"]
    session: SessionId


class SessionOpen(Request):
    """Host: open the session; the lobby is let in in order while there is room."""

    type: Literal["session.open"]
    session: SessionId
    auto_admit: bool = False


class SessionAdmit(Request):
    """Host: let one waiting person in, or (without ``user_id``) the queue in order."""

    type: Literal["session.admit"]
    session: SessionId
    user_id: UserId | None = None


class SessionRemove(Request):
    """Host: remove a person; they cannot come back into this session."""

    type: Literal["session.remove"]
    session: SessionId
    user_id: UserId


class SessionMute(Request):
    """Host: mute one person's (or, without ``user_id``, everyone's but the hosts')
    microphone or camera; ``muted: false`` lets it through again."""

    type: Literal["session.mute"]
    session: SessionId
    user_id: UserId | None = None
    kind: Literal["audio", "video"] = "audio"
    muted: bool = True


class SessionFloor(Request):
    """Host: give (``grant``) or take a participant's floor (camera and microphone)."""

    type: Literal["session.floor"]
    session: SessionId
    user_id: UserId
    grant: bool


class SessionNextHand(Request):
    """Host: give the floor to the first raised hand."""

    type: Literal["session.next_hand"]
    session: SessionId


class SessionHand(Request):
    """Raise or lower one's hand."""

    type: Literal["session.hand"]
    session: SessionId
    raised: bool


class SessionSpotlight(Request):
    """Host: put a person on everyone's main tile (``user_id`` null: nobody)."""

    type: Literal["session.spotlight"]
    session: SessionId
    user_id: UserId | None = None


class SessionBreakouts(Request):
    """Host: split into ``count`` random groups or into ``groups`` by hand, with an
    optional timer in ``minutes``."""

    type: Literal["session.breakouts"]
    session: SessionId
    count: int | None = Field(default=None, ge=1, le=50)
    groups: list[Annotated[list[UserId], Field(max_length=100)]] | None = Field(
        default=None, max_length=50
    )
    minutes: float | None = Field(default=None, gt=0, le=120)


class SessionBreakoutsEnd(Request):
    """Host: bring everyone back from the breakout groups."""

    type: Literal["session.breakouts.end"]
    session: SessionId


class SessionEnd(Request):
    """Host: end the session for everyone."""

    type: Literal["session.end"]
    session: SessionId


# --- state ---------------------------------------------------------------------------------


@dataclass
class LiveSession:
    """One session on this node: its rules' state and who joined from which connection."""

    workshop: Workshop
    title: str
    holders: dict[str, Context] = field(default_factory=dict)  # person -> joined from
    told: dict[str, tuple[int, str]] = field(default_factory=dict)  # lobby positions sent
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def topic(self) -> str:
        """The session's topic."""
        return f"session:{self.workshop.session_id}"


class Sessions(Capability):
    """The online workshops this node runs, their requests, and the media gate."""

    pushes: ClassVar[Mapping[str, str]] = {
        "session.state": "session:<id>: the session's public state changed (at most 5/s)",
        "session.lobby": "mod:session:<id>: the lobby queue changed (at most 5/s)",
        "session.waiting": "one person in the lobby: their place in the queue changed",
        "session.admitted": "one person: they were let in (by opening, a host, or at once)",
        "session.floor": "one person: a host gave or took their floor",
        "session.muted": "one person: a host muted or unmuted their microphone or camera",
        "session.left": "one person: they were removed, or moved to another connection",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self._live: dict[str, LiveSession] = {}
        self._provider: RoomProvider | None = None
        self._media_up = True
        self._dirty: set[str] = set()
        self._hands = KeyedLimiter(rate=HAND_RATE, capacity=HAND_BURST)
        self._rng: random.Random = random.SystemRandom()

    # --- the seams app.py uses -----------------------------------------------------------

    def attach_provider(self, provider: RoomProvider) -> None:
        """Carry the sessions' media through ``provider`` and listen to its reports."""
        self._provider = provider
        self._media_up = provider.ready
        provider.listen(self.on_room_event)

    def media_access(self, session: str, claims: Claims) -> MediaAccess:
        """The person's media access in ``session`` now (the media routes ask first).

        Raises:
            NotFound: no such online room session in the programme.
            Forbidden: the token does not cover it; the person has not joined, waits in
                the lobby, was removed; the session has ended.
        """
        try:
            live = self._session(session)
        except Invalid as exc:
            raise NotFound(exc.message) from None  # a session, but no room to carry media
        session_role(claims, session)
        return live.workshop.access(claims.sub)

    def on_room_event(self, event: RoomEvent) -> None:
        """A provider's report: publishing time for attendance, media up or down."""
        if event.kind in (RoomEventKind.PROVIDER_DOWN, RoomEventKind.PROVIDER_UP):
            self._media_up = event.kind is RoomEventKind.PROVIDER_UP
            self._dirty.update(self._live)
            return
        session = event.room.split("~", 1)[0]
        live = self._live.get(session)
        if live is None or group_of(session, event.room) is None:
            return
        publishing = event.kind is RoomEventKind.PUBLISHING
        audio, video = (event.audio, event.video) if publishing else (False, False)
        if live.workshop.publishing(event.participant, audio, video, self._node.clock()):
            self._dirty.add(session)

    # --- life cycle, snapshot, connections -----------------------------------------------

    async def start(self) -> None:
        """Start the coalesced state pushes and the breakout timers."""
        self._node.every(STATE_INTERVAL, self.push_states, "session-state")
        self._node.every(TICK_INTERVAL, self._tick, "session-timers")

    def _session(self, session_id: str) -> LiveSession:
        """A programme session run as a room, made on first use.

        Raises:
            NotFound: no such session in the programme.
            Invalid: the session is not an online room.
        """
        live = self._live.get(session_id)
        if live is not None:
            return live
        entry = self._node.programme.session(session_id)
        if entry is None:
            raise NotFound(f"no session {session_id!r} in the programme")
        if entry.online is not Online.ROOM:
            raise Invalid(
                f"session {session_id!r} is not an online room (online = {entry.online.value!r})"
            )
        settings = self._node.settings
        capacity = settings.room_max_participants
        if entry.capacity is not None:
            capacity = min(capacity, entry.capacity)
        workshop = Workshop(
            session_id, capacity=capacity, max_publishers=settings.room_max_publishers
        )
        live = LiveSession(workshop=workshop, title=entry.title)
        self._live[session_id] = live
        return live

    def _state(self, live: LiveSession) -> dict[str, Any]:
        media = None if self._provider is None else ("up" if self._media_up else "down")
        return {**live.workshop.public(), "media": media}

    def _you(self, live: LiveSession, user_id: str) -> dict[str, Any]:
        w = live.workshop
        member = w.members.get(user_id)
        if member is not None:
            return {
                "state": Place.ADMITTED.value,
                "role": member.role.value,
                "room": room_id(w.session_id, member.group),
                "floor": member.holds_floor,
            }
        position = w.position(user_id)
        if position is not None:
            return {
                "state": Place.LOBBY.value,
                "position": position,
                "message": w.waiting_message(position),
            }
        return {"state": "removed" if user_id in w.removed else "out"}

    def snapshot(self, ctx: Context, topic: str, moderator: bool) -> dict[str, Any]:
        """A room session's state and the subscriber's place in it; the lobby for hosts."""
        if not topic.startswith("session:"):
            return {}
        try:
            live = self._session(topic.removeprefix("session:"))
        except (NotFound, Invalid):
            return {}  # a session of another kind: nothing of ours to show
        if moderator:
            return {"lobby": live.workshop.lobby_view()}
        return {"session": {**self._state(live), "you": self._you(live, ctx.claims.sub)}}

    def closed(self, ctx: Context) -> None:
        """A connection ended: the person it joined for has left those sessions."""
        uid = ctx.claims.sub
        now = self._node.clock()
        for live in self._live.values():
            holder = live.holders.get(uid)
            if holder is None or holder.conn is not ctx.conn:
                continue
            del live.holders[uid]
            member = live.workshop.members.get(uid)
            try:
                departure = live.workshop.leave(uid, now, "disconnected")
            except NotFound:
                continue
            if departure is not None and member is not None:
                self._log_leave(live, ctx.claims, departure)
                self._later(live, "remove", self._remover(live, member))
            self._welcome(live, live.workshop.refill(now))
            self._dirty.add(live.workshop.session_id)

    # --- effects -------------------------------------------------------------------------

    def push_states(self) -> None:
        """Push each changed session's state, its lobby to hosts, and lobby positions."""
        dirty, self._dirty = self._dirty, set()
        for session_id in dirty:
            live = self._live.get(session_id)
            if live is None:
                continue
            w = live.workshop
            node = self._node
            node.broadcast(live.topic, "session.state", self._state(live))
            node.broadcast(
                f"mod:{live.topic}",
                "session.lobby",
                {"session": session_id, "lobby": w.lobby_view()},
            )
            for uid in list(live.told):
                if uid not in w.lobby:
                    del live.told[uid]
            for position, uid in enumerate(w.lobby, start=1):
                message = w.waiting_message(position)
                holder = live.holders.get(uid)
                if holder is None or live.told.get(uid) == (position, message):
                    continue
                live.told[uid] = (position, message)
                holder.push(
                    live.topic,
                    "session.waiting",
                    {"session": session_id, "position": position, "message": message},
                )

    def _welcome(self, live: LiveSession, members: list[Member]) -> None:
        """People were let in: tell each, and log their join."""
        for member in members:
            holder = live.holders.get(member.user_id)
            if holder is None:
                continue
            live.told.pop(member.user_id, None)
            holder.push(
                live.topic,
                "session.admitted",
                {
                    "session": live.workshop.session_id,
                    "role": member.role.value,
                    "room": room_id(live.workshop.session_id, member.group),
                },
            )
            self._node.engage(
                SessionJoined(session_role=member.role.value, waited_seconds=member.waited_seconds),
                live.topic,
                holder.claims,
            )
        if members:
            self._dirty.add(live.workshop.session_id)

    def _log_leave(self, live: LiveSession, claims: Claims, departure: Departure) -> None:
        self._node.engage(
            SessionLeft(
                session_role=departure.role.value,
                reason=departure.reason,
                seconds=departure.seconds,
                floor_seconds=departure.floor_seconds,
                audio_seconds=departure.audio_seconds,
                video_seconds=departure.video_seconds,
            ),
            live.topic,
            claims,
        )

    def _spec(self, live: LiveSession, room: str) -> RoomSpec:
        w = live.workshop
        return RoomSpec(
            room=room,
            title=live.title,
            max_publishers=w.max_publishers,
            max_participants=w.capacity,
        )

    def _remover(
        self, live: LiveSession, member: Member
    ) -> Callable[[RoomProvider], Awaitable[None]]:
        room = room_id(live.workshop.session_id, member.group)
        return lambda provider: provider.remove(room, member.user_id)

    async def _media(self, done: str, action: Callable[[RoomProvider], Awaitable[None]]) -> None:
        """Carry out a host's media action; the provider's outage is the host's error.

        Raises:
            Unavailable: the media server did not take it (``done`` says what did happen).
        """
        provider = self._provider
        if provider is None:
            return
        try:
            await action(provider)
        except Unavailable as exc:
            raise Unavailable(
                f"{done}, but the media server did not take it: {exc.message}"
            ) from None

    def _later(
        self, live: LiveSession, what: str, action: Callable[[RoomProvider], Awaitable[None]]
    ) -> None:
        """A media action nobody waits for (a disconnect, a timer): failures are logged."""
        provider = self._provider
        if provider is None:
            return

        async def run() -> None:
            try:
                await action(provider)
            except Exception as exc:
                log.warning(
                    "session_media_action_failed",
                    session=live.workshop.session_id,
                    action=what,
                    error=str(exc),
                )

        self._node.background(run())

    async def _tick(self) -> None:
        now = self._node.clock()
        for live in list(self._live.values()):
            rooms = live.workshop.rooms()
            if live.workshop.tick(now):
                self._dirty.add(live.workshop.session_id)
                for room in rooms[1:]:
                    self._later(live, "destroy_room", _destroyer(room))

    # --- requests ------------------------------------------------------------------------

    def _host(self, ctx: Context, session_id: str) -> LiveSession:
        """The session, if the connection's person is one of its hosts.

        Raises:
            NotFound / Invalid: not an online room session.
            Forbidden: not a host of this session.
        """
        live = self._session(session_id)
        if session_role(ctx.claims, session_id) is not SessionRole.HOST:
            raise Forbidden(
                f"only the hosts of session:{session_id} (its moderators and organisers) "
                "may do this"
            )
        return live

    @command(SessionJoin)
    async def join(self, ctx: Context, request: SessionJoin) -> dict[str, Any]:
        """Come in: the result says ``lobby`` (with the place in the queue) or ``admitted``."""
        live = self._session(request.session)
        claims = ctx.claims
        role = session_role(claims, request.session)
        w = live.workshop
        uid = claims.sub
        holder = live.holders.get(uid)
        if holder is not None and (uid in w.members or uid in w.lobby):
            if holder.conn is ctx.conn:
                raise Conflict("you have joined this session already")
            if not request.take_over:
                raise Conflict(
                    "you are in this session on another connection (device) already; "
                    "leave there first, or join with take_over: true to move here"
                )
            holder.push(live.topic, "session.left", {"session": w.session_id, "reason": "moved"})
            live.holders[uid] = ctx
            live.told.pop(uid, None)
            self._dirty.add(w.session_id)
            return {**self._you(live, uid), "role": role.value}
        joined = w.join(uid, claims.shown_name, role, self._node.clock())
        live.holders[uid] = ctx
        self._dirty.add(w.session_id)
        result: dict[str, Any] = {"state": joined.place.value, "role": role.value}
        if joined.place is Place.ADMITTED:
            member = w.members[uid]
            self._node.engage(
                SessionJoined(session_role=role.value, waited_seconds=0), live.topic, claims
            )
            result["room"] = room_id(w.session_id, member.group)
            result["floor"] = member.holds_floor
            if w.phase is Phase.CLOSED:
                # Hosts and speakers get ready before the opening: the room is made now.
                self._later(live, "ensure_room", _ensurer(self._spec(live, w.session_id)))
        else:
            result["position"] = joined.position
            result["message"] = joined.message
            live.told[uid] = (joined.position or 0, joined.message or "")
        return result

    @command(SessionLeave)
    async def leave(self, ctx: Context, request: SessionLeave) -> dict[str, Any]:
        """Leave the lobby or the room."""
        live = self._session(request.session)
        uid = ctx.claims.sub
        now = self._node.clock()
        member = live.workshop.members.get(uid)
        departure = live.workshop.leave(uid, now, "left")
        live.holders.pop(uid, None)
        live.told.pop(uid, None)
        if departure is not None and member is not None:
            self._log_leave(live, ctx.claims, departure)
            self._later(live, "remove", self._remover(live, member))
        self._welcome(live, live.workshop.refill(now))
        self._dirty.add(live.workshop.session_id)
        return {"session": request.session, "state": "out"}

    @command(SessionOpen)
    async def open(self, ctx: Context, request: SessionOpen) -> dict[str, Any]:
        """Open the session: its room is made, the lobby let in in order while there is room."""
        live = self._host(ctx, request.session)
        w = live.workshop
        async with live.lock:
            w.check_can_open()
            await self._media("nothing changed", _ensurer(self._spec(live, w.session_id)))
            admitted = w.open(self._node.clock(), auto_admit=request.auto_admit)
            self._welcome(live, admitted)
            self._dirty.add(w.session_id)
        await ctx.audit("session.open", w.session_id, {"admitted": len(admitted)})
        return {
            "session": w.session_id,
            "state": w.phase.value,
            "admitted": [m.user_id for m in admitted],
            "waiting": len(w.lobby),
        }

    @command(SessionAdmit)
    async def admit(self, ctx: Context, request: SessionAdmit) -> dict[str, Any]:
        """Let one waiting person in, or the queue in order while there is room."""
        live = self._host(ctx, request.session)
        w = live.workshop
        now = self._node.clock()
        if request.user_id is not None:
            admitted = [w.admit(request.user_id, now)]
        else:
            admitted = w.admit_all(now)
        self._welcome(live, admitted)
        self._dirty.add(w.session_id)
        return {"admitted": [m.user_id for m in admitted], "waiting": len(w.lobby)}

    @command(SessionRemove)
    async def remove(self, ctx: Context, request: SessionRemove) -> dict[str, Any]:
        """Remove a person (lobby or room); they cannot come back into this session."""
        live = self._host(ctx, request.session)
        w = live.workshop
        uid = request.user_id
        now = self._node.clock()
        member = w.members.get(uid)
        departure = w.remove(uid, now)
        holder = live.holders.pop(uid, None)
        live.told.pop(uid, None)
        if holder is not None:
            holder.push(live.topic, "session.left", {"session": w.session_id, "reason": "removed"})
            if departure is not None:
                self._log_leave(live, holder.claims, departure)
        self._welcome(live, w.refill(now))
        self._dirty.add(w.session_id)
        await ctx.audit("session.remove", uid, {"session": w.session_id})
        if member is not None:
            await self._media(f"{uid} is removed from the session", self._remover(live, member))
        return {"user_id": uid, "removed": True}

    @command(SessionMute)
    async def mute(self, ctx: Context, request: SessionMute) -> dict[str, Any]:
        """Mute one person's, or everyone's but the hosts', microphone or camera."""
        live = self._host(ctx, request.session)
        w = live.workshop
        changed = w.mute(request.user_id, request.kind, request.muted, self._node.clock())
        for member in changed:
            holder = live.holders.get(member.user_id)
            if holder is not None:
                holder.push(
                    live.topic,
                    "session.muted",
                    {"session": w.session_id, "kind": request.kind, "muted": request.muted},
                )
        if changed:
            self._dirty.add(w.session_id)
        ids = [m.user_id for m in changed]

        async def carry(provider: RoomProvider) -> None:
            for member in changed:
                room = room_id(w.session_id, member.group)
                await provider.mute(room, member.user_id, request.kind, request.muted)

        what = "muted" if request.muted else "unmuted"
        await self._media(f"{len(ids)} people are {what} in the session", carry)
        return {"user_ids": ids, "kind": request.kind, "muted": request.muted}

    def _floor_changed(self, live: LiveSession, member: Member) -> None:
        holder = live.holders.get(member.user_id)
        if holder is not None:
            holder.push(
                live.topic,
                "session.floor",
                {"session": live.workshop.session_id, "granted": member.holds_floor},
            )
        self._dirty.add(live.workshop.session_id)

    @command(SessionFloor)
    async def floor(self, ctx: Context, request: SessionFloor) -> dict[str, Any]:
        """Give or take a participant's floor; taking it ends their publishing."""
        live = self._host(ctx, request.session)
        w = live.workshop
        member = w.floor(request.user_id, request.grant, self._node.clock())
        self._floor_changed(live, member)
        if not request.grant and member.group == 0:
            await self._media(
                f"the floor of {member.user_id} is taken",
                lambda p: p.unpublish(w.session_id, member.user_id),
            )
        return {"user_id": member.user_id, "floor": member.holds_floor}

    @command(SessionNextHand)
    async def next_hand(self, ctx: Context, request: SessionNextHand) -> dict[str, Any]:
        """Give the floor to the first raised hand (the hand is lowered)."""
        live = self._host(ctx, request.session)
        member = live.workshop.next_hand(self._node.clock())
        self._floor_changed(live, member)
        return {"user_id": member.user_id, "floor": True, "hands": list(live.workshop.hands)}

    @command(SessionHand)
    async def hand(self, ctx: Context, request: SessionHand) -> dict[str, Any]:
        """Raise or lower one's hand (a few changes a second at most)."""
        live = self._session(request.session)
        uid = ctx.claims.sub
        wait = self._hands.take(f"{request.session} {uid}", self._node.clock().timestamp())
        if wait > 0:
            raise RateLimited(
                f"you raised or lowered your hand too often; wait {wait:.1f} s",
                retry_after=wait,
            )
        w = live.workshop
        if w.hand(uid, request.raised):
            self._dirty.add(w.session_id)
        position = w.hands.index(uid) + 1 if uid in w.hands else None
        return {"raised": uid in w.hands, "position": position}

    @command(SessionSpotlight)
    async def spotlight(self, ctx: Context, request: SessionSpotlight) -> dict[str, Any]:
        """Put a person (or nobody) on everyone's main tile."""
        live = self._host(ctx, request.session)
        live.workshop.set_spotlight(request.user_id)
        self._dirty.add(live.workshop.session_id)
        return {"spotlight": request.user_id}

    @command(SessionBreakouts)
    async def breakouts(self, ctx: Context, request: SessionBreakouts) -> dict[str, Any]:
        """Split into breakout groups; their rooms are made before anyone moves."""
        live = self._host(ctx, request.session)
        w = live.workshop
        async with live.lock:
            now = self._node.clock()
            moved_from = {uid: m.group for uid, m in w.members.items()}
            rooms = w.start_breakouts(
                now, self._rng, count=request.count, groups=request.groups, minutes=request.minutes
            )
            try:
                for room in rooms:
                    await self._media("no groups were made", _ensurer(self._spec(live, room)))
            except Unavailable:
                w.end_breakouts(now)
                raise
            for uid, member in w.members.items():
                if member.group != moved_from.get(uid, 0):
                    # Out of the main room: its peer connections there end; the page
                    # asks for its group's room (session.state says which).
                    self._later(live, "remove", _leaver(w.session_id, uid))
            self._dirty.add(w.session_id)
        await ctx.audit("session.breakouts", w.session_id, {"groups": len(rooms)})
        public: dict[str, Any] = self._state(live)["breakouts"]
        return {**public, "rooms": rooms}

    @command(SessionBreakoutsEnd)
    async def breakouts_end(self, ctx: Context, request: SessionBreakoutsEnd) -> dict[str, Any]:
        """Bring everyone back to the main room; the groups' rooms end."""
        live = self._host(ctx, request.session)
        w = live.workshop
        rooms = w.rooms()[1:]
        count = w.end_breakouts(self._node.clock())
        self._dirty.add(w.session_id)

        async def destroy(provider: RoomProvider) -> None:
            for room in rooms:
                await provider.destroy_room(room)

        await self._media("everyone is back in the main room", destroy)
        return {"groups": count}

    @command(SessionEnd)
    async def end(self, ctx: Context, request: SessionEnd) -> dict[str, Any]:
        """End the session for everyone: every stay is logged, the rooms end."""
        live = self._host(ctx, request.session)
        w = live.workshop
        rooms = w.rooms()
        departures = w.end(self._node.clock())
        for departure in departures:
            holder = live.holders.get(departure.user_id)
            if holder is not None:
                self._log_leave(live, holder.claims, departure)
        live.holders.clear()
        live.told.clear()
        self._dirty.add(w.session_id)
        self.push_states()  # at once: everyone sees the end now
        await ctx.audit("session.end", w.session_id, {"people": len(departures)})

        async def destroy(provider: RoomProvider) -> None:
            for room in rooms:
                await provider.destroy_room(room)

        await self._media("the session has ended", destroy)
        return {"session": w.session_id, "state": w.phase.value, "people": len(departures)}


def _ensurer(spec: RoomSpec) -> Callable[[RoomProvider], Awaitable[None]]:
    return lambda provider: provider.ensure_room(spec)


def _destroyer(room: str) -> Callable[[RoomProvider], Awaitable[None]]:
    return lambda provider: provider.destroy_room(room)


def _leaver(room: str, user_id: str) -> Callable[[RoomProvider], Awaitable[None]]:
    return lambda provider: provider.remove(room, user_id)
