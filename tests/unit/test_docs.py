"""The docs name everything a user can set, send or receive: settings, request and push
types, HTTP routes, error and close codes, engagement events."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hybridcon import errors
from hybridcon.api.routes import ROUTES, Route
from hybridcon.core.payloads import Payload
from hybridcon.errors import ERROR_CODES
from hybridcon.realtime.capabilities import EVERY_CAPABILITY
from hybridcon.realtime.command import push_types, request_types
from hybridcon.settings import Settings
from hybridcon.streams.stages import Streams

REQUEST_TYPES = request_types(EVERY_CAPABILITY)
PUSH_TYPES = sorted({*push_types(EVERY_CAPABILITY), *Streams.pushes})
CLOSE_CODES = sorted(
    value for name, value in vars(errors).items() if name.startswith("CLOSE_") and value >= 1000
)


def _payloads(cls: type[Payload] = Payload) -> list[type[Payload]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_payloads(sub)]
    return found


ENGAGEMENT_KINDS = sorted({p.kind.value for p in _payloads() if hasattr(p, "kind")})
DOCS = Path(__file__).resolve().parents[2] / "docs"


def read(name: str) -> str:
    return (DOCS / name).read_text("utf-8")


def named_in_protocol(name: str, text: str) -> bool:
    """Whether ``name`` is a heading of its own or a backticked name in ``text``."""
    backticked = f"`{name}`" in text
    heading = re.search(rf"^#+ .*(?<![\w.]){re.escape(name)}(?![\w.])", text, re.MULTILINE)
    return backticked or heading is not None


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_in_operations(field: str) -> None:
    name = f"HYBRIDCON_{field.upper()}"
    assert f"`{name}`" in read("operations.md"), f"add {name} to the settings table"


@pytest.mark.parametrize("kind", REQUEST_TYPES)
def test_every_request_type_is_in_protocol(kind: str) -> None:
    assert named_in_protocol(kind, read("protocol.md")), f"document request {kind!r}"


@pytest.mark.parametrize("code", ERROR_CODES)
def test_every_error_code_is_in_protocol(code: str) -> None:
    assert f"`{code}`" in read("protocol.md"), f"document error code {code!r}"


def push_documented(kind: str, text: str) -> bool:
    """Whether ``kind`` has a row of its own in a table of ``text`` (the Pushes table)."""
    return re.search(rf"^\| `{re.escape(kind)}` \|", text, re.MULTILINE) is not None


@pytest.mark.parametrize("kind", PUSH_TYPES)
def test_every_push_type_is_in_the_push_table(kind: str) -> None:
    assert push_documented(kind, read("protocol.md")), (
        f"add push {kind!r} to the Pushes table of protocol.md"
    )


def route_documented(route: Route, text: str) -> bool:
    """Whether ``METHOD path`` is named in ``text`` (pre-flights may share one heading)."""
    if f"`{route.method} {route.path}`" in text or f"{route.method} {route.path}`" in text:
        return True
    return route.method == "OPTIONS" and f"`{route.path}`" in text


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_http_route_is_in_protocol(route: Route) -> None:
    assert route_documented(route, read("protocol.md")), f"document {route.method} {route.path}"


@pytest.mark.parametrize("code", CLOSE_CODES)
def test_every_close_code_is_in_the_close_table(code: int) -> None:
    assert re.search(rf"^\| {code} \|", read("protocol.md"), re.MULTILINE), (
        f"add close code {code} to the Close codes table"
    )


@pytest.mark.parametrize("kind", ENGAGEMENT_KINDS)
def test_every_engagement_payload_is_in_operations(kind: str) -> None:
    assert f"`{kind}`" in read("operations.md"), f"describe the {kind!r} event's data"


def test_the_checks_would_fail_on_a_missing_name() -> None:
    assert not named_in_protocol("chat.teleport", read("protocol.md"))
    assert not named_in_protocol("chat", "## `chat.send`\n")


def test_the_new_checks_would_fail_too() -> None:
    fake = Route("GET", "/api/v1/teleport", ROUTES[0].handler, "nowhere")
    assert not route_documented(fake, read("protocol.md"))
    assert not push_documented("chat.teleported", read("protocol.md"))
    assert push_documented("chat.message", read("protocol.md"))
    assert "stream.alert" in PUSH_TYPES and "presence.count" in PUSH_TYPES
    assert 4001 in CLOSE_CODES and "stream_health" in ENGAGEMENT_KINDS
