"""Networking rules: tables of up to six, and roulette pairing of two for a few minutes.

Pure: one :class:`Lounge` holds who sits where and who is paired with whom; every method
takes ``now`` and returns what changed, for the networking capability
(:mod:`hybridcon.realtime.networking`) to push. A person is at one table, or in the
roulette, or neither; joining one leaves the other.

- **Tables** (``t1``, ``t2``, ...) seat at most :data:`TABLE_SIZE`. Joining a named table
  that is full is refused with a message; joining without a name seats the person at
  the fullest table with a free seat (so people meet), or at a new one. Empty tables go.
- **Roulette** pairs two people for ``pair_seconds``. Whoever has waited longest is
  paired first (among equals, whoever sat out more often), with the first other waiting
  person who was not their last partner (nor reported by or reporting them: they wait
  for someone new). With an odd number one waits; as the one who waited goes first next
  time, nobody waits twice in a row while others are paired.
  A pairing ends when its time is up, when one leaves, or when one reports the other;
  both go back to the waiting pool (except whoever left).
- **Reports at a table**: the reported person is stood up from it, and two people of a
  report do not sit at one table again (a named table where the other sits is refused;
  joining without a name seats them elsewhere).
- **Media**: a table (``net~t1``) and a pairing (``net~p1``) are rooms of the room
  provider. :meth:`Lounge.media_room` says whether a person may use one: everyone seated
  at the table, or either of the pair, publishes their own camera and watches the
  others'; anyone else is refused. A :class:`Change` names who stood up from which
  table, so that their media there ends (and an emptied table's room closes).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hybridcon.errors import Conflict, Forbidden, Invalid, NotFound

TABLE_SIZE = 6
PAIR_SIZE = 2
ROOM_PREFIX = "net~"
_TABLE_ROOM = re.compile(rf"^{re.escape(ROOM_PREFIX)}(t[0-9]{{1,6}})$")
_PAIR_ROOM = re.compile(rf"^{re.escape(ROOM_PREFIX)}p([0-9]{{1,9}})$")


def table_room(table: str) -> str:
    """A table's media room."""
    return f"{ROOM_PREFIX}{table}"


def room_size(room: str) -> int:
    """How many people a networking room holds (and may publish in it): a table's six,
    a pairing's two; 0 for a name that is neither."""
    if _TABLE_ROOM.match(room):
        return TABLE_SIZE
    if _PAIR_ROOM.match(room):
        return PAIR_SIZE
    return 0


@dataclass(frozen=True, slots=True)
class Pair:
    """Two people talking until ``ends_at``."""

    pair_id: int
    a: str
    b: str
    ends_at: datetime

    @property
    def room(self) -> str:
        """The pair's media room."""
        return f"{ROOM_PREFIX}p{self.pair_id}"

    def partner(self, user_id: str) -> str:
        """The other one."""
        return self.b if user_id == self.a else self.a


@dataclass
class Change:
    """What a step changed: tables whose people changed, who stood up from which table
    (their media there ends), people sent away from a table, pairings that began or
    ended (an ended pairing's room closes)."""

    tables: set[str] = field(default_factory=set)
    stood: list[tuple[str, str]] = field(default_factory=list)  # (table, person)
    sent_away: list[tuple[str, str]] = field(default_factory=list)  # (table, person)
    paired: list[Pair] = field(default_factory=list)
    ended: list[tuple[Pair, str]] = field(default_factory=list)  # (pair, reason)


class Lounge:
    """The networking space of the event.

    Args:
        pair_seconds: how long a roulette pairing lasts.

    Raises:
        Invalid: a non-positive duration.
    """

    def __init__(self, pair_seconds: float = 180.0) -> None:
        if pair_seconds <= 0:
            raise Invalid("pair_seconds must be positive")
        self.pair_seconds = pair_seconds
        self.names: dict[str, str] = {}
        self.tables: dict[str, list[str]] = {}  # table -> people in order of arrival
        self.seat: dict[str, str] = {}  # person -> table
        self.pool: dict[str, datetime] = {}  # waiting for a partner, since
        self.pairs: dict[str, Pair] = {}  # person -> their pairing
        self.last_partner: dict[str, str] = {}
        self.avoid: set[frozenset[str]] = set()  # never paired again (a report)
        self.sat_out: Counter[str] = Counter()  # times left waiting while others paired
        self._next_table = 1
        self._next_pair = 1

    # --- views ---------------------------------------------------------------------------

    def table_view(self, table: str) -> dict[str, object]:
        """A table and who sits at it."""
        people = self.tables.get(table, [])
        return {
            "table": table,
            "room": table_room(table),
            "people": [{"id": uid, "name": self.names.get(uid, "")} for uid in people],
            "seats": TABLE_SIZE,
        }

    def listing(self) -> list[dict[str, object]]:
        """Every table with its number of people."""
        return [
            {"table": t, "people": len(people), "seats": TABLE_SIZE}
            for t, people in self.tables.items()
        ]

    def where(self, user_id: str) -> str | None:
        """``table:<id>``, ``pair:<room>``, ``roulette`` (waiting) or None."""
        if user_id in self.seat:
            return f"table:{self.seat[user_id]}"
        if user_id in self.pairs:
            return f"pair:{self.pairs[user_id].room}"
        if user_id in self.pool:
            return "roulette"
        return None

    def media_room(self, user_id: str, room: str) -> None:
        """Whether ``user_id`` may use the media of ``room`` now: seated at its table, or
        one of its pair (else this raises).

        Raises:
            NotFound: not a networking room, or no such table or pairing now.
            Forbidden: the table or pairing exists but the person is not in it.
        """
        table = _TABLE_ROOM.match(room)
        if table is not None:
            name = table.group(1)
            if name not in self.tables:
                raise NotFound(f"no table {name} now (it emptied, or never was)")
            if self.seat.get(user_id) != name:
                raise Forbidden(f"you are not seated at table {name}; sit down there first")
            return
        pair = _PAIR_ROOM.match(room)
        if pair is not None:
            mine = self.pairs.get(user_id)
            if mine is not None and mine.room == room:
                return
            if any(p.room == room for p in self.pairs.values()):
                raise Forbidden(f"you are not in pairing {room}")
            raise NotFound(f"no pairing {room} now (it ended, or never was)")
        raise NotFound(
            f"{room!r} is not a networking room (a table's is {ROOM_PREFIX}t<n>, "
            f"a pairing's {ROOM_PREFIX}p<n>)"
        )

    # --- tables --------------------------------------------------------------------------

    def _avoided_at(self, user_id: str, table: str) -> bool:
        return any(frozenset((user_id, other)) in self.avoid for other in self.tables[table])

    def join_table(self, user_id: str, name: str, table: str | None, now: datetime) -> Change:
        """Sit at ``table`` (or at the fullest one with a free seat, or a new one).

        Raises:
            NotFound: no such table.
            Conflict: the table is full.
        """
        if table is not None and table not in self.tables:
            known = ", ".join(self.tables) or "none yet"
            raise NotFound(f"no table {table!r} (tables: {known}); join without one to sit down")
        if table is not None and self.seat.get(user_id) == table:
            return Change()
        if table is not None and len(self.tables[table]) >= TABLE_SIZE:
            raise Conflict(
                f"table {table} is full ({TABLE_SIZE} people); pick another table or join "
                "without one to be seated"
            )
        if table is not None and self._avoided_at(user_id, table):
            raise Conflict(
                f"you cannot sit at table {table}: someone there reported you or was "
                "reported by you; pick another table or join without one to be seated"
            )
        change = self.leave(user_id, now)
        self.names[user_id] = name
        if table is None:
            open_tables = [
                t
                for t, p in self.tables.items()
                if len(p) < TABLE_SIZE and not self._avoided_at(user_id, t)
            ]
            if open_tables:
                table = max(open_tables, key=lambda t: len(self.tables[t]))
            else:
                table = f"t{self._next_table}"
                self._next_table += 1
                self.tables[table] = []
        self.tables[table].append(user_id)
        self.seat[user_id] = table
        change.tables.add(table)
        return change

    def _stand_up(self, user_id: str, change: Change) -> None:
        table = self.seat.pop(user_id, None)
        if table is None:
            return
        people = self.tables[table]
        people.remove(user_id)
        if not people:
            del self.tables[table]
        change.tables.add(table)
        change.stood.append((table, user_id))

    # --- roulette ------------------------------------------------------------------------

    def roulette(self, user_id: str, name: str, now: datetime) -> Change:
        """Wait for a partner (leaving any table); pairs at once if someone waits.

        Raises:
            Conflict: the person is paired or waiting already.
        """
        if user_id in self.pairs or user_id in self.pool:
            raise Conflict("you are in the roulette already; leave it first to start over")
        change = self.leave(user_id, now)
        self.names[user_id] = name
        self.pool[user_id] = now
        self._match(now, change)
        return change

    def _allowed(self, a: str, b: str) -> bool:
        # Never the partner one just had (wait for someone new), nor a reported pair.
        return self.last_partner.get(a) != b and frozenset((a, b)) not in self.avoid

    def _match(self, now: datetime, change: Change) -> None:
        # Longest waiting first; among equals, whoever sat out more often.
        order = sorted(self.pool, key=lambda u: (self.pool[u], -self.sat_out[u], u))
        paired_any = False
        while len(order) >= 2:
            first = order.pop(0)
            partner = next((u for u in order if self._allowed(first, u)), None)
            if partner is None:
                continue  # nobody new they may meet now: they keep their place
            order.remove(partner)
            del self.pool[first], self.pool[partner]
            pair = Pair(self._next_pair, first, partner, now + timedelta(seconds=self.pair_seconds))
            self._next_pair += 1
            self.pairs[first] = self.pairs[partner] = pair
            self.last_partner[first], self.last_partner[partner] = partner, first
            change.paired.append(pair)
            paired_any = True
        if paired_any:
            for uid in self.pool:
                self.sat_out[uid] += 1

    def _unpair(self, pair: Pair, reason: str, now: datetime, change: Change) -> None:
        for uid in (pair.a, pair.b):
            if self.pairs.get(uid) == pair:
                del self.pairs[uid]
                self.pool[uid] = now
        change.ended.append((pair, reason))

    def tick(self, now: datetime) -> Change:
        """End the pairings whose time is up; pair whoever waits."""
        change = Change()
        for pair in {p.pair_id: p for p in self.pairs.values()}.values():
            if pair.ends_at <= now:
                self._unpair(pair, "time", now, change)
        self._match(now, change)
        return change

    # --- leaving and reporting -----------------------------------------------------------

    def leave(self, user_id: str, now: datetime) -> Change:
        """Leave the table or the roulette (a partner goes back to waiting)."""
        change = Change()
        self._stand_up(user_id, change)
        pair = self.pairs.get(user_id)
        if pair is not None:
            self._unpair(pair, "left", now, change)
        self.pool.pop(user_id, None)
        if pair is not None:
            self._match(now, change)
        return change

    def report(self, reporter: str, reported: str, now: datetime) -> tuple[str, Change]:
        """Report someone at the reporter's table or in their pairing. At a table the
        reported person is stood up (their media there ends) and the two do not sit
        together again; a pairing ends; the two are never paired again.

        Returns:
            Where it happened (``table:<id>`` or ``pair:<room>``) and what changed.

        Raises:
            Invalid: reporting oneself.
            NotFound: the person is not at the reporter's table or in their pairing.
        """
        if reporter == reported:
            raise Invalid("you cannot report yourself")
        table = self.seat.get(reporter)
        if table is not None and self.seat.get(reported) == table:
            self.avoid.add(frozenset((reporter, reported)))
            change = Change()
            self._stand_up(reported, change)
            change.sent_away.append((table, reported))
            return f"table:{table}", change
        pair = self.pairs.get(reporter)
        if pair is not None and pair.partner(reporter) == reported:
            self.avoid.add(frozenset((reporter, reported)))
            change = Change()
            self._unpair(pair, "reported", now, change)
            # The reporter waits for someone else; the reported person is taken out of
            # the roulette for now (a moderator decides what happens next).
            self.pool.pop(reported, None)
            self._match(now, change)
            return f"pair:{pair.room}", change
        raise NotFound("that person is not at your table or in your pairing")

    def people(self, change: Change) -> Iterable[str]:
        """Everyone a change concerns (to tell them)."""
        seen: set[str] = set()
        for table in change.tables:
            seen.update(self.tables.get(table, ()))
        for pair in change.paired:
            seen.update((pair.a, pair.b))
        for pair, _ in change.ended:
            seen.update((pair.a, pair.b))
        return sorted(seen)
