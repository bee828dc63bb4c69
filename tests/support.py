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


class WsClient:
    """A thin test client over one aiohttp WebSocket: requests by id, pushes in order."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._next_id = 0
        self.pushes: list[dict[str, Any]] = []
        self.user: dict[str, Any] = {}

    @classmethod
    async def connect(
        cls, client: TestClient[web.Request, web.Application], token: str
    ) -> WsClient:
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "auth", "token": token})
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "auth.ok", hello
        me = cls(ws)
        me.user = hello["user"]
        return me

    async def request(self, msg_type: str, /, **fields: Any) -> dict[str, Any]:
        """Send a request; return its reply (result or error), keeping pushes that come first."""
        self._next_id += 1
        rid = self._next_id
        await self.ws.send_json({"id": rid, "type": msg_type, **fields})
        while True:
            msg = await self.ws.receive_json(timeout=5)
            if msg.get("id") == rid:
                return dict(msg)
            self.pushes.append(msg)

    async def ok(self, msg_type: str, /, **fields: Any) -> dict[str, Any]:
        """A request that must succeed; returns its result data."""
        reply = await self.request(msg_type, **fields)
        assert reply["type"] == "result", reply
        return dict(reply["data"])

    async def push(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next push of type ``kind`` (earlier ones of other types are kept)."""
        for i, msg in enumerate(self.pushes):
            if msg["type"] == kind:
                return self.pushes.pop(i)
        while True:
            msg = await self.ws.receive_json(timeout=timeout)
            if msg["type"] == kind:
                return dict(msg)
            self.pushes.append(msg)

    async def close(self) -> None:
        await self.ws.close()


async def hls_state(watcher: WsClient, timeout: float = 15.0) -> dict[str, Any]:
    """The stage's ``stream.state`` push that carries an ``hls_url``: hybridcon sends it
    once the live playlist has its first segment (the push that says ``live`` comes
    first, at the first media, without one)."""
    while True:
        state = await watcher.push("stream.state", timeout=timeout)
        if state.get("hls_url"):
            return state


async def next_state(watcher: WsClient, timeout: float = 10.0) -> dict[str, Any]:
    """The next ``stream.state`` push that changes the state: the repeat of ``live`` that
    only adds the ``hls_url`` (see :func:`hls_state`) is skipped."""
    while True:
        state = await watcher.push("stream.state", timeout=timeout)
        if not (state["state"] == "live" and state.get("hls_url")):
            return state
