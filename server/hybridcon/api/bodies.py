"""Reading JSON request bodies into pydantic models, with errors that name the field."""

from __future__ import annotations

from typing import TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from hybridcon.errors import Invalid, TooLarge

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 64 * 1024


async def read_json(request: web.Request, model: type[M]) -> M:
    """Parse the request body as ``model``.

    Raises:
        TooLarge: the body is over 64 KiB.
        Invalid: not JSON, or a field is missing or wrong (the message names it).
    """
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise TooLarge(f"request body is over {MAX_BODY_BYTES} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge(f"request body is over {MAX_BODY_BYTES} bytes") from None
    if len(body) > MAX_BODY_BYTES:
        raise TooLarge(f"request body is over {MAX_BODY_BYTES} bytes")
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        raise Invalid("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Invalid("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise Invalid(f"{where}: {first['msg']}") from None
