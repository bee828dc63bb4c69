"""Q&A requests: ask, upvote, moderate, merge, settings. The rules are in :mod:`hybridcon.core.qa`.

Questions of a topic are loaded once per node and kept in memory; every change is
stored before it is pushed. Pending questions go to ``mod:<topic>`` only; approved ones
to everyone on the topic as ``qa.question``, changes as ``qa.updated``.

Across nodes PostgreSQL holds the truth (one upvote row per person and question): after
a change a node reads the question back, pushes what is stored, and signals the other
nodes, which read it again too. An upvote's push is ordered on the bus while the
question's row is still locked by its transaction, so two upvotes taken on two nodes at
once are pushed in the order they were stored, the last push carrying the last count.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from hybridcon.core import qa as rules
from hybridcon.core.payloads import QuestionAsked, Upvote
from hybridcon.core.poll_views import vote_origin
from hybridcon.core.qa import QaSettings, Question, QuestionState
from hybridcon.errors import Invalid, NotFound
from hybridcon.realtime.command import Capability, HexId, RawText, Request, Role, Topic, command
from hybridcon.realtime.context import Context, Node
from hybridcon.store import qa as qa_store


class QaAsk(Request):
    """Ask a question in a topic."""

    type: Literal["qa.ask"]
    topic: Topic
    text: RawText
    anonymous: bool = False


class QaUpvote(Request):
    """Upvote a question; once per person."""

    type: Literal["qa.upvote"]
    question_id: HexId


class QaModerate(Request):
    """Moderator: approve, answer or dismiss a question."""

    type: Literal["qa.approve", "qa.answer", "qa.dismiss"]
    question_id: HexId


class QaMerge(Request):
    """Moderator: merge a near-duplicate into another question (upvoters join)."""

    type: Literal["qa.merge"]
    question_id: HexId
    into: HexId


class QaSettingsRequest(Request):
    """Moderator: Q&A settings of a topic."""

    type: Literal["qa.settings"]
    topic: Topic
    moderated: bool
    anonymous: bool


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


class Qa(Capability):
    """The Q&A topics this node has touched, and the Q&A requests."""

    pushes: ClassVar[Mapping[str, str]] = {
        "qa.question": "a question the receiver may now see in full (pending ones on "
        "mod:<topic> only); its topic is the envelope's",
        "qa.updated": "a question's upvotes or state changed",
        "qa.settings": "a topic's Q&A settings changed",
    }

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self._topics: dict[str, TopicQa] = {}
        self._index: dict[str, str] = {}  # question_id -> topic
        self._load_lock = asyncio.Lock()

    async def start(self) -> None:
        """Listen to the other nodes' Q&A changes."""
        self._node.on_signal("qa.question", self._question_signalled)
        self._node.on_signal("qa.settings", self._settings_signalled)
        self._node.on_resync(self.resync)

    def _question_signalled(self, data: dict[str, Any]) -> Coroutine[Any, Any, None] | None:
        if str(data["topic"]) not in self._topics:
            return None  # read whole when this node first needs the topic
        return self._reread(str(data["topic"]), [str(q) for q in data["question_ids"]])

    async def _reread(self, topic: str, question_ids: list[str]) -> None:
        """Another node changed these questions: take them as stored."""
        qa = self._topics[topic]
        async with qa.lock:
            for question_id in question_ids:
                stored = await qa_store.load_question(self._node.db(), question_id)
                if stored is None:
                    continue
                known = qa.questions.get(question_id)
                if known is None:
                    qa.questions[question_id] = stored
                    self._index[question_id] = topic
                else:
                    known.state, known.upvoters = stored.state, stored.upvoters
                    known.merged_into = stored.merged_into

    def _settings_signalled(self, data: dict[str, Any]) -> Coroutine[Any, Any, None] | None:
        if str(data["topic"]) not in self._topics:
            return None
        return self._reread_settings(str(data["topic"]))

    async def _reread_settings(self, topic: str) -> None:
        self._topics[topic].settings = await qa_store.load_settings(self._node.db(), topic)

    async def resync(self) -> None:
        """Read every topic this node holds again (signals may have been lost)."""
        pool = self._node.db()
        for topic, qa in list(self._topics.items()):
            async with qa.lock:
                qa.settings = await qa_store.load_settings(pool, topic)
                for question in await qa_store.load_topic(pool, topic):
                    qa.questions[question.question_id] = question
                    self._index[question.question_id] = topic

    def _changed(self, *questions: Question) -> None:
        self._node.signal(
            "qa.question",
            {"topic": questions[0].topic, "question_ids": [q.question_id for q in questions]},
        )

    async def topic(self, topic: str) -> TopicQa:
        """A topic's questions, loaded from the database once."""
        found = self._topics.get(topic)
        if found is not None:
            return found
        async with self._load_lock:
            found = self._topics.get(topic)
            if found is None:
                pool = self._node.db()
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
            row = await self._node.db().fetchval(
                "SELECT topic FROM questions WHERE question_id = $1", uuid.UUID(question_id)
            )
            if row is None:
                raise NotFound(f"no question {question_id}")
            topic = str(row)
        qa = await self.topic(topic)
        question = qa.questions.get(question_id)
        if question is None:
            # Asked through another node a moment ago (its signal not here yet).
            async with qa.lock:
                question = qa.questions.get(question_id)
                if question is None:
                    question = await qa_store.load_question(self._node.db(), question_id)
                    if question is None:
                        raise NotFound(f"no question {question_id}")
                    qa.questions[question_id] = question
                    self._index[question_id] = topic
        return qa, question

    async def load(self, topic: str) -> None:
        """Load the topic's questions."""
        await self.topic(topic)

    def snapshot(self, ctx: Context, topic: str, moderator: bool) -> dict[str, Any]:
        """Open questions (pending ones for moderators) and, for others, the settings."""
        qa = self._topics[topic]
        if moderator:
            return {"questions": qa.listing(moderator=True)}
        return {
            "questions": qa.listing(moderator=False),
            "qa": {"moderated": qa.settings.moderated, "anonymous": qa.settings.anonymous},
        }

    def publish(self, question: Question, kind: str) -> list[asyncio.Future[tuple[int, bytes]]]:
        """Push a question (``qa.question``) or its change (``qa.updated``) where it is seen.

        A pushed question's topic is the envelope's: on ``mod:<topic>`` it names the
        moderators' topic, whose sequence the push carries (the question's own topic
        field would claim the public topic's place in the client's sequence).
        """
        node = self._node
        if kind == "qa.question":
            fields = question.public()
            del fields["topic"]
        else:
            fields = question.update()
        sent = [node.publish(f"mod:{question.topic}", kind, fields)]
        if question.state is not QuestionState.PENDING:
            sent.append(node.publish(question.topic, kind, fields))
        return sent

    @command(QaAsk, scope="topic")
    async def ask(self, ctx: Context, request: QaAsk) -> dict[str, Any]:
        """Ask a question; the origin (stage, session, hall) is kept on it."""
        if request.topic == "event":
            raise Invalid("ask in a stage or a session; 'event' is for announcements")
        qa = await self.topic(request.topic)
        claims = ctx.claims
        question = rules.new_question(
            question_id=uuid.uuid4().hex,
            topic=request.topic,
            author_id=claims.sub,
            author_name=claims.shown_name,
            text=request.text,
            origin=vote_origin(claims, ctx.topics, (request.topic,), None),
            anonymous=request.anonymous,
            settings=qa.settings,
            now=self._node.clock(),
        )
        async with qa.lock:
            await qa_store.insert(self._node.db(), question)
            qa.questions[question.question_id] = question
            self._index[question.question_id] = question.topic
            self.publish(question, "qa.question")
        self._changed(question)
        ctx.engage(
            QuestionAsked(question_id=question.question_id, anonymous=request.anonymous),
            request.topic,
        )
        return question.public()

    @command(QaUpvote)
    async def upvote(self, ctx: Context, request: QaUpvote) -> dict[str, Any]:
        """One upvote per person; a repeat changes nothing."""
        qa, question = await self.question(request.question_id)
        ctx.check_topic(question.topic)
        node = self._node
        sub = ctx.claims.sub
        async with qa.lock:
            before = (question.state, set(question.upvoters), question.merged_into)
            try:
                async with node.db().acquire() as db, db.transaction():
                    # As stored now: another node may have approved, answered or
                    # upvoted it a moment ago (its signal not here yet).
                    stored = await qa_store.load_question(db, question.question_id)
                    if stored is not None:
                        question.state, question.upvoters = stored.state, stored.upvoters
                        question.merged_into = stored.merged_into
                    added = rules.upvote(question, sub) and await qa_store.add_upvote(
                        db, question.question_id, sub, node.clock()
                    )
                    if added:
                        # The row stays locked until the push is ordered: an upvote on
                        # another node waits, and is pushed after this one.
                        question.upvoters = await qa_store.upvoters(db, question.question_id)
                        await asyncio.gather(*self.publish(question, "qa.updated"))
            except Exception:
                question.state, question.upvoters, question.merged_into = before
                raise
            if added:
                self._changed(question)
                ctx.engage(Upvote(question_id=question.question_id), question.topic)
        return question.update()

    @command(QaModerate, role=Role.MODERATOR)
    async def moderate(self, ctx: Context, request: QaModerate) -> dict[str, Any]:
        """Move a question through the queue."""
        qa, question = await self.question(request.question_id)
        ctx.require_moderator(question.topic)
        action = request.type.removeprefix("qa.")
        async with qa.lock:
            before = question.state
            rules.moderate(question, action)
            try:
                await qa_store.set_state(self._node.db(), question)
            except Exception:
                question.state = before
                raise
            # Approval is when the audience first sees the question in full.
            self.publish(question, "qa.question" if action == "approve" else "qa.updated")
        self._changed(question)
        await ctx.audit(f"qa.{action}", question.question_id, {"topic": question.topic})
        return question.update()

    @command(QaMerge, role=Role.MODERATOR)
    async def merge(self, ctx: Context, request: QaMerge) -> dict[str, Any]:
        """Merge a near-duplicate into another question; its upvoters join (each once)."""
        qa, duplicate = await self.question(request.question_id)
        _, into = await self.question(request.into)
        ctx.require_moderator(duplicate.topic)
        async with qa.lock:
            before = (duplicate.state, set(into.upvoters))
            rules.merge(duplicate, into)
            try:
                async with self._node.db().acquire() as db:
                    await qa_store.merge_upvotes(db, duplicate, into)
            except Exception:
                duplicate.state, into.upvoters = before[0], before[1]
                duplicate.merged_into = None
                raise
            into.upvoters = await qa_store.upvoters(self._node.db(), into.question_id)
            self.publish(duplicate, "qa.updated")
            self.publish(into, "qa.updated")
        self._changed(duplicate, into)
        await ctx.audit(
            "qa.merge", duplicate.question_id, {"topic": duplicate.topic, "into": into.question_id}
        )
        return into.update()

    @command(QaSettingsRequest, role=Role.MODERATOR, scope="topic")
    async def settings(self, ctx: Context, request: QaSettingsRequest) -> dict[str, Any]:
        """Whether questions wait for approval, and whether people may ask anonymously."""
        qa = await self.topic(request.topic)
        new = QaSettings(moderated=request.moderated, anonymous=request.anonymous)
        await qa_store.save_settings(self._node.db(), request.topic, new, by=ctx.claims.sub)
        qa.settings = new
        self._node.signal("qa.settings", {"topic": request.topic})
        data = {"moderated": new.moderated, "anonymous": new.anonymous}
        self._node.publish(request.topic, "qa.settings", data)
        return data
