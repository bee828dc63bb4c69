"""What people see of a poll, and where a vote comes from: pure functions over a tally.

The audience sees a poll's description and, when its visibility allows, the combined
results; moderators see results split per origin (hall / online topic) with every
open answer under a pseudonymous id. A vote's origin is the hall the person is in,
else the topic they vote from.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from hybridcon.core.engagement import actor_hash
from hybridcon.core.polls import PollKind, Tally
from hybridcon.core.tokens import Claims
from hybridcon.errors import Forbidden


def describe(poll_id: str, tally: Tally, *, results: bool) -> dict[str, Any]:
    """The poll for clients; with its (combined) results when asked."""
    data: dict[str, Any] = {"poll_id": poll_id, "state": tally.state.value, **tally.spec.public()}
    if results:
        data["results"] = tally.results()
    return data


def answer_id(key: bytes, poll_id: str, voter: str) -> str:
    """A stable id for one person's open answer that does not reveal who they are."""
    return actor_hash(key, f"answer:{poll_id}:{voter}")[:16]


def moderator_results(key: bytes, poll_id: str, tally: Tally) -> dict[str, Any]:
    """Results split per origin, with every open answer (and whether it is shown)."""
    data = tally.results(split=True)
    if tally.spec.kind is PollKind.OPEN:
        data["answers"] = [
            {
                "answer_id": answer_id(key, poll_id, voter),
                "text": str(ballot.answer),
                "origin": ballot.origin,
                "shown": voter in tally.wall,
            }
            for voter, ballot in tally.ballots.items()
        ]
    return data


def vote_origin(
    claims: Claims, subscribed: Collection[str], topics: tuple[str, ...], asked: str | None
) -> str:
    """Where a vote (or a question) comes from.

    Args:
        claims: the voter's token.
        subscribed: the topics the voter's connection follows.
        topics: the poll's topics.
        asked: the topic the voter says they vote from, if any.

    Returns:
        ``hall:<id>`` for a person in a hall whose stage is among ``topics``, else the
        topic asked for, else the first of ``topics`` the voter follows, else the first
        their token covers.

    Raises:
        Forbidden: the token covers none of ``topics`` (or not the one asked for).
    """
    for scope in claims.scopes:
        if scope.startswith("hall:") and f"stage:{scope[5:]}" in topics:
            return scope
    if asked is not None:
        if asked not in topics or not claims.may_subscribe(asked):
            raise Forbidden(f"you cannot vote from {asked} in this poll")
        return asked
    for topic in topics:
        if topic in subscribed and claims.may_subscribe(topic):
            return topic
    for topic in topics:
        if claims.may_subscribe(topic):
            return topic
    raise Forbidden("this poll is not open to your token's stages or sessions")
