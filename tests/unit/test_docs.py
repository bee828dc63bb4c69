"""The docs name everything a user can set or send: settings, request types, error codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hybridcon.errors import ERROR_CODES
from hybridcon.realtime.protocol import REQUEST_TYPES
from hybridcon.settings import Settings

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


def test_the_checks_would_fail_on_a_missing_name() -> None:
    assert not named_in_protocol("chat.teleport", read("protocol.md"))
    assert not named_in_protocol("chat", "## `chat.send`\n")
