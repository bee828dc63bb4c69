"""Requests and how they reach a handler: the models' base, ``@command``, the registry.

Every request is ``{"id": <int>, "type": <str>, ...}``. Each capability declares its
request models beside their handlers and marks each handler with :func:`command`,
which also names the access rule the dispatcher checks before the handler runs. The
gateway builds one :class:`Registry` from the explicit list of capabilities in
:mod:`hybridcon.realtime.capabilities`: the request types, the push types and the
handlers all come from there, so adding a capability edits no shared list.

Unknown types, malformed JSON and invalid fields get an ``error`` reply naming the
problem; the connection stays open. ``docs/protocol.md`` lists every request and push
type of the registry (a test checks it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from hybridcon.errors import HybridconError, Invalid

if TYPE_CHECKING:
    from hybridcon.realtime.context import Context, Node

_ID = r"[a-z0-9][a-z0-9_-]{0,63}"
ID_PATTERN = rf"^{_ID}$"
Topic = Annotated[str, StringConstraints(pattern=rf"^(?:event|(?:stage|session):{_ID})$")]
# ``org`` is the organisers' live view (realtime/live.py): subscribed to, never acted on.
ModTopic = Annotated[
    str,
    StringConstraints(pattern=rf"^(?:org|(?:mod:)?event|(?:mod:)?(?:stage|session):{_ID})$"),
]
MsgId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# Raw text is limited generously here; the chat rules give the precise limit after cleaning.
RawText = Annotated[str, StringConstraints(max_length=4000)]
HexId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]


class Request(BaseModel):
    """Fields every request carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: int = Field(ge=0, le=2**53)


def request_kinds(model: type[Request]) -> tuple[str, ...]:
    """The ``type`` values a request model accepts (its ``Literal``)."""
    annotation = model.model_fields["type"].annotation
    kinds = getattr(annotation, "__args__", ())
    if not kinds or not all(isinstance(k, str) for k in kinds):
        raise TypeError(f"{model.__name__}.type must be a Literal of strings")
    return tuple(kinds)


class Role(Enum):
    """Who may send a command (besides the token's scopes, which ``scope`` names)."""

    ANYONE = "anyone"
    MODERATOR = "moderator"  # moderators and organisers, with the topic's mod: scope


# A handler returns the result's data (a dict), or bytes: an already encoded result
# (subscribe splices stored messages into its result without decoding them).
Result = dict[str, Any] | bytes | None
R = TypeVar("R", bound=Request)
Handler = Callable[[Any, "Context", Any], Awaitable[Result]]


@dataclass(frozen=True, slots=True)
class Access:
    """The checks run before a handler, on the topic(s) a request names.

    Attributes:
        role: ``MODERATOR`` runs :meth:`Context.require_moderator` on each topic.
        scope: the request field holding a topic or a list of topics; ``None`` when the
            topic is only known inside the handler (a poll's or a question's), which
            then checks it itself.
        listed: also require each topic to be in the programme and in the token's
            scopes (:meth:`Context.check_topic`); the default for ``ANYONE``.
    """

    role: Role
    scope: str | None
    listed: bool

    def check(self, ctx: Context, request: Request) -> None:
        """Raise ``Forbidden``/``NotFound`` unless the connection may send ``request``."""
        if self.scope is None:
            return
        value = getattr(request, self.scope)
        topics: Iterable[str] = (value,) if isinstance(value, str) else value
        for topic in topics:
            if self.role is Role.MODERATOR:
                ctx.require_moderator(topic)
            if self.listed:
                ctx.check_topic(topic)


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """What :func:`command` attaches to a handler."""

    model: type[Request]
    access: Access


_SPEC_ATTR = "__hybridcon_command__"


def command(
    model: type[R],
    *,
    role: Role = Role.ANYONE,
    scope: str | None = None,
    listed: bool | None = None,
) -> Callable[[Callable[[Any, Context, R], Awaitable[Result]]], Any]:
    """Mark a capability's method as the handler of ``model``'s request type(s).

    Args:
        model: the request model; its ``type`` Literal names the type(s) handled.
        role: who may send it.
        scope: the field with the topic(s) to check (see :class:`Access`).
        listed: check the topic against the programme and the token's scopes; by
            default for ``ANYONE`` commands, not for moderator commands (a moderator
            may act on a topic's leftovers).
    """
    request_kinds(model)  # fail at import on a model without a Literal type
    access = Access(
        role=role, scope=scope, listed=(role is Role.ANYONE) if listed is None else listed
    )

    def mark(func: Callable[[Any, Context, R], Awaitable[Result]]) -> Any:
        setattr(func, _SPEC_ATTR, CommandSpec(model, access))
        return func

    return mark


class Capability:
    """One realtime capability: its requests, its state, its snapshot part, its pushes.

    Subclasses mark handler methods with :func:`command`, list the push types they send
    in ``pushes`` (type -> one line on when), and may override the hooks below. They get
    the node's narrow side (:class:`~hybridcon.realtime.context.Node`) at construction,
    never the gateway.
    """

    pushes: ClassVar[Mapping[str, str]] = {}

    def __init__(self, node: Node) -> None:
        self._node = node

    async def start(self) -> None:
        """Load state and start periodic work (the node calls it once, at start)."""

    async def stop(self) -> None:
        """Stop periodic work (the node calls it once, at shutdown)."""

    async def load(self, topic: str) -> None:
        """Make ``topic``'s state ready for :meth:`snapshot` (may wait for storage)."""

    def closed(self, ctx: Context) -> None:
        """A connection ended (after it left its topics); no await. A capability that
        keeps per-connection state (a session's participant) lets go of it here."""

    def snapshot(self, ctx: Context, topic: str, moderator: bool) -> dict[str, Any]:
        """This capability's part of a ``subscribe`` snapshot of ``topic``.

        Called after :meth:`load` and right before the connection is subscribed, with
        no await in between: what it reads and the pushes after it never straddle a
        change (a line held meanwhile is in one or the other, never both or neither).

        Args:
            ctx: the subscribing connection's context.
            topic: the topic without its ``mod:`` prefix.
            moderator: whether the snapshot is of ``mod:<topic>``.
        """
        return {}

    @classmethod
    def commands(cls) -> dict[str, tuple[str, CommandSpec]]:
        """Request type -> (method name, spec), from the class's marked methods."""
        found: dict[str, tuple[str, CommandSpec]] = {}
        for name in dir(cls):
            spec = getattr(getattr(cls, name, None), _SPEC_ATTR, None)
            if isinstance(spec, CommandSpec):
                for kind in request_kinds(spec.model):
                    found[kind] = (name, spec)
        return found


@dataclass(frozen=True, slots=True)
class _Route:
    model: type[Request]
    access: Access
    handler: Callable[[Context, Any], Awaitable[Result]]


class Registry:
    """Request type -> model, access rule and bound handler; the push types.

    Raises (at construction):
        ValueError: two capabilities claim the same request or push type.
    """

    def __init__(self, capabilities: Iterable[Capability]) -> None:
        self._routes: dict[str, _Route] = {}
        self.pushes: dict[str, str] = {}
        for capability in capabilities:
            for kind, (name, spec) in type(capability).commands().items():
                if kind in self._routes:
                    raise ValueError(f"request type {kind!r} is registered twice")
                self._routes[kind] = _Route(spec.model, spec.access, getattr(capability, name))
            for kind, when in type(capability).pushes.items():
                if kind in self.pushes:
                    raise ValueError(f"push type {kind!r} is registered twice")
                self.pushes[kind] = when

    async def dispatch(self, ctx: Context, data: str) -> dict[str, Any] | bytes:
        """Validate one text frame, check access, run its handler, and return the reply.

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
        route = self._routes.get(kind) if isinstance(kind, str) else None
        if route is None:
            return error_reply(request_id, Invalid(f"unknown message type {kind!r}"))
        try:
            request = route.model.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "request"
            return error_reply(request_id, Invalid(f"{where}: {first['msg']}"))
        try:
            route.access.check(ctx, request)
            result = await route.handler(ctx, request)
        except HybridconError as exc:
            return error_reply(request_id, exc)
        if isinstance(result, bytes):
            return b'{"id":%d,"type":"result","data":%s}' % (request_id, result)
        return {"id": request_id, "type": "result", "data": result or {}}


def error_reply(request_id: int | None, error: HybridconError) -> dict[str, Any]:
    """The ``error`` reply for a request (``id`` is null when it could not be read)."""
    return {"id": request_id, "type": "error", "code": error.code, "message": error.message}


def request_types(capabilities: Iterable[type[Capability]]) -> tuple[str, ...]:
    """Every request type the capability classes handle."""
    return tuple(kind for cls in capabilities for kind in cls.commands())


def push_types(capabilities: Iterable[type[Capability]]) -> dict[str, str]:
    """Every push type the capability classes send, with when."""
    return {kind: when for cls in capabilities for kind, when in cls.pushes.items()}
