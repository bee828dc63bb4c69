"""Q&A requests: ask, upvote, moderate, merge, settings. The rules are in :mod:`hybridcon.core.qa`.

Questions of a topic are loaded once per node and kept in memory; every change is
stored before it is pushed. Pending questions go to ``mod:<topic>`` only; approved ones
to everyone on the topic as ``qa.question``, changes as ``qa.updated``.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hybridcon.core import qa as rules
from hybridcon.core.engagement import EventKind
from hybridcon.core.qa import QaSettings, Question, QuestionState
from hybridcon.errors import Invalid, NotFound
from hybridcon.realtime.access import check_topic, require_moderator
from hybridcon.realtime.polls import vote_origin
from hybridcon.realtime.protocol import (
    QaAsk,
    QaMerge,
    QaModerate,
    QaSettingsRequest,
    QaUpvote,
    handles,
)
from hybridcon.store import audit
from hybridcon.store import qa as qa_store

if TYPE_CHECKING:
    from hybridcon.realtime.connection import Connection
    from hybridcon.realtime.gateway import Gateway


@dataclass
class TopicQa:
    """One topic's questions on this node."""

    settings: QaSettings
    questions: dict[str, Question] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def listing(self, *, moderator: bool) -> list[dict[str, Any]]:
        """Open questions in order (with pending ones for moderators)."""
        return [
            q.public()
            for q in rules.ordered(list(self.questions.values()), include_pending=moderator)
        ]


class QaBook:
    """The Q&A topics this node has touched."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._topics: dict[str, TopicQa] = {}
        self._index: dict[str, str] = {}  # question_id -> topic
        self._load_lock = asyncio.Lock()

    async def topic(self, topic: str) -> TopicQa:
        """A topic's questions, loaded from the database once."""
        found = self._topics.get(topic)
        if found is not None:
            return found
        async with self._load_lock:
            found = self._topics.get(topic)
            if found is None:
                pool = self._gateway.services.db()
                settings = await qa_store.load_settings(pool, topic)
                found = TopicQa(settings=settings)
                for question in await qa_store.load_topic(pool, topic):
                    found.questions[question.question_id] = question
                    self._index[question.question_id] = topic
                self._topics[topic] = found
            return found

    async def question(self, question_id: str) -> tuple[TopicQa, Question]:
        """A question by id.

        Raises:
            NotFound: no such question (on a topic this node has loaded, or in storage).
        """
        topic = self._index.get(question_id)
        if topic is None:
            row = await self._gateway.services.db().fetchval(
                "SELECT topic FROM questions WHERE question_id = $1", uuid.UUID(question_id)
            )
            if row is None:
                raise NotFound(f"no question {question_id}")
            topic = str(row)
        qa = await self.topic(topic)
        return qa, qa.questions[question_id]

    def remember(self, question: Question) -> None:
        """Index a new question."""
        self._index[question.question_id] = question.topic

    def publish(self, question: Question, kind: str) -> None:
        """Push a question (``qa.question``) or its change (``qa.updated``) where it is seen."""
        hub = self._gateway.hub
        fields = question.public() if kind == "qa.question" else question.update()
        hub.publish(f"mod:{question.topic}", kind, fields)
        if question.state is not QuestionState.PENDING:
            hub.publish(question.topic, kind, fields)


@handles("qa.ask")
async def ask(gateway: Gateway, conn: Connection, request: QaAsk) -> dict[str, Any]:
    """Ask a question; the origin (stage, session, hall) is kept on it."""
    check_topic(gateway, conn, request.topic)
    if request.topic == "event":
        raise Invalid("ask in a stage or a session; 'event' is for announcements")
    qa = await gateway.qa.topic(request.topic)
    claims = conn.claims
    question = rules.new_question(
        question_id=uuid.uuid4().hex,
        topic=request.topic,
        author_id=claims.sub,
        author_name=claims.name or "Deelnemer",
        text=request.text,
        origin=vote_origin(conn, (request.topic,), None),
        anonymous=request.anonymous,
        settings=qa.settings,
        now=gateway.services.clock(),
    )
    async with qa.lock:
        await qa_store.insert(gateway.services.db(), question)
        qa.questions[question.question_id] = question
        gateway.qa.remember(question)
        gateway.qa.publish(question, "qa.question")
    gateway.engage(
        EventKind.QUESTION,
        conn,
        request.topic,
        {"question_id": question.question_id, "anonymous": request.anonymous},
    )
    return question.public()


@handles("qa.upvote")
async def upvote(gateway: Gateway, conn: Connection, request: QaUpvote) -> dict[str, Any]:
    """One upvote per person; a repeat changes nothing."""
    qa, question = await gateway.qa.question(request.question_id)
    check_topic(gateway, conn, question.topic)
    async with qa.lock:
        if rules.upvote(question, conn.claims.sub):
            services = gateway.services
            try:
                await qa_store.add_upvote(
                    services.db(), question.question_id, conn.claims.sub, services.clock()
                )
            except Exception:
                question.upvoters.discard(conn.claims.sub)  # memory follows storage
                raise
            gateway.qa.publish(question, "qa.updated")
            gateway.engage(
                EventKind.UPVOTE, conn, question.topic, {"question_id": question.question_id}
            )
    return question.update()


@handles("qa.approve")
@handles("qa.answer")
@handles("qa.dismiss")
async def moderate(gateway: Gateway, conn: Connection, request: QaModerate) -> dict[str, Any]:
    """Move a question through the queue."""
    qa, question = await gateway.qa.question(request.question_id)
    require_moderator(conn, question.topic)
    action = request.type.removeprefix("qa.")
    async with qa.lock:
        before = question.state
        rules.moderate(question, action)
        try:
            await qa_store.set_state(gateway.services.db(), question)
        except Exception:
            question.state = before
            raise
        # Approval is when the audience first sees the question in full.
        gateway.qa.publish(question, "qa.question" if action == "approve" else "qa.updated")
    await audit.record_by(
        gateway.services.db(),
        conn.claims,
        f"qa.{action}",
        target=question.question_id,
        detail={"topic": question.topic},
    )
    return question.update()


@handles("qa.merge")
async def merge(gateway: Gateway, conn: Connection, request: QaMerge) -> dict[str, Any]:
    """Merge a near-duplicate into another question; its upvoters join (each once)."""
    qa, duplicate = await gateway.qa.question(request.question_id)
    _, into = await gateway.qa.question(request.into)
    require_moderator(conn, duplicate.topic)
    async with qa.lock:
        before = (duplicate.state, set(into.upvoters))
        rules.merge(duplicate, into)
        try:
            async with gateway.services.db().acquire() as db:
                await qa_store.merge_upvotes(db, duplicate, into)
        except Exception:
            duplicate.state, into.upvoters = before[0], before[1]
            duplicate.merged_into = None
            raise
        gateway.qa.publish(duplicate, "qa.updated")
        gateway.qa.publish(into, "qa.updated")
    await audit.record_by(
        gateway.services.db(),
        conn.claims,
        "qa.merge",
        target=duplicate.question_id,
        detail={"topic": duplicate.topic, "into": into.question_id},
    )
    return into.update()


@handles("qa.settings")
async def settings(
    gateway: Gateway, conn: Connection, request: QaSettingsRequest
) -> dict[str, Any]:
    """Whether questions wait for approval, and whether people may ask anonymously."""
    require_moderator(conn, request.topic)
    qa = await gateway.qa.topic(request.topic)
    new = QaSettings(moderated=request.moderated, anonymous=request.anonymous)
    await qa_store.save_settings(gateway.services.db(), request.topic, new, by=conn.claims.sub)
    qa.settings = new
    data = {"moderated": new.moderated, "anonymous": new.anonymous}
    gateway.hub.publish(request.topic, "qa.settings", data)
    return data
