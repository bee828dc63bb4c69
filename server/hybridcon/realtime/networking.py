"""Networking: tables of up to six and roulette pairing. The rules are in
:mod:`hybridcon.core.networking`.

Networking belongs to no topic: what changes concerns the few people at a table or in a
pairing, so each gets a push on the connection they joined from (the latest one, if a
person joins again elsewhere). A report goes to the moderators on ``mod:event``
(``network.reported``) and into the audit log, as chat reports go to ``mod:<topic>``.
The lounge lives on this node, like the sessions (docs/architecture.md).

Media: a table and a pairing are rooms of the node's room provider (handed over with
:meth:`Networking.attach_provider`), reached through the same media routes as the
workshops' (``/api/v1/network/{room}/…``, :mod:`hybridcon.api.rooms`). Those routes ask
:meth:`Networking.media_access` before any negotiation: everyone seated at the table (or
either of the pair) may publish their own camera and watch the others; anyone else is
refused. Whoever stands up (leaves, sits elsewhere, closes the connection, is reported)
has their peer connections in the table's room ended; an emptied table's room and an
ended pairing's room are closed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal

import structlog
from pydantic import StringConstraints

from hybridcon.core.networking import Change, Lounge, table_room
from hybridcon.core.rooms import MediaAccess, RoomProvider
from hybridcon.core.tokens import Claims
from hybridcon.errors import Invalid
from hybridcon.realtime.command import Capability, Request, UserId, command
from hybridcon.realtime.context import Context, Node

log = structlog.get_logger(__name__)

TICK_INTERVAL = 1.0
PAIR_SECONDS = 180.0
REPORTS_TOPIC = "mod:event"

TableId = Annotated[str, StringConstraints(pattern=r"^t[0-9]{1,6}$")]


class NetworkJoin(Request):
    """Sit at a table (a named one, or wherever there is a seat)."""

    type: Literal["network.join"]
    table: TableId | None = None


class NetworkLeave(Request):
    """Leave one's table or the roulette."""

    type: Literal["network.leave"]


class NetworkRoulette(Request):
    """Be paired with someone for a few minutes, again and again until one leaves."""

    type: Literal["network.roulette"]


class NetworkTables(Request):
    """The tables and how many people sit at each."""

    type: Literal["network.tables"]


class NetworkReport(Request):
    """Report someone at one's table or in one's pairing to the moderators."""

    type: Literal["network.report"]
    user_id: UserId
    reason: Annotated[str, StringConstraints(max_length=300)] = ""


class Networking(Capability):
    """The lounge on this node and the networking requests."""

    pushes: ClassVar[Mapping[str, str]] = {
        "network.table": "one person: who sits at their table changed",
        "network.paired": "one person: the roulette paired them with someone",
        "network.unpaired": "one person: their pairing ended (time, left, reported)",
        "network.removed": "one person: they were stood up from their table (reported)",
        "network.reported": "mod:event: someone reported a person at a table or in a pairing",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.lounge = Lounge(pair_seconds=PAIR_SECONDS)
        self._people: dict[str, Context] = {}  # person -> the connection they joined from
        self._provider: RoomProvider | None = None

    def attach_provider(self, provider: RoomProvider) -> None:
        """Carry the tables' and pairings' media through ``provider``."""
        self._provider = provider

    def media_access(self, room: str, claims: Claims) -> MediaAccess:
        """The person's media access in a table's or a pairing's room (the media routes
        ask first): seated there (or one of the pair) may publish and watch.

        Raises:
            NotFound: not a networking room, or no such table or pairing now.
            Forbidden: the person is not at that table or in that pairing.
        """
        self.lounge.media_room(claims.sub, room)
        return MediaAccess(room=room, participant=claims.sub, may_publish=True, host=False)

    async def start(self) -> None:
        """End pairings whose time is up, every second."""
        self._node.every(TICK_INTERVAL, self._tick, "network-roulette")

    def _tick(self) -> None:
        self._tell(self.lounge.tick(self._node.clock()))

    def _tell(self, change: Change) -> None:
        """Push what a change means to each person it concerns; end the media it ends."""
        lounge = self.lounge
        self._carry(change)
        for table, uid in change.sent_away:
            self._push(
                uid,
                "network.removed",
                {"table": table, "room": table_room(table), "reason": "reported"},
            )
        for table in change.tables:
            view = lounge.table_view(table)
            for uid in lounge.tables.get(table, ()):
                self._push(uid, "network.table", view)
        for pair, reason in change.ended:
            for uid in (pair.a, pair.b):
                self._push(uid, "network.unpaired", {"room": pair.room, "reason": reason})
        for pair in change.paired:
            for uid in (pair.a, pair.b):
                partner = pair.partner(uid)
                self._push(
                    uid,
                    "network.paired",
                    {
                        "room": pair.room,
                        "partner": {"id": partner, "name": lounge.names.get(partner, "")},
                        "ends_at": pair.ends_at.isoformat(),
                    },
                )

    def _carry(self, change: Change) -> None:
        """End the media of whoever stood up, and the rooms of emptied tables and ended
        pairings (in the background: nobody waits for it; the gate already refuses)."""
        actions: list[tuple[str, Callable[[RoomProvider], Awaitable[None]]]] = []
        for table, uid in change.stood:
            room = table_room(table)
            if table in self.lounge.tables:
                actions.append((room, _remover(room, uid)))
            else:
                actions.append((room, _destroyer(room)))
        for pair, _reason in change.ended:
            actions.append((pair.room, _destroyer(pair.room)))
        provider = self._provider
        if provider is None or not actions:
            return

        async def run() -> None:
            for room, action in actions:
                try:
                    await action(provider)
                except Exception as exc:
                    log.warning("network_media_action_failed", room=room, error=str(exc))

        self._node.background(run())

    def _push(self, user_id: str, kind: str, fields: Mapping[str, Any]) -> None:
        ctx = self._people.get(user_id)
        if ctx is not None:
            ctx.push(None, kind, fields)

    def _where(self, user_id: str) -> dict[str, Any]:
        lounge = self.lounge
        table = lounge.seat.get(user_id)
        if table is not None:
            return {"state": "table", **lounge.table_view(table)}
        pair = lounge.pairs.get(user_id)
        if pair is not None:
            partner = pair.partner(user_id)
            return {
                "state": "paired",
                "room": pair.room,
                "partner": {"id": partner, "name": lounge.names.get(partner, "")},
                "ends_at": pair.ends_at.isoformat(),
            }
        if user_id in lounge.pool:
            return {"state": "waiting"}
        return {"state": "out"}

    def closed(self, ctx: Context) -> None:
        """A connection ended: its person leaves their table or the roulette."""
        uid = ctx.claims.sub
        held = self._people.get(uid)
        if held is None or held.conn is not ctx.conn:
            return
        del self._people[uid]
        self._tell(self.lounge.leave(uid, self._node.clock()))

    @command(NetworkJoin)
    async def join(self, ctx: Context, request: NetworkJoin) -> dict[str, Any]:
        """Sit at a table; the result is the table, its people then get ``network.table``."""
        uid = ctx.claims.sub
        name = ctx.claims.shown_name
        change = self.lounge.join_table(uid, name, request.table, self._node.clock())
        self._people[uid] = ctx
        self._tell(change)
        return self._where(uid)

    @command(NetworkRoulette)
    async def roulette(self, ctx: Context, request: NetworkRoulette) -> dict[str, Any]:
        """Wait for a partner; paired at once when someone waits (``network.paired``)."""
        uid = ctx.claims.sub
        name = ctx.claims.shown_name
        self._people[uid] = ctx
        self._tell(self.lounge.roulette(uid, name, self._node.clock()))
        return self._where(uid)

    @command(NetworkLeave)
    async def leave(self, ctx: Context, request: NetworkLeave) -> dict[str, Any]:
        """Leave the table or the roulette (a partner goes back to waiting)."""
        uid = ctx.claims.sub
        if self.lounge.where(uid) is None:
            raise Invalid("you are not at a table or in the roulette")
        self._tell(self.lounge.leave(uid, self._node.clock()))
        self._people.pop(uid, None)
        return {"state": "out"}

    @command(NetworkTables)
    async def tables(self, ctx: Context, request: NetworkTables) -> dict[str, Any]:
        """The tables, their number of people and seats."""
        return {"tables": self.lounge.listing()}

    @command(NetworkReport)
    async def report(self, ctx: Context, request: NetworkReport) -> dict[str, Any]:
        """Report someone at one's table or in one's pairing: moderators hear of it."""
        claims = ctx.claims
        lounge = self.lounge
        reported_name = lounge.names.get(request.user_id, "")
        where, change = lounge.report(claims.sub, request.user_id, self._node.clock())
        self._tell(change)
        self._node.publish(
            REPORTS_TOPIC,
            "network.reported",
            {
                "where": where,
                "reported": {"id": request.user_id, "name": reported_name},
                "reporter": {"id": claims.sub, "name": claims.name},
                "reason": request.reason,
            },
        )
        await ctx.audit(
            "network.report", request.user_id, {"where": where, "reason": request.reason}
        )
        return {"reported": True, "where": where}


def _remover(room: str, user_id: str) -> Callable[[RoomProvider], Awaitable[None]]:
    return lambda provider: provider.remove(room, user_id)


def _destroyer(room: str) -> Callable[[RoomProvider], Awaitable[None]]:
    return lambda provider: provider.destroy_room(room)
