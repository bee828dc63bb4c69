"""The rules of an online workshop: lobby, roles, floor, raise-hand queue, breakouts, attendance.

A programme session with ``online = "room"`` is run by hybridcon whatever carries its
media (:mod:`hybridcon.core.rooms`). One :class:`Workshop` holds one session's state;
every method takes the time it happens at (``now``) and returns what changed, for the
sessions capability (:mod:`hybridcon.realtime.sessions`) to push, log and hand to the
room provider. Nothing here waits, reads a clock or talks to anyone.

The rules, in short (``docs/protocol.md``, "Sessions", says the same for clients):

- **Roles.** A ``host`` is a moderator or organiser token whose scopes cover
  ``session:<id>``; a ``speaker`` is a speaker token with that scope; anyone else with
  the scope is a ``participant`` (:func:`session_role`).
- **Phases.** ``closed`` (before a host opens it) -> ``open`` -> ``ended`` (a host ended
  it for everyone; nobody comes back in).
- **Lobby.** Hosts and speakers enter at once, also while the session is closed, and may
  go over capacity (they run it). Participants wait in a first-come, first-served queue.
  Opening the session admits the queue in order while there is room. After that a
  late-comer waits until a host admits them (one, or all in order), unless the host
  opened with ``auto_admit``: then a late-comer is let in at once when there is room and
  nobody waits ahead, and a freed place goes to the head of the queue. Capacity is the
  ``room_max_participants`` setting, or the programme's ``capacity`` if smaller; a host
  admitting past it gets ``conflict``.
- **Floor.** Hosts and speakers hold it by role; a host gives it to and takes it from
  participants. At most ``room_max_publishers`` people hold it at once (role holders
  count, and are never refused; so do holders who are in a breakout group for now).
  In a breakout group everybody may publish: groups are discussions, kept at most
  ``room_max_publishers`` people.
- **Hands.** Raised hands queue in the order raised; a host gives the floor to the next
  hand (which lowers it), or a person lowers their own.
- **Removal.** A removed person leaves (lobby or room) and cannot come back into that
  session. Hosts cannot be removed.
- **Attendance.** Per admitted stay: seconds present, seconds holding the floor, and
  seconds publishing audio and video (from the provider's events, minus host mutes).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from hybridcon.core.rooms import MediaAccess, MediaKind
from hybridcon.core.tokens import STAFF_ROLES, Claims
from hybridcon.core.tokens import Role as TokenRole
from hybridcon.errors import Closed, Conflict, Forbidden, Invalid, NotFound

MAX_BREAKOUT_MINUTES = 120
MAX_BREAKOUT_GROUPS = 50


class Phase(StrEnum):
    """Where a session is in its life."""

    CLOSED = "closed"  # hosts and speakers may be in; participants wait in the lobby
    OPEN = "open"
    ENDED = "ended"  # ended for everyone; nobody comes back in


class SessionRole(StrEnum):
    """What a person is in one session."""

    HOST = "host"
    SPEAKER = "speaker"
    PARTICIPANT = "participant"


class Place(StrEnum):
    """Where a joining person ends up."""

    LOBBY = "lobby"
    ADMITTED = "admitted"


def session_role(claims: Claims, session_id: str) -> SessionRole:
    """The person's role in a session, from the token.

    Raises:
        Forbidden: the token's scopes do not cover ``session:<id>``.
    """
    topic = f"session:{session_id}"
    if not claims.covers(topic):
        raise Forbidden(f"your token does not give access to {topic}")
    if claims.role in STAFF_ROLES:
        return SessionRole.HOST
    if claims.role is TokenRole.SPEAKER:
        return SessionRole.SPEAKER
    return SessionRole.PARTICIPANT


def room_id(session_id: str, group: int) -> str:
    """The provider's room of a session (group 0) or of breakout group ``n``
    (``<session>~<n>``, as :class:`hybridcon.core.rooms.RoomSpec` names them)."""
    return session_id if group == 0 else f"{session_id}~{group}"


# --- attendance ----------------------------------------------------------------------------


@dataclass
class _Meter:
    """Seconds something was true, summed over intervals."""

    seconds: float = 0.0
    since: datetime | None = None

    def set(self, running: bool, now: datetime) -> None:
        if running and self.since is None:
            self.since = now
        elif not running and self.since is not None:
            self.seconds += max(0.0, (now - self.since).total_seconds())
            self.since = None

    def total(self, now: datetime) -> float:
        extra = 0.0 if self.since is None else max(0.0, (now - self.since).total_seconds())
        return self.seconds + extra


@dataclass(frozen=True, slots=True)
class Departure:
    """One admitted stay that ended, as the attendance record (``session_leave``)."""

    user_id: str
    role: SessionRole
    reason: str  # left, disconnected, removed, ended, moved
    seconds: int
    floor_seconds: int
    audio_seconds: int
    video_seconds: int


# --- people --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Waiting:
    """A participant in the lobby."""

    user_id: str
    name: str
    since: datetime


@dataclass
class Member:
    """An admitted person."""

    user_id: str
    name: str
    role: SessionRole
    admitted_at: datetime
    waited_seconds: int = 0
    granted: bool = False  # a participant given the floor by a host
    audio_muted: bool = False  # by a host: the provider stops forwarding it
    video_muted: bool = False
    group: int = 0  # 0: the main room; n: breakout group n
    publishing_audio: bool = False  # as the provider last reported
    publishing_video: bool = False
    floor: _Meter = field(default_factory=_Meter)
    audio: _Meter = field(default_factory=_Meter)
    video: _Meter = field(default_factory=_Meter)

    @property
    def holds_floor(self) -> bool:
        """Whether the person may publish in the main room."""
        return self.role is not SessionRole.PARTICIPANT or self.granted

    @property
    def may_publish(self) -> bool:
        """Whether the person may publish where they are now (a group: everybody)."""
        return self.group != 0 or self.holds_floor

    def sync(self, now: datetime) -> None:
        """Run or stop the attendance meters after any change."""
        self.floor.set(self.may_publish, now)
        self.audio.set(self.publishing_audio and not self.audio_muted, now)
        self.video.set(self.publishing_video and not self.video_muted, now)

    def public(self) -> dict[str, Any]:
        """The person as everyone in the session sees them."""
        return {
            "id": self.user_id,
            "name": self.name,
            "role": self.role.value,
            "floor": self.holds_floor,
            "audio_muted": self.audio_muted,
            "video_muted": self.video_muted,
            "group": self.group,
            "audio": self.publishing_audio,
            "video": self.publishing_video,
        }

    def departure(self, reason: str, now: datetime) -> Departure:
        """Close the meters: the stay's attendance record."""
        return Departure(
            user_id=self.user_id,
            role=self.role,
            reason=reason,
            seconds=round(max(0.0, (now - self.admitted_at).total_seconds())),
            floor_seconds=round(self.floor.total(now)),
            audio_seconds=round(self.audio.total(now)),
            video_seconds=round(self.video.total(now)),
        )


@dataclass(frozen=True, slots=True)
class Joined:
    """The outcome of :meth:`Workshop.join`."""

    place: Place
    role: SessionRole
    position: int | None = None  # 1-based place in the lobby queue
    message: str | None = None  # why the person waits, for people


@dataclass
class Breakouts:
    """Breakout groups in progress."""

    count: int
    ends_at: datetime | None


# --- the session ---------------------------------------------------------------------------


class Workshop:
    """One online workshop's state and rules.

    Args:
        session_id: the programme session's id.
        capacity: people admitted at once (the smaller of the setting and the programme's).
        max_publishers: people holding the floor at once; also the
            largest breakout group.

    Raises:
        Invalid: a limit below 1.
    """

    def __init__(self, session_id: str, *, capacity: int, max_publishers: int) -> None:
        if capacity < 1 or max_publishers < 1:
            raise Invalid("capacity and max_publishers must be at least 1")
        self.session_id = session_id
        self.capacity = capacity
        self.max_publishers = max_publishers
        self.phase = Phase.CLOSED
        self.auto_admit = False
        self.lobby: dict[str, Waiting] = {}  # insertion order is the queue's order
        self.members: dict[str, Member] = {}
        self.removed: set[str] = set()
        self.hands: list[str] = []
        self.spotlight: str | None = None
        self.breakouts: Breakouts | None = None

    # --- views ---------------------------------------------------------------------------

    @property
    def full(self) -> bool:
        """Whether the session has no room for another participant."""
        return len(self.members) >= self.capacity

    def position(self, user_id: str) -> int | None:
        """The person's 1-based place in the lobby queue (None: not waiting)."""
        for i, uid in enumerate(self.lobby, start=1):
            if uid == user_id:
                return i
        return None

    def waiting_message(self, position: int) -> str:
        """What a waiting person is told."""
        if self.phase is Phase.CLOSED:
            return f"The session has not opened yet; you are number {position} in the queue."
        if self.full:
            return (
                f"The session is full ({len(self.members)} of {self.capacity} places); "
                f"you are number {position} in the queue and get in when a place frees up."
            )
        return f"A host will let you in soon; you are number {position} in the queue."

    def public(self) -> dict[str, Any]:
        """The session as everyone subscribed to it sees it (``session.state``)."""
        breakouts = None
        if self.breakouts is not None:
            ends = self.breakouts.ends_at
            breakouts = {
                "groups": self.breakouts.count,
                "ends_at": ends.isoformat() if ends is not None else None,
            }
        return {
            "session": self.session_id,
            "state": self.phase.value,
            "capacity": self.capacity,
            "max_publishers": self.max_publishers,
            "auto_admit": self.auto_admit,
            "people": [
                {**m.public(), "room": room_id(self.session_id, m.group)}
                for m in self.members.values()
            ],
            "hands": list(self.hands),
            "spotlight": self.spotlight,
            "breakouts": breakouts,
            "waiting": len(self.lobby),
        }

    def lobby_view(self) -> list[dict[str, Any]]:
        """The queue in order, for hosts."""
        return [
            {"id": w.user_id, "name": w.name, "since": w.since.isoformat()}
            for w in self.lobby.values()
        ]

    def member(self, user_id: str) -> Member:
        """An admitted person.

        Raises:
            NotFound: the person is not admitted.
        """
        found = self.members.get(user_id)
        if found is None:
            raise NotFound(f"{user_id!r} is not in the session")
        return found

    def access(self, user_id: str) -> MediaAccess:
        """What the person may do with media now (the media routes ask first).

        Raises:
            Forbidden: removed, ended, waiting in the lobby, or not joined.
        """
        if self.phase is Phase.ENDED:
            raise Forbidden("the session has ended")
        if user_id in self.removed:
            raise Forbidden("a host removed you from this session")
        if user_id in self.lobby:
            raise Forbidden("you are waiting in the lobby; a host lets you in")
        member = self.members.get(user_id)
        if member is None:
            raise Forbidden("join the session first (session.join)")
        return MediaAccess(
            room=room_id(self.session_id, member.group),
            participant=user_id,
            may_publish=member.may_publish,
            host=member.role is SessionRole.HOST,
        )

    # --- coming and going ----------------------------------------------------------------

    def join(self, user_id: str, name: str, role: SessionRole, now: datetime) -> Joined:
        """A person asks to come in.

        Raises:
            Closed: the session has ended.
            Forbidden: a host removed the person from it.
            Conflict: the person is already in (or waiting).
        """
        if self.phase is Phase.ENDED:
            raise Closed("the session has ended")
        if user_id in self.removed:
            raise Forbidden("a host removed you from this session; you cannot join it again")
        if user_id in self.members or user_id in self.lobby:
            raise Conflict("you are already in this session")
        if role is not SessionRole.PARTICIPANT:
            self._admit(user_id, name, role, now, waited=0)
            return Joined(Place.ADMITTED, role)
        if self.phase is Phase.OPEN and self.auto_admit and not self.lobby and not self.full:
            self._admit(user_id, name, role, now, waited=0)
            return Joined(Place.ADMITTED, role)
        self.lobby[user_id] = Waiting(user_id, name, now)
        position = len(self.lobby)
        return Joined(Place.LOBBY, role, position, self.waiting_message(position))

    def _admit(
        self, user_id: str, name: str, role: SessionRole, now: datetime, *, waited: int
    ) -> Member:
        member = Member(user_id, name, role, admitted_at=now, waited_seconds=waited)
        member.sync(now)
        self.members[user_id] = member
        return member

    def _admit_waiting(self, now: datetime, limit: int | None = None) -> list[Member]:
        admitted: list[Member] = []
        while self.lobby and not self.full and (limit is None or len(admitted) < limit):
            uid = next(iter(self.lobby))
            waiting = self.lobby.pop(uid)
            waited = round((now - waiting.since).total_seconds())
            admitted.append(
                self._admit(uid, waiting.name, SessionRole.PARTICIPANT, now, waited=waited)
            )
        return admitted

    def check_can_open(self) -> None:
        """Raise unless the session may open (before its room is made).

        Raises:
            Closed: the session has ended.
            Conflict: it is already open.
        """
        if self.phase is Phase.ENDED:
            raise Closed("the session has ended; it cannot open again")
        if self.phase is Phase.OPEN:
            raise Conflict("the session is already open")

    def open(self, now: datetime, *, auto_admit: bool = False) -> list[Member]:
        """Open the session; the queue is admitted in order while there is room.

        Returns:
            The people admitted now.

        Raises:
            Closed: the session has ended.
            Conflict: it is already open.
        """
        self.check_can_open()
        self.phase = Phase.OPEN
        self.auto_admit = auto_admit
        return self._admit_waiting(now)

    def admit(self, user_id: str, now: datetime) -> Member:
        """A host lets one waiting person in (out of turn, if the host so chooses).

        Raises:
            Closed: the session has ended.
            NotFound: the person is not waiting in the lobby.
            Conflict: the session is full.
        """
        if self.phase is Phase.ENDED:
            raise Closed("the session has ended")
        waiting = self.lobby.get(user_id)
        if waiting is None:
            raise NotFound(f"{user_id!r} is not waiting in the lobby")
        if self.full:
            raise Conflict(
                f"the session is full ({len(self.members)} of {self.capacity} places); "
                "someone must leave or be removed first"
            )
        del self.lobby[user_id]
        waited = round((now - waiting.since).total_seconds())
        return self._admit(user_id, waiting.name, SessionRole.PARTICIPANT, now, waited=waited)

    def admit_all(self, now: datetime) -> list[Member]:
        """A host lets the queue in, in order, while there is room.

        Raises:
            Closed: the session has ended.
        """
        if self.phase is Phase.ENDED:
            raise Closed("the session has ended")
        return self._admit_waiting(now)

    def leave(self, user_id: str, now: datetime, reason: str = "left") -> Departure | None:
        """The person leaves (the lobby or the room). Returns the stay's record when they
        were admitted, None when they only waited.

        Raises:
            NotFound: the person is neither waiting nor admitted.
        """
        if self.lobby.pop(user_id, None) is not None:
            return None
        member = self.members.pop(user_id, None)
        if member is None:
            raise NotFound("you are not in this session")
        if user_id in self.hands:
            self.hands.remove(user_id)
        if self.spotlight == user_id:
            self.spotlight = None
        return member.departure(reason, now)

    def refill(self, now: datetime) -> list[Member]:
        """With ``auto_admit``, freed places go to the head of the queue."""
        if self.phase is Phase.OPEN and self.auto_admit:
            return self._admit_waiting(now)
        return []

    def remove(self, user_id: str, now: datetime) -> Departure | None:
        """A host removes a person, who cannot come back into this session.

        Raises:
            Forbidden: the person is a host.
            NotFound: the person is neither waiting nor admitted.
        """
        member = self.members.get(user_id)
        if member is not None and member.role is SessionRole.HOST:
            raise Forbidden("hosts cannot be removed from a session")
        departure = self.leave(user_id, now, "removed")
        self.removed.add(user_id)
        return departure

    def end(self, now: datetime) -> list[Departure]:
        """End the session for everyone.

        Raises:
            Closed: it has ended already.
        """
        if self.phase is Phase.ENDED:
            raise Closed("the session has ended already")
        self.phase = Phase.ENDED
        self.lobby.clear()
        self.hands.clear()
        self.spotlight = None
        self.breakouts = None
        departures = [m.departure("ended", now) for m in self.members.values()]
        self.members.clear()
        return departures

    # --- media controls ------------------------------------------------------------------

    def mute(
        self, user_id: str | None, kind: MediaKind, muted: bool, now: datetime
    ) -> list[Member]:
        """A host mutes (or lets through again) one kind of media of one person, or of
        everyone but the hosts (``user_id`` None).

        Returns:
            The people whose state changed.

        Raises:
            NotFound: the person is not admitted.
            Forbidden: the person is a host.
        """
        if user_id is not None:
            target = self.member(user_id)
            if target.role is SessionRole.HOST:
                raise Forbidden("hosts cannot be muted by another host")
            targets = [target]
        else:
            targets = [m for m in self.members.values() if m.role is not SessionRole.HOST]
        changed: list[Member] = []
        for member in targets:
            attr = "audio_muted" if kind == "audio" else "video_muted"
            if getattr(member, attr) != muted:
                setattr(member, attr, muted)
                member.sync(now)
                changed.append(member)
        return changed

    def floor_holders(self) -> list[Member]:
        """Who holds the floor (in a breakout group too: they hold it when they are back)."""
        return [m for m in self.members.values() if m.holds_floor]

    def floor(self, user_id: str, grant: bool, now: datetime) -> Member:
        """A host gives (``grant``) or takes the floor of a participant.

        Raises:
            NotFound: the person is not admitted.
            Invalid: the person is a host or speaker (they hold it by role).
            Conflict: giving it would pass ``max_publishers`` holders.
        """
        member = self.member(user_id)
        if member.role is not SessionRole.PARTICIPANT:
            raise Invalid(f"a {member.role.value} holds the floor by role")
        if grant and not member.granted:
            holders = len(self.floor_holders())
            if holders >= self.max_publishers:
                raise Conflict(
                    f"the floor is full: at most {self.max_publishers} people publish at "
                    f"once and {holders} hold it; take it from someone first"
                )
            if user_id in self.hands:
                self.hands.remove(user_id)
        member.granted = grant
        member.sync(now)
        return member

    def hand(self, user_id: str, raised: bool) -> bool:
        """Raise or lower one's hand; returns whether anything changed.

        Raises:
            NotFound: the person is not admitted.
            Invalid: raising while holding the floor.
        """
        member = self.member(user_id)
        if raised:
            if user_id in self.hands:
                return False
            if member.holds_floor:
                raise Invalid("you hold the floor already")
            self.hands.append(user_id)
            return True
        if user_id not in self.hands:
            return False
        self.hands.remove(user_id)
        return True

    def next_hand(self, now: datetime) -> Member:
        """A host gives the floor to the first raised hand (which is lowered).

        Raises:
            NotFound: no hand is raised.
            Conflict: the floor is full.
        """
        if not self.hands:
            raise NotFound("no hand is raised")
        return self.floor(self.hands[0], True, now)

    def set_spotlight(self, user_id: str | None) -> None:
        """Put one admitted person on everyone's main tile (None: nobody).

        Raises:
            NotFound: the person is not admitted.
        """
        if user_id is not None:
            self.member(user_id)
        self.spotlight = user_id

    # --- breakouts -----------------------------------------------------------------------

    def start_breakouts(
        self,
        now: datetime,
        rng: random.Random,
        *,
        count: int | None = None,
        groups: Sequence[Sequence[str]] | None = None,
        minutes: float | None = None,
    ) -> list[str]:
        """Split into breakout groups: ``count`` random groups of everyone but the hosts
        (shuffled with ``rng``, sizes differing by at most one), or ``groups`` by hand
        (anyone not named, hosts included, stays in the main room). ``minutes``: a timer
        after which :meth:`tick` brings everyone back.

        Returns:
            The groups' room ids, ``<session>~1`` ... ``<session>~N``.

        Raises:
            Conflict: groups are running, or the session is not open.
            Invalid: neither or both of ``count`` and ``groups``, a group too big or
                empty, a person named twice or not admitted, a bad timer.
        """
        if self.phase is not Phase.OPEN:
            raise Conflict("open the session before splitting it into groups")
        if self.breakouts is not None:
            raise Conflict("breakout groups are running; bring everyone back first")
        if (count is None) == (groups is None):
            raise Invalid("give either count (random groups) or groups (by hand)")
        if minutes is not None and not 0 < minutes <= MAX_BREAKOUT_MINUTES:
            raise Invalid(f"minutes must be more than 0 and at most {MAX_BREAKOUT_MINUTES}")
        plan = self._random_plan(count, rng) if count is not None else self._hand_plan(groups)
        for n, people in enumerate(plan, start=1):
            for uid in people:
                self.members[uid].group = n
        for member in self.members.values():
            member.sync(now)
        self.hands.clear()
        self.spotlight = None
        ends_at = now + timedelta(minutes=minutes) if minutes is not None else None
        self.breakouts = Breakouts(count=len(plan), ends_at=ends_at)
        return [room_id(self.session_id, n) for n in range(1, len(plan) + 1)]

    def _random_plan(self, count: int | None, rng: random.Random) -> list[list[str]]:
        assert count is not None
        people = [m.user_id for m in self.members.values() if m.role is not SessionRole.HOST]
        if not 1 <= count <= MAX_BREAKOUT_GROUPS:
            raise Invalid(f"count must be between 1 and {MAX_BREAKOUT_GROUPS}")
        if count > len(people):
            raise Invalid(f"{count} groups for {len(people)} people: some would be empty")
        biggest = math.ceil(len(people) / count)
        if biggest > self.max_publishers:
            least = math.ceil(len(people) / self.max_publishers)
            raise Invalid(
                f"groups of {biggest} are too big (at most {self.max_publishers} people "
                f"publish in a room); split {len(people)} people into at least {least} groups"
            )
        rng.shuffle(people)
        return [people[i::count] for i in range(count)]

    def _hand_plan(self, groups: Sequence[Sequence[str]] | None) -> list[list[str]]:
        assert groups is not None
        if not 1 <= len(groups) <= MAX_BREAKOUT_GROUPS:
            raise Invalid(f"give between 1 and {MAX_BREAKOUT_GROUPS} groups")
        seen: set[str] = set()
        plan: list[list[str]] = []
        for n, people in enumerate(groups, start=1):
            if not people:
                raise Invalid(f"group {n} is empty")
            if len(people) > self.max_publishers:
                raise Invalid(f"group {n} has {len(people)} people; at most {self.max_publishers}")
            for uid in people:
                if uid not in self.members:
                    raise Invalid(f"group {n}: {uid!r} is not in the session")
                if uid in seen:
                    raise Invalid(f"{uid!r} is in two groups")
                seen.add(uid)
            plan.append(list(people))
        return plan

    def end_breakouts(self, now: datetime) -> int:
        """Bring everyone back to the main room; returns how many groups there were.

        Raises:
            Conflict: no groups are running.
        """
        if self.breakouts is None:
            raise Conflict("no breakout groups are running")
        count = self.breakouts.count
        self.breakouts = None
        for member in self.members.values():
            member.group = 0
            member.sync(now)
        return count

    def tick(self, now: datetime) -> bool:
        """Bring everyone back when the groups' timer has run out; returns whether it did."""
        if self.breakouts is None or self.breakouts.ends_at is None:
            return False
        if now < self.breakouts.ends_at:
            return False
        self.end_breakouts(now)
        return True

    def rooms(self) -> list[str]:
        """The rooms the session uses now (the main room, and the groups' while running)."""
        count = self.breakouts.count if self.breakouts is not None else 0
        return [room_id(self.session_id, n) for n in range(count + 1)]

    # --- the provider's reports ----------------------------------------------------------

    def publishing(self, user_id: str, audio: bool, video: bool, now: datetime) -> bool:
        """The provider says what the person publishes now; returns whether it changed
        anything (unknown people are ignored: they left meanwhile)."""
        member = self.members.get(user_id)
        if member is None:
            return False
        if (member.publishing_audio, member.publishing_video) == (audio, video):
            return False
        member.publishing_audio, member.publishing_video = audio, video
        member.sync(now)
        return True


def group_of(session_id: str, room: str) -> int | None:
    """The group number of a provider room of this session (0: main), None if not its."""
    if room == session_id:
        return 0
    prefix = f"{session_id}~"
    if room.startswith(prefix) and room[len(prefix) :].isdigit():
        return int(room[len(prefix) :])
    return None
