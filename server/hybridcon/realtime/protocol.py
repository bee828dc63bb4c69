"""The wire messages a client may send after ``auth.ok``, and their handlers.

Every request is ``{"id": <int>, "type": <str>, ...}``. One pydantic model per type
in one discriminated union; each type is registered with its handler. Unknown types,
malformed JSON and invalid fields get an ``error`` reply naming the problem; the
connection stays open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from hybridcon.errors import HybridconError, Invalid

if TYPE_CHECKING:
    from hybridcon.realtime.connection import Connection
    from hybridcon.realtime.gateway import Gateway


class Request(BaseModel):
    """Fields every request carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: int = Field(ge=0, le=2**53)


class Ping(Request):
    """Application-level keep-alive; answered with ``{"ts": ...}``."""

    type: Literal["ping"]


AnyRequest = Annotated[Ping, Field(discriminator="type")]
_ADAPTER: TypeAdapter[AnyRequest] = TypeAdapter(AnyRequest)

Handler = Callable[["Gateway", "Connection", Any], Awaitable[dict[str, Any] | None]]


async def _ping(gateway: Gateway, _conn: Connection, _request: Ping) -> dict[str, Any]:
    return {"ts": gateway.services.clock().isoformat()}


HANDLERS: dict[str, Handler] = {"ping": _ping}


def error_reply(request_id: int | None, error: HybridconError) -> dict[str, Any]:
    """The ``error`` reply for a request (``id`` is null when it could not be read)."""
    return {"id": request_id, "type": "error", "code": error.code, "message": error.message}


async def dispatch(gateway: Gateway, conn: Connection, data: str) -> dict[str, Any] | None:
    """Validate one text frame, run its handler, and return the reply to send.

    Raises:
        Invalid: the frame is not a JSON object with an integer ``id`` and a known ``type``.
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
    if kind not in HANDLERS:
        return error_reply(request_id, Invalid(f"unknown message type {kind!r}"))
    try:
        request = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "request"
        return error_reply(request_id, Invalid(f"{where}: {first['msg']}"))
    try:
        data_out = await HANDLERS[kind](gateway, conn, request)
    except HybridconError as exc:
        return error_reply(request_id, exc)
    return {"id": request_id, "type": "result", "data": data_out or {}}
