"""The wire messages a client may send after ``auth.ok``, and the registry of handlers.

Every request is ``{"id": <int>, "type": <str>, ...}``: one pydantic model per type in
one discriminated union, each registered with its handler (``@handles``). Unknown types,
malformed JSON and invalid fields get an ``error`` reply naming the problem; the
connection stays open. ``docs/protocol.md`` lists every type here (a test checks it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from hybridcon.errors import HybridconError, Invalid

if TYPE_CHECKING:
    from hybridcon.realtime.connection import Connection
    from hybridcon.realtime.gateway import Gateway

_ID = r"[a-z0-9][a-z0-9_-]{0,63}"
Topic = Annotated[str, StringConstraints(pattern=rf"^(?:event|(?:stage|session):{_ID})$")]
ModTopic = Annotated[
    str, StringConstraints(pattern=rf"^(?:(?:mod:)?event|(?:mod:)?(?:stage|session):{_ID})$")
]
MsgId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# Raw text is limited generously here; the chat rules give the precise limit after cleaning.
RawText = Annotated[str, StringConstraints(max_length=4000)]


class Request(BaseModel):
    """Fields every request carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: int = Field(ge=0, le=2**53)


class Ping(Request):
    """Application-level keep-alive; answered with ``{"ts": ...}``."""

    type: Literal["ping"]


class Subscribe(Request):
    """Join a topic; the result holds a snapshot and, with ``since``, what was missed."""

    type: Literal["subscribe"]
    topic: ModTopic
    since: int | None = Field(default=None, ge=0)


class Unsubscribe(Request):
    """Leave a topic."""

    type: Literal["unsubscribe"]
    topic: ModTopic


class ChatSend(Request):
    """Say something in a topic's chat."""

    type: Literal["chat.send"]
    topic: Topic
    text: RawText


class ChatDelete(Request):
    """Moderator: remove a line (published or held)."""

    type: Literal["chat.delete"]
    topic: Topic
    msg_id: MsgId


class ChatTimeout(Request):
    """Moderator: mute a person in a topic for ``seconds``."""

    type: Literal["chat.timeout"]
    topic: Topic
    user_id: UserId
    seconds: int = Field(ge=1, le=86_400)


class ChatBan(Request):
    """Moderator: ban a person from a topic's chat."""

    type: Literal["chat.ban"]
    topic: Topic
    user_id: UserId


class ChatUnban(Request):
    """Moderator: lift a ban or timeout."""

    type: Literal["chat.unban"]
    topic: Topic
    user_id: UserId


class ChatSlowmode(Request):
    """Moderator: one line per ``seconds`` per person (0: off)."""

    type: Literal["chat.slowmode"]
    topic: Topic
    seconds: int = Field(ge=0, le=600)


class ChatHold(Request):
    """Moderator: hold each person's first line in the topic for approval."""

    type: Literal["chat.hold"]
    topic: Topic
    enabled: bool


class ChatApprove(Request):
    """Moderator: publish a held line."""

    type: Literal["chat.approve"]
    topic: Topic
    msg_id: MsgId


class ChatReport(Request):
    """Anyone: flag a line for the moderators."""

    type: Literal["chat.report"]
    topic: Topic
    msg_id: MsgId
    reason: Annotated[str, StringConstraints(max_length=300)] = ""


class PresenceHeartbeat(Request):
    """Every 30 s while watching: what the player is doing."""

    type: Literal["presence.heartbeat"]
    topic: Topic
    playing: bool
    visible: bool
    muted: bool | None = None
    quality: (
        Annotated[str, StringConstraints(max_length=16, pattern=r"^[A-Za-z0-9_.-]*$")] | None
    ) = None


PollId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
QuestionId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


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
    at_session: Annotated[str, StringConstraints(pattern=rf"^{_ID}$")] | None = None
    open: bool = False


class PollOpen(Request):
    """Moderator: open a poll now."""

    type: Literal["poll.open"]
    poll_id: PollId


class PollClose(Request):
    """Moderator: close a poll; everyone gets the final results (if shown)."""

    type: Literal["poll.close"]
    poll_id: PollId


class PollVote(Request):
    """Vote; one vote per person per poll, a retry is harmless."""

    type: Literal["poll.vote"]
    poll_id: PollId
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
    poll_id: PollId


class PollShow(Request):
    """Moderator: put an open poll's answer on the wall."""

    type: Literal["poll.show"]
    poll_id: PollId
    answer_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


class QaAsk(Request):
    """Ask a question in a topic."""

    type: Literal["qa.ask"]
    topic: Topic
    text: RawText
    anonymous: bool = False


class QaUpvote(Request):
    """Upvote a question; once per person."""

    type: Literal["qa.upvote"]
    question_id: QuestionId


class QaModerate(Request):
    """Moderator: approve, answer or dismiss a question."""

    type: Literal["qa.approve", "qa.answer", "qa.dismiss"]
    question_id: QuestionId


class QaMerge(Request):
    """Moderator: merge a near-duplicate into another question (upvoters join)."""

    type: Literal["qa.merge"]
    question_id: QuestionId
    into: QuestionId


class QaSettingsRequest(Request):
    """Moderator: Q&A settings of a topic."""

    type: Literal["qa.settings"]
    topic: Topic
    moderated: bool
    anonymous: bool


class React(Request):
    """A reaction from the small fixed set; counts are pushed at most once a second."""

    type: Literal["react"]
    topic: Topic
    emoji: Annotated[str, StringConstraints(max_length=8)]


AnyRequest = Annotated[
    Ping
    | Subscribe
    | Unsubscribe
    | ChatSend
    | ChatDelete
    | ChatTimeout
    | ChatBan
    | ChatUnban
    | ChatSlowmode
    | ChatHold
    | ChatApprove
    | ChatReport
    | PresenceHeartbeat
    | PollCreate
    | PollOpen
    | PollClose
    | PollVote
    | PollResults
    | PollShow
    | QaAsk
    | QaUpvote
    | QaModerate
    | QaMerge
    | QaSettingsRequest
    | React,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[AnyRequest] = TypeAdapter(AnyRequest)

REQUEST_TYPES: tuple[str, ...] = tuple(
    kind
    for m in (
        Ping,
        Subscribe,
        Unsubscribe,
        ChatSend,
        ChatDelete,
        ChatTimeout,
        ChatBan,
        ChatUnban,
        ChatSlowmode,
        ChatHold,
        ChatApprove,
        ChatReport,
        PresenceHeartbeat,
        PollCreate,
        PollOpen,
        PollClose,
        PollVote,
        PollResults,
        PollShow,
        QaAsk,
        QaUpvote,
        QaModerate,
        QaMerge,
        QaSettingsRequest,
        React,
    )
    for kind in m.model_fields["type"].annotation.__args__  # type: ignore[union-attr]
)

# A handler returns the result's data (a dict), or bytes: an already encoded result
# (subscribe splices stored messages into its result without decoding them).
Result = dict[str, Any] | bytes | None
Handler = Callable[["Gateway", "Connection", Any], Awaitable[Result]]
HANDLERS: dict[str, Handler] = {}

R = TypeVar("R", bound=Request)


def handles(kind: str) -> Callable[[Callable[[Gateway, Connection, R], Awaitable[Result]]], Any]:
    """Register the decorated coroutine as the handler of request type ``kind``."""
    if kind not in REQUEST_TYPES:
        raise ValueError(f"no request model for {kind!r}")

    def register(func: Callable[[Gateway, Connection, R], Awaitable[Result]]) -> Any:
        HANDLERS[kind] = func
        return func

    return register


def error_reply(request_id: int | None, error: HybridconError) -> dict[str, Any]:
    """The ``error`` reply for a request (``id`` is null when it could not be read)."""
    return {"id": request_id, "type": "error", "code": error.code, "message": error.message}


async def dispatch(gateway: Gateway, conn: Connection, data: str) -> dict[str, Any] | bytes:
    """Validate one text frame, run its handler, and return the reply to send.

    Returns:
        The reply (``result`` or ``error``) as a dict, or as encoded JSON.

    Raises:
        Invalid: the frame is not a JSON object with an integer ``id``.
    """
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise Invalid("frame is not valid JSON") from None
    if not isinstance(raw, dict):
        raise Invalid("frame must be a JSON object")
    request_id = raw.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        raise Invalid("request has no integer 'id'")
    kind = raw.get("type")
    handler = HANDLERS.get(kind) if isinstance(kind, str) else None
    if handler is None:
        return error_reply(request_id, Invalid(f"unknown message type {kind!r}"))
    try:
        request = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "request"
        return error_reply(request_id, Invalid(f"{where}: {first['msg']}"))
    try:
        result = await handler(gateway, conn, request)
    except HybridconError as exc:
        return error_reply(request_id, exc)
    if isinstance(result, bytes):
        return b'{"id":%d,"type":"result","data":%s}' % (request_id, result)
    return {"id": request_id, "type": "result", "data": result or {}}
