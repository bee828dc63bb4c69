"""Helpers for tests: tokens from the running server, headers, waiting for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from hybridcon.core.tokens import Role, TokenRequest
from hybridcon.services import SERVICES, Services


def services_of(client: TestClient[web.Request, web.Application]) -> Services:
    """The running application's services."""
    app = client.server.app
    assert app is not None
    return app[SERVICES]


def issue(
    client: TestClient[web.Request, web.Application],
    role: Role = Role.VIEWER,
    scopes: tuple[str, ...] = ("*",),
    **kwargs: Any,
) -> str:
    """A token signed by the running server's active key."""
    token, _ = (
        services_of(client)
        .auth()
        .issue(TokenRequest(role=role, scopes=scopes, **kwargs), via="test")
    )
    return token


def bearer(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 5.0,
    what: str = "condition",
) -> None:
    """Wait until ``check()`` is true, polling; fail after ``timeout`` seconds.

    For effects that cross processes (NOTIFY from a CLI, a server reacting), where there
    is no event to await: the condition is checked, not a fixed sleep assumed.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        await asyncio.sleep(0.02)
