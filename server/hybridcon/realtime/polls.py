"""Polls on this node: create, open (now or on schedule), vote in batches, coalesced results.

Votes for one poll queue up and are handled in batches: each is checked and counted in
order against the in-memory :class:`~hybridcon.core.polls.Tally`, the batch's ballots are
written in one statement, and only then do the voters get their replies. If the write
fails, the batch is taken back out of the tally: memory and PostgreSQL always agree.
Results go out as ``poll.results`` at most four times a second per poll (never once per
vote): combined on the poll's topics (when the audience may see them) and split per
origin on ``mod:<topic>``.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from hybridcon.core.engagement import EventKind, actor_hash
from hybridcon.core.polls import (
    Answer,
    Ballot,
    Outcome,
    PollKind,
    PollState,
    Tally,
    make_spec,
    normalise_choice,
)
from hybridcon.errors import Forbidden, HybridconError, Invalid, NotFound, Unavailable
from hybridcon.realtime.access import check_topic, require_moderator
from hybridcon.realtime.protocol import (
    PollClose,
    PollCreate,
    PollOpen,
    PollResults,
    PollShow,
    PollVote,
    handles,
)
from hybridcon.store import audit
from hybridcon.store import polls as poll_store

if TYPE_CHECKING:
    from hybridcon.realtime.connection import Connection
    from hybridcon.realtime.gateway import Gateway

log = structlog.get_logger(__name__)

RESULTS_INTERVAL = 0.25  # at most 4 pushes per second per poll
SCHEDULE_INTERVAL = 1.0
MAX_BATCH = 2000


@dataclass
class _Vote:
    voter: str
    answer: Answer
    origin: str
    done: asyncio.Future[Outcome]


@dataclass
class LivePoll:
    """One poll's tally and its queue of votes."""

    poll_id: str
    tally: Tally
    created_by: str
    queue: list[_Vote] = field(default_factory=list)
    draining: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def describe(self, *, results: bool) -> dict[str, Any]:
        """The poll for clients; with its (combined) results when asked."""
        data: dict[str, Any] = {
            "poll_id": self.poll_id,
            "state": self.tally.state.value,
            **self.tally.spec.public(),
        }
        if results:
            data["results"] = self.tally.results()
        return data


def answer_id(gateway: Gateway, poll_id: str, voter: str) -> str:
    """A stable id for one person's open answer that does not reveal who they are."""
    return actor_hash(gateway.services.actor_key, f"answer:{poll_id}:{voter}")[:16]


def moderator_results(gateway: Gateway, live: LivePoll) -> dict[str, Any]:
    """Results split per origin, with every open answer (and whether it is shown)."""
    data = live.tally.results(split=True)
    if live.tally.spec.kind is PollKind.OPEN:
        data["answers"] = [
            {
                "answer_id": answer_id(gateway, live.poll_id, voter),
                "text": str(ballot.answer),
                "origin": ballot.origin,
                "shown": voter in live.tally.wall,
            }
            for voter, ballot in live.tally.ballots.items()
        ]
    return data


class PollBook:
    """The polls this node runs."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self.polls: dict[str, LivePoll] = {}
        self._dirty: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load drafts and open polls (with their votes), start results and scheduling."""
        pool = self._gateway.services.db()
        for stored in await poll_store.load(pool, states=(PollState.DRAFT, PollState.OPEN)):
            tally = Tally(spec=stored.spec, state=stored.state)
            tally.restore(
                await poll_store.ballots(pool, stored.poll_id, stored.spec.kind),
                await poll_store.shown(pool, stored.poll_id),
            )
            self.polls[stored.poll_id.hex] = LivePoll(
                poll_id=stored.poll_id.hex, tally=tally, created_by=stored.created_by
            )
        self._tasks = [
            asyncio.create_task(
                self._every(RESULTS_INTERVAL, self.push_results), name="poll-results"
            ),
            asyncio.create_task(
                self._every(SCHEDULE_INTERVAL, self._open_due), name="poll-schedule"
            ),
        ]

    async def stop(self) -> None:
        """Stop the periodic tasks."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    @staticmethod
    async def _every(seconds: float, action: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                result = action()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("poll_task_failed")

    async def get(self, poll_id: str) -> LivePoll:
        """A poll by id (one closed after the node started is loaded on demand).

        Raises:
            NotFound: no such poll.
        """
        live = self.polls.get(poll_id)
        if live is not None:
            return live
        stored = await poll_store.get(self._gateway.services.db(), uuid.UUID(poll_id))
        if stored is None:
            raise NotFound(f"no poll {poll_id}")
        tally = Tally(spec=stored.spec, state=stored.state)
        pool = self._gateway.services.db()
        tally.restore(
            await poll_store.ballots(pool, stored.poll_id, stored.spec.kind),
            await poll_store.shown(pool, stored.poll_id),
        )
        live = LivePoll(poll_id=poll_id, tally=tally, created_by=stored.created_by)
        self.polls[poll_id] = live
        return live

    def open_on(self, topic: str) -> list[LivePoll]:
        """The open polls shown on ``topic``."""
        return [
            p
            for p in self.polls.values()
            if p.tally.state is PollState.OPEN and topic in p.tally.spec.topics
        ]

    # --- state changes -------------------------------------------------------------------

    async def open(self, live: LivePoll, now: datetime) -> None:
        """Open a draft: votes are taken and everyone on its topics hears of it."""
        async with live.lock:
            if live.tally.state is not PollState.DRAFT:
                raise Invalid(f"the poll is {live.tally.state.value}, not a draft")
            await poll_store.set_state(
                self._gateway.services.db(), uuid.UUID(live.poll_id), PollState.OPEN, now
            )
            live.tally.state = PollState.OPEN
        hub = self._gateway.hub
        shown = live.tally.audience_sees_results()
        for topic in live.tally.spec.topics:
            hub.publish(topic, "poll.opened", live.describe(results=shown))
            hub.publish(f"mod:{topic}", "poll.opened", live.describe(results=True))
        self._gateway.engage_system(
            EventKind.POLL_OPENED,
            None,
            {"poll_id": live.poll_id, "topics": list(live.tally.spec.topics)},
        )

    async def close(self, live: LivePoll, now: datetime) -> None:
        """Close an open poll; the final results go out (to the audience if shown)."""
        async with live.lock:
            if live.tally.state is not PollState.OPEN:
                raise Invalid(f"the poll is {live.tally.state.value}, not open")
            await self._drain(live)  # votes already queued are still counted
            await poll_store.set_state(
                self._gateway.services.db(), uuid.UUID(live.poll_id), PollState.CLOSED, now
            )
            live.tally.state = PollState.CLOSED
        hub = self._gateway.hub
        final = live.tally.results()
        shown = live.tally.audience_sees_results()
        for topic in live.tally.spec.topics:
            fields: dict[str, Any] = {"poll_id": live.poll_id}
            if shown:
                fields["results"] = final
            hub.publish(topic, "poll.closed", fields)
            hub.publish(
                f"mod:{topic}",
                "poll.closed",
                {"poll_id": live.poll_id, "results": moderator_results(self._gateway, live)},
            )
        self._gateway.engage_system(
            EventKind.POLL_CLOSED, None, {"poll_id": live.poll_id, "voters": live.tally.voters}
        )

    async def _open_due(self) -> None:
        now = self._gateway.services.clock()
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
        services = self._gateway.services
        if changed:
            try:
                await poll_store.save_ballots(
                    services.db(), uuid.UUID(live.poll_id), changed, services.clock()
                )
            except Exception as exc:
                log.warning("votes_not_stored", poll_id=live.poll_id, error=str(exc))
                for voter, old in before.items():
                    tally.put(voter, old)
                for vote in batch:
                    if not vote.done.done():
                        vote.done.set_exception(
                            Unavailable("the vote could not be stored; please try again")
                        )
                return
            self._dirty.add(live.poll_id)
        for vote, outcome in zip(batch, outcomes, strict=True):
            if vote.done.done():
                continue
            if isinstance(outcome, HybridconError):
                vote.done.set_exception(outcome)
            else:
                vote.done.set_result(outcome)

    def push_results(self) -> None:
        """Push ``poll.results`` for every poll whose counts changed since the last push."""
        dirty, self._dirty = self._dirty, set()
        hub = self._gateway.hub
        for poll_id in dirty:
            live = self.polls.get(poll_id)
            if live is None:
                continue
            shown = live.tally.audience_sees_results()
            combined = {"poll_id": poll_id, **live.tally.results()}
            split = {"poll_id": poll_id, **moderator_results(self._gateway, live)}
            for topic in live.tally.spec.topics:
                if shown:
                    hub.broadcast(topic, "poll.results", combined)
                hub.broadcast(f"mod:{topic}", "poll.results", split)


def vote_origin(conn: Connection, topics: tuple[str, ...], asked: str | None) -> str:
    """Where a vote comes from: the hall the person is in, else the topic they vote from.

    Raises:
        Forbidden: the token covers none of the poll's topics (or not the one asked for).
    """
    claims = conn.claims
    for scope in claims.scopes:
        if scope.startswith("hall:") and f"stage:{scope[5:]}" in topics:
            return scope
    if asked is not None:
        if asked not in topics or not claims.may_subscribe(asked):
            raise Forbidden(f"you cannot vote from {asked} in this poll")
        return asked
    for topic in topics:
        if topic in conn.topics and claims.may_subscribe(topic):
            return topic
    for topic in topics:
        if claims.may_subscribe(topic):
            return topic
    raise Forbidden("this poll is not open to your token's stages or sessions")


@handles("poll.create")
async def create(gateway: Gateway, conn: Connection, request: PollCreate) -> dict[str, Any]:
    """Prepare a poll; with ``open`` it opens at once, with ``opens_at``/``at_session`` later."""
    for topic in request.topics:
        require_moderator(conn, topic)
        check_topic(gateway, conn, topic)
    services = gateway.services
    opens_at = request.opens_at
    if request.at_session is not None:
        session = services.programme.session(request.at_session)
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
    await poll_store.create(services.db(), poll_id, spec, by=conn.claims.sub)
    live = LivePoll(poll_id=poll_id.hex, tally=Tally(spec=spec), created_by=conn.claims.sub)
    gateway.polls.polls[live.poll_id] = live
    await audit.record_by(
        services.db(),
        conn.claims,
        "poll.create",
        target=live.poll_id,
        detail={"topics": list(spec.topics), "kind": spec.kind.value},
    )
    if request.open:
        await gateway.polls.open(live, services.clock())
    return live.describe(results=False)


async def _moderated_poll(gateway: Gateway, conn: Connection, poll_id: str) -> LivePoll:
    live = await gateway.polls.get(poll_id)
    for topic in live.tally.spec.topics:
        require_moderator(conn, topic)
    return live


@handles("poll.open")
async def open_poll(gateway: Gateway, conn: Connection, request: PollOpen) -> dict[str, Any]:
    """Open a draft now."""
    live = await _moderated_poll(gateway, conn, request.poll_id)
    await gateway.polls.open(live, gateway.services.clock())
    return live.describe(results=True)


@handles("poll.close")
async def close_poll(gateway: Gateway, conn: Connection, request: PollClose) -> dict[str, Any]:
    """Close an open poll; the result holds the final results, split per origin."""
    live = await _moderated_poll(gateway, conn, request.poll_id)
    await gateway.polls.close(live, gateway.services.clock())
    return {"poll_id": live.poll_id, "results": moderator_results(gateway, live)}


@handles("poll.results")
async def results(gateway: Gateway, conn: Connection, request: PollResults) -> dict[str, Any]:
    """The results now, combined and split per origin (moderators)."""
    live = await _moderated_poll(gateway, conn, request.poll_id)
    return {
        "poll_id": live.poll_id,
        "state": live.tally.state.value,
        "results": moderator_results(gateway, live),
    }


@handles("poll.show")
async def show(gateway: Gateway, conn: Connection, request: PollShow) -> dict[str, Any]:
    """Put an open answer on the wall: everyone on the poll's topics gets ``poll.wall``."""
    live = await _moderated_poll(gateway, conn, request.poll_id)
    voter = next(
        (v for v in live.tally.ballots if answer_id(gateway, live.poll_id, v) == request.answer_id),
        None,
    )
    if voter is None:
        raise NotFound(f"no answer {request.answer_id} in this poll")
    services = gateway.services
    if voter in live.tally.wall:  # already shown: nothing to push or audit again
        return {
            "poll_id": live.poll_id,
            "answer_id": request.answer_id,
            "wall": live.tally.wall_texts(),
        }
    async with live.lock:
        await poll_store.show(services.db(), uuid.UUID(live.poll_id), voter, services.clock())
        text = live.tally.show(voter)  # memory follows storage
    for topic in live.tally.spec.topics:
        gateway.hub.publish(topic, "poll.wall", {"poll_id": live.poll_id, "text": text})
    await audit.record_by(
        services.db(),
        conn.claims,
        "poll.show",
        target=live.poll_id,
        detail={"answer_id": request.answer_id},
    )
    return {
        "poll_id": live.poll_id,
        "answer_id": request.answer_id,
        "wall": live.tally.wall_texts(),
    }


@handles("poll.vote")
async def vote(gateway: Gateway, conn: Connection, request: PollVote) -> dict[str, Any]:
    """One vote per person per poll, counted once however often it is sent."""
    live = await gateway.polls.get(request.poll_id)
    spec = live.tally.spec
    origin = vote_origin(conn, spec.topics, request.topic)
    answer = normalise_choice(spec, request.choice)
    outcome = await gateway.polls.vote(live, conn.claims.sub, answer, origin)
    if outcome is not Outcome.UNCHANGED:
        gateway.engage(
            EventKind.POLL_VOTE,
            conn,
            origin if not origin.startswith("hall:") else f"stage:{origin[5:]}",
            {"poll_id": live.poll_id, "origin": origin, "changed": outcome is Outcome.CHANGED},
        )
    return {"poll_id": live.poll_id, "outcome": outcome.value}
