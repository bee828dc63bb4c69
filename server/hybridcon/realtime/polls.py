"""Polls on this node: create, open (now or on schedule), vote in batches, coalesced results.

Votes for one poll queue up and are handled in batches: each is checked and counted in
order against the in-memory :class:`~hybridcon.core.polls.Tally`, the batch's ballots are
written in one statement, and only then do the voters get their replies. If the write
fails, the batch is taken back out of the tally: memory and PostgreSQL always agree.
Results go out as ``poll.results`` at most four times a second per poll (never once per
vote), and less often where many watch (:func:`results_interval`): combined on the
poll's topics (when the audience may see them) and split per origin on ``mod:<topic>``.
What people see of a poll is in :mod:`hybridcon.core.poll_views`.

Several nodes take votes for one poll: PostgreSQL decides between them (a ballot
written where the poll is open; no second one where changes are not allowed), and
each node, after storing a batch, signals the others, which read those voters' ballots
again. Each node pushes the results to its own subscribers only, from a tally that
equals what PostgreSQL holds, so every node pushes the same results.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import structlog
from pydantic import AwareDatetime, Field, StrictInt, StrictStr, StringConstraints

from hybridcon.core import payloads
from hybridcon.core.poll_views import answer_id, describe, moderator_results, vote_origin
from hybridcon.core.polls import (
    Answer,
    Ballot,
    Outcome,
    PollState,
    Tally,
    make_spec,
    normalise_choice,
)
from hybridcon.errors import Closed, Conflict, HybridconError, Invalid, NotFound, Unavailable
from hybridcon.realtime.command import (
    ID_PATTERN,
    Capability,
    HexId,
    RawText,
    Request,
    Role,
    Topic,
    command,
)
from hybridcon.realtime.context import Context, Node
from hybridcon.store import polls as poll_store

log = structlog.get_logger(__name__)

RESULTS_INTERVAL = 0.25  # at most 4 pushes per second per poll
# A results push goes to every viewer of the poll's topics on this node, ~17 µs each
# (one send() per connection, docs/benchmarks.md): past this many viewers a poll's
# results go out less often, so that pushing them takes at most ~1/6 of a core even while
# everyone votes at once (at 10,000 viewers: once a second).
RESULTS_DELIVERIES_PER_ROUND = 2500
SCHEDULE_INTERVAL = 1.0
MAX_BATCH = 2000


# --- requests ------------------------------------------------------------------------------


class PollCreate(Request):
    """Moderator: prepare a poll (a draft) on one or several topics."""

    type: Literal["poll.create"]
    topics: list[Topic] = Field(min_length=1, max_length=20)
    question: RawText
    kind: str
    options: list[Annotated[str, StringConstraints(max_length=400)]] = Field(
        default_factory=list, max_length=20
    )
    scale_max: int = 5
    visibility: str = "live"
    allow_change: bool = False
    opens_at: AwareDatetime | None = None
    at_session: Annotated[str, StringConstraints(pattern=ID_PATTERN)] | None = None
    open: bool = False


class PollOpen(Request):
    """Moderator: open a poll now."""

    type: Literal["poll.open"]
    poll_id: HexId


class PollClose(Request):
    """Moderator: close a poll; everyone gets the final results (if shown)."""

    type: Literal["poll.close"]
    poll_id: HexId


class PollVote(Request):
    """Vote; one vote per person per poll, a retry is harmless."""

    type: Literal["poll.vote"]
    poll_id: HexId
    choice: (
        Annotated[StrictStr, StringConstraints(max_length=4000)]
        | StrictInt
        | Annotated[
            list[Annotated[StrictStr, StringConstraints(max_length=8)]], Field(max_length=20)
        ]
    )
    topic: Topic | None = None


class PollResults(Request):
    """Moderator: the current results, combined and per origin."""

    type: Literal["poll.results"]
    poll_id: HexId


class PollShow(Request):
    """Moderator: put an open poll's answer on the wall."""

    type: Literal["poll.show"]
    poll_id: HexId
    answer_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


# --- state ---------------------------------------------------------------------------------


@dataclass
class _Vote:
    voter: str
    answer: Answer
    origin: str
    done: asyncio.Future[Outcome]


def results_interval(viewers: int) -> float:
    """Seconds between two results pushes of a poll whose topics have ``viewers`` on this
    node: 0.25 up to ``RESULTS_DELIVERIES_PER_ROUND`` viewers, then in proportion."""
    return RESULTS_INTERVAL * max(1.0, viewers / RESULTS_DELIVERIES_PER_ROUND)


@dataclass
class LivePoll:
    """One poll's tally and its queue of votes."""

    poll_id: str
    tally: Tally
    created_by: str
    queue: list[_Vote] = field(default_factory=list)
    draining: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Voters whose last vote failed while being stored: PostgreSQL may have committed it
    # all the same (killed during the COMMIT). Their retry then finds it stored and is
    # ``unchanged``, but its engagement event was never logged: the retry logs it.
    in_doubt: set[str] = field(default_factory=set)
    pushed_at: float = float("-inf")  # loop time of the last results push

    def describe(self, *, results: bool) -> dict[str, Any]:
        """The poll for clients; with its (combined) results when asked."""
        return describe(self.poll_id, self.tally, results=results)


class Polls(Capability):
    """The polls this node runs, and the poll requests."""

    pushes: ClassVar[Mapping[str, str]] = {
        "poll.opened": "a poll opened (on mod:<topic> with its results)",
        "poll.results": "counts changed: at most 4 per second per poll, less often past "
        "2,500 viewers (split per origin on mod:<topic>)",
        "poll.closed": "a poll closed, with the final results when they are shown",
        "poll.wall": "a moderator put an open answer on the wall",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.polls: dict[str, LivePoll] = {}
        self._dirty: set[str] = set()

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load drafts and open polls (with their votes), start results and scheduling."""
        pool = self._node.db()
        for stored in await poll_store.load(pool, states=(PollState.DRAFT, PollState.OPEN)):
            tally = Tally(spec=stored.spec, state=stored.state)
            tally.restore(
                await poll_store.ballots(pool, stored.poll_id, stored.spec.kind),
                await poll_store.shown(pool, stored.poll_id),
            )
            self.polls[stored.poll_id.hex] = LivePoll(
                poll_id=stored.poll_id.hex, tally=tally, created_by=stored.created_by
            )
        self._node.every(RESULTS_INTERVAL, self.push_results, "poll-results")
        self._node.every(SCHEDULE_INTERVAL, self._open_due, "poll-schedule")
        self._node.on_signal("poll.ballots", self._ballots_signalled)
        self._node.on_signal("poll.state", self._state_signalled)
        self._node.on_resync(self.resync)

    # --- other nodes' changes ------------------------------------------------------------

    async def _read(self, poll_id: str) -> Tally:
        """The poll as stored: state, every ballot, the wall.

        Raises:
            NotFound: no such poll.
        """
        pool = self._node.db()
        stored = await poll_store.get(pool, uuid.UUID(poll_id))
        if stored is None:
            raise NotFound(f"no poll {poll_id}")
        tally = Tally(spec=stored.spec, state=stored.state)
        tally.restore(
            await poll_store.ballots(pool, stored.poll_id, stored.spec.kind),
            await poll_store.shown(pool, stored.poll_id),
        )
        return tally

    async def _reload(self, live: LivePoll) -> None:
        """Make ``live`` what PostgreSQL holds (under its lock); results are pushed again."""
        async with live.lock:
            live.tally = await self._read(live.poll_id)
        self._dirty.add(live.poll_id)

    def _ballots_signalled(self, data: dict[str, Any]) -> Coroutine[Any, Any, None]:
        return self._reread_ballots(str(data["poll_id"]), [str(v) for v in data["voters"]])

    async def _reread_ballots(self, poll_id: str, voters: list[str]) -> None:
        """Another node stored these voters' ballots: read them again."""
        live = self.polls.get(poll_id)
        if live is None:
            await self.get(poll_id)  # loaded whole, with those ballots
            return
        async with live.lock:
            tally = live.tally
            stored = await poll_store.ballots_of(
                self._node.db(), uuid.UUID(poll_id), tally.spec.kind, voters
            )
            for voter in voters:
                found = stored.get(voter)
                ballot = Ballot(answer=found[0], origin=found[1]) if found else None
                if tally.ballots.get(voter) != ballot:
                    tally.put(voter, ballot)
                shown = found is not None and found[2]
                if shown and voter not in tally.wall:
                    tally.wall.append(voter)
                elif not shown and voter in tally.wall:
                    tally.wall.remove(voter)
        self._dirty.add(poll_id)

    def _state_signalled(self, data: dict[str, Any]) -> Coroutine[Any, Any, None]:
        poll_id = str(data["poll_id"])
        live = self.polls.get(poll_id)
        if live is not None and data.get("state"):
            # At once: the push that follows this signal on the bus (poll.opened or
            # poll.closed) must find this node's snapshots already agreeing with it.
            live.tally.state = PollState(data["state"])
        return self._state_changed(poll_id)

    async def _state_changed(self, poll_id: str) -> None:
        live = self.polls.get(poll_id)
        if live is None:
            await self.get(poll_id)
        else:
            await self._reload(live)

    async def resync(self) -> None:
        """Read every poll this node holds again, and the drafts and open polls it does not
        know (signals may have been lost while the bus was away)."""
        for live in list(self.polls.values()):
            await self._reload(live)
        pool = self._node.db()
        for stored in await poll_store.load(pool, states=(PollState.DRAFT, PollState.OPEN)):
            if stored.poll_id.hex not in self.polls:
                await self.get(stored.poll_id.hex)

    def moderator_results(self, live: LivePoll) -> dict[str, Any]:
        """Results split per origin, with every open answer (and whether it is shown)."""
        return moderator_results(self._node.actor_key, live.poll_id, live.tally)

    async def get(self, poll_id: str) -> LivePoll:
        """A poll by id (one closed after the node started is loaded on demand).

        Raises:
            NotFound: no such poll.
        """
        live = self.polls.get(poll_id)
        if live is not None:
            return live
        pool = self._node.db()
        stored = await poll_store.get(pool, uuid.UUID(poll_id))
        if stored is None:
            raise NotFound(f"no poll {poll_id}")
        tally = await self._read(poll_id)
        live = self.polls.get(poll_id)  # loaded meanwhile by another request
        if live is None:
            live = LivePoll(poll_id=poll_id, tally=tally, created_by=stored.created_by)
            self.polls[poll_id] = live
            self._dirty.add(poll_id)
        return live

    def open_on(self, topic: str) -> list[LivePoll]:
        """The open polls shown on ``topic``."""
        return [
            p
            for p in self.polls.values()
            if p.tally.state is PollState.OPEN and topic in p.tally.spec.topics
        ]

    def snapshot(self, ctx: Context, topic: str, moderator: bool) -> dict[str, Any]:
        """The open polls: with split results for moderators, with ``voted`` for others."""
        if moderator:
            return {
                "polls": [
                    {**p.describe(results=False), "results": self.moderator_results(p)}
                    for p in self.open_on(topic)
                ]
            }
        sub = ctx.claims.sub
        return {
            "polls": [
                {
                    **p.describe(results=p.tally.audience_sees_results()),
                    "voted": sub in p.tally.ballots,
                }
                for p in self.open_on(topic)
            ]
        }

    # --- state changes -------------------------------------------------------------------

    async def open(self, live: LivePoll, now: datetime) -> None:
        """Open a draft: votes are taken and everyone on its topics hears of it."""
        node = self._node
        async with live.lock:
            if live.tally.state is not PollState.DRAFT:
                live.tally = await self._read(live.poll_id)  # as stored, not as heard
            if live.tally.state is not PollState.DRAFT:
                raise Invalid(f"the poll is {live.tally.state.value}, not a draft")
            if not await poll_store.set_state(
                node.db(), uuid.UUID(live.poll_id), PollState.OPEN, now
            ):
                live.tally = await self._read(live.poll_id)  # another node opened it
                raise Invalid(f"the poll is {live.tally.state.value}, not a draft")
            live.tally.state = PollState.OPEN
        node.signal("poll.state", {"poll_id": live.poll_id, "state": PollState.OPEN.value})
        audience = live.describe(results=live.tally.audience_sees_results())
        moderators = live.describe(results=True)
        for topic in live.tally.spec.topics:
            node.publish(topic, "poll.opened", audience)
            node.publish(f"mod:{topic}", "poll.opened", moderators)
        node.engage(payloads.PollOpened(poll_id=live.poll_id, topics=live.tally.spec.topics), None)

    async def close(self, live: LivePoll, now: datetime) -> None:
        """Close an open poll; the final results go out (to the audience if shown)."""
        node = self._node
        async with live.lock:
            if live.tally.state is PollState.DRAFT:
                live.tally = await self._read(live.poll_id)  # opened through another node?
            if live.tally.state is not PollState.OPEN:
                raise Invalid(f"the poll is {live.tally.state.value}, not open")
            await self._drain(live)  # votes already queued are still counted
            closed = await poll_store.set_state(
                node.db(), uuid.UUID(live.poll_id), PollState.CLOSED, now
            )
            # The final results are what PostgreSQL holds: the votes other nodes stored
            # before the close, whose signals may not have arrived yet, count too.
            live.tally = await self._read(live.poll_id)
            if not closed:  # another node closed it
                raise Invalid(f"the poll is {live.tally.state.value}, not open")
        node.signal("poll.state", {"poll_id": live.poll_id, "state": PollState.CLOSED.value})
        # Computed once for every topic of the poll (the split hashes every open answer).
        audience: dict[str, Any] = {"poll_id": live.poll_id}
        if live.tally.audience_sees_results():
            audience["results"] = live.tally.results()
        moderators = {"poll_id": live.poll_id, "results": self.moderator_results(live)}
        for topic in live.tally.spec.topics:
            node.publish(topic, "poll.closed", audience)
            node.publish(f"mod:{topic}", "poll.closed", moderators)
        node.engage(payloads.PollClosed(poll_id=live.poll_id, voters=live.tally.voters), None)

    async def _open_due(self) -> None:
        now = self._node.clock()
        for live in list(self.polls.values()):
            opens_at = live.tally.spec.opens_at
            if live.tally.state is PollState.DRAFT and opens_at is not None and opens_at <= now:
                try:
                    await self.open(live, now)
                except HybridconError as exc:
                    log.warning(
                        "scheduled_poll_not_opened", poll_id=live.poll_id, error=exc.message
                    )

    # --- votes ---------------------------------------------------------------------------

    async def vote(self, live: LivePoll, voter: str, answer: Answer, origin: str) -> Outcome:
        """Queue a vote and wait until it is counted and stored.

        Raises:
            Closed: the poll is not open.
            Conflict: a changed answer where the poll allows none.
            Unavailable: the database did not take the batch.
        """
        if live.tally.state is PollState.DRAFT:
            # Opened through another node a moment ago (its signal not here yet)?
            async with live.lock:
                live.tally = await self._read(live.poll_id)
        live.tally.check(voter, answer)  # fail fast; checked again in the batch
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        live.queue.append(_Vote(voter, answer, origin, done))
        if live.draining is None or live.draining.done():
            live.draining = asyncio.create_task(self._drain_soon(live))
        return await done

    async def _drain_soon(self, live: LivePoll) -> None:
        async with live.lock:
            await self._drain(live)

    async def _drain(self, live: LivePoll) -> None:
        while live.queue:
            batch, live.queue = live.queue[:MAX_BATCH], live.queue[MAX_BATCH:]
            await self._count_batch(live, batch)

    async def _count_batch(self, live: LivePoll, batch: list[_Vote]) -> None:
        tally = live.tally
        before: dict[str, Ballot | None] = {}
        outcomes: list[Outcome | HybridconError] = []
        for vote in batch:
            if vote.voter not in before:
                before[vote.voter] = tally.ballots.get(vote.voter)
            try:
                outcomes.append(tally.apply(vote.voter, vote.answer, vote.origin))
            except HybridconError as exc:
                outcomes.append(exc)
        changed = [
            (voter, tally.ballots[voter].answer, tally.ballots[voter].origin)
            for voter, old in before.items()
            if tally.ballots.get(voter) != old
        ]
        node = self._node
        if changed:
            try:
                written = await poll_store.save_ballots(
                    node.db(),
                    uuid.UUID(live.poll_id),
                    changed,
                    node.clock(),
                    allow_change=tally.spec.allow_change,
                )
            except Exception as exc:
                log.warning("votes_not_stored", poll_id=live.poll_id, error=str(exc))
                self._take_back(
                    live,
                    before,
                    batch,
                    Unavailable("the vote could not be stored; please try again"),
                )
                return
            if written is None:  # closed (on another node) before this batch
                self._take_back(live, before, batch, Closed("this poll is closed"))
                live.tally = await self._read(live.poll_id)
                return
            if len(written) < len(changed):
                outcomes = await self._decided_elsewhere(live, batch, outcomes, set(written))
            if written:
                node.signal("poll.ballots", {"poll_id": live.poll_id, "voters": written})
                self._dirty.add(live.poll_id)
        for vote, outcome in zip(batch, outcomes, strict=True):
            if vote.done.done():
                continue
            if isinstance(outcome, HybridconError):
                vote.done.set_exception(outcome)
            else:
                vote.done.set_result(outcome)

    @staticmethod
    def _take_back(
        live: LivePoll, before: dict[str, Ballot | None], batch: list[_Vote], error: HybridconError
    ) -> None:
        for voter, old in before.items():
            live.tally.put(voter, old)
        for vote in batch:
            if not vote.done.done():
                vote.done.set_exception(error)
                if isinstance(error, Unavailable):
                    live.in_doubt.add(vote.voter)

    async def _decided_elsewhere(
        self,
        live: LivePoll,
        batch: list[_Vote],
        outcomes: list[Outcome | HybridconError],
        written: set[str],
    ) -> list[Outcome | HybridconError]:
        """Voters whose ballot was not written had one stored through another node (the
        poll allows no change): they keep it, and each of their votes in the batch is
        ``unchanged`` when it says the same and refused when it does not."""
        tally = live.tally
        others = {vote.voter for vote in batch} - written
        stored = await poll_store.ballots_of(
            self._node.db(), uuid.UUID(live.poll_id), tally.spec.kind, list(others)
        )
        for voter in others:
            found = stored.get(voter)
            tally.put(voter, Ballot(answer=found[0], origin=found[1]) if found else None)
        decided: list[Outcome | HybridconError] = []
        for vote, outcome in zip(batch, outcomes, strict=True):
            found = stored.get(vote.voter)
            if vote.voter not in others or found is None:
                decided.append(outcome)
            elif found[0] == vote.answer:
                decided.append(Outcome.UNCHANGED)
            else:
                decided.append(
                    Conflict("you already voted in this poll; it does not allow changes")
                )
        return decided

    def push_results(self) -> None:
        """Push ``poll.results`` for every poll whose counts changed since the last push."""
        dirty, self._dirty = self._dirty, set()
        node = self._node
        now = asyncio.get_running_loop().time()
        for poll_id in dirty:
            live = self.polls.get(poll_id)
            if live is None:
                continue
            viewers = sum(node.viewers(topic) for topic in live.tally.spec.topics)
            # A little early is on time: the rounds themselves are 0.25 s apart.
            if now - live.pushed_at < results_interval(viewers) - RESULTS_INTERVAL / 2:
                self._dirty.add(poll_id)  # a later round pushes it
                continue
            live.pushed_at = now
            shown = live.tally.audience_sees_results()
            combined = {"poll_id": poll_id, **live.tally.results()}
            split = {"poll_id": poll_id, **self.moderator_results(live)}
            for topic in live.tally.spec.topics:
                # Every node pushes to its own subscribers, from the same tally.
                if shown:
                    node.broadcast_here(topic, "poll.results", combined)
                node.broadcast_here(f"mod:{topic}", "poll.results", split)

    # --- requests ------------------------------------------------------------------------

    @command(PollCreate, role=Role.MODERATOR, scope="topics", listed=True)
    async def create(self, ctx: Context, request: PollCreate) -> dict[str, Any]:
        """Prepare a poll; with ``open`` it opens at once, with ``opens_at``/``at_session``
        later."""
        node = self._node
        opens_at = request.opens_at
        if request.at_session is not None:
            session = node.programme.session(request.at_session)
            if session is None:
                raise NotFound(f"no session {request.at_session!r} in the programme")
            opens_at = session.starts_at
        spec = make_spec(
            question=request.question,
            kind=request.kind,
            topics=request.topics,
            options=request.options,
            scale_max=request.scale_max,
            visibility=request.visibility,
            allow_change=request.allow_change,
            opens_at=opens_at,
        )
        poll_id = uuid.uuid4()
        await poll_store.create(node.db(), poll_id, spec, by=ctx.claims.sub)
        live = LivePoll(poll_id=poll_id.hex, tally=Tally(spec=spec), created_by=ctx.claims.sub)
        self.polls[live.poll_id] = live
        node.signal("poll.state", {"poll_id": live.poll_id})  # a draft the others can open
        await ctx.audit(
            "poll.create", live.poll_id, {"topics": list(spec.topics), "kind": spec.kind.value}
        )
        if request.open:
            await self.open(live, node.clock())
        return live.describe(results=False)

    async def _moderated_poll(self, ctx: Context, poll_id: str) -> LivePoll:
        live = await self.get(poll_id)
        for topic in live.tally.spec.topics:
            ctx.require_moderator(topic)
        return live

    @command(PollOpen, role=Role.MODERATOR)
    async def open_poll(self, ctx: Context, request: PollOpen) -> dict[str, Any]:
        """Open a draft now."""
        live = await self._moderated_poll(ctx, request.poll_id)
        await self.open(live, self._node.clock())
        return live.describe(results=True)

    @command(PollClose, role=Role.MODERATOR)
    async def close_poll(self, ctx: Context, request: PollClose) -> dict[str, Any]:
        """Close an open poll; the result holds the final results, split per origin."""
        live = await self._moderated_poll(ctx, request.poll_id)
        await self.close(live, self._node.clock())
        return {"poll_id": live.poll_id, "results": self.moderator_results(live)}

    @command(PollResults, role=Role.MODERATOR)
    async def results(self, ctx: Context, request: PollResults) -> dict[str, Any]:
        """The results now, combined and split per origin (moderators)."""
        live = await self._moderated_poll(ctx, request.poll_id)
        return {
            "poll_id": live.poll_id,
            "state": live.tally.state.value,
            "results": self.moderator_results(live),
        }

    @command(PollShow, role=Role.MODERATOR)
    async def show(self, ctx: Context, request: PollShow) -> dict[str, Any]:
        """Put an open answer on the wall: everyone on the poll's topics gets ``poll.wall``."""
        live = await self._moderated_poll(ctx, request.poll_id)
        node = self._node
        voter = next(
            (
                v
                for v in live.tally.ballots
                if answer_id(node.actor_key, live.poll_id, v) == request.answer_id
            ),
            None,
        )
        if voter is None:
            raise NotFound(f"no answer {request.answer_id} in this poll")
        if voter in live.tally.wall:  # already shown: nothing to push or audit again
            return {
                "poll_id": live.poll_id,
                "answer_id": request.answer_id,
                "wall": live.tally.wall_texts(),
            }
        async with live.lock:
            await poll_store.show(node.db(), uuid.UUID(live.poll_id), voter, node.clock())
            text = live.tally.show(voter)  # memory follows storage
        node.signal("poll.state", {"poll_id": live.poll_id})
        for topic in live.tally.spec.topics:
            node.publish(topic, "poll.wall", {"poll_id": live.poll_id, "text": text})
        await ctx.audit("poll.show", live.poll_id, {"answer_id": request.answer_id})
        return {
            "poll_id": live.poll_id,
            "answer_id": request.answer_id,
            "wall": live.tally.wall_texts(),
        }

    @command(PollVote)
    async def vote_request(self, ctx: Context, request: PollVote) -> dict[str, Any]:
        """One vote per person per poll, counted once however often it is sent."""
        live = await self.get(request.poll_id)
        spec = live.tally.spec
        origin = vote_origin(ctx.claims, ctx.topics, spec.topics, request.topic)
        answer = normalise_choice(spec, request.choice)
        outcome = await self.vote(live, ctx.claims.sub, answer, origin)
        doubtful = ctx.claims.sub in live.in_doubt
        live.in_doubt.discard(ctx.claims.sub)
        if outcome is not Outcome.UNCHANGED or doubtful:
            topic = origin if not origin.startswith("hall:") else f"stage:{origin[5:]}"
            changed = outcome is Outcome.CHANGED
            ctx.engage(
                payloads.PollVote(poll_id=live.poll_id, origin=origin, changed=changed), topic
            )
        return {"poll_id": live.poll_id, "outcome": outcome.value}
