"""The janus provider's pure parts: Janus's error codes as hybridcon's errors, room numbers."""

from __future__ import annotations

import pytest

from hybridcon.errors import Conflict, Forbidden, HybridconError, Invalid, NotFound, Unavailable
from hybridcon.rooms.janus import room_number
from hybridcon.rooms.janus_api import JanusError, janus_error


@pytest.mark.parametrize(
    ("source", "code", "kind", "code_name"),
    [
        ("videoroom", 433, Forbidden, "UNAUTHORIZED"),
        ("janus", 403, Forbidden, "UNAUTHORIZED"),
        ("janus", 465, Invalid, "JSEP_INVALID_SDP"),
        ("videoroom", 437, Invalid, "INVALID_SDP"),
        ("videoroom", 426, NotFound, "NO_SUCH_ROOM"),
        ("videoroom", 432, Conflict, "PUBLISHERS_FULL"),
        ("janus", 458, Unavailable, "SESSION_NOT_FOUND"),
    ],
)
def test_janus_codes_become_hybridcon_errors_naming_the_code(
    source: str, code: int, kind: type[HybridconError], code_name: str
) -> None:
    error = janus_error(source, code, "Janus's own words", "join")
    assert isinstance(error, kind) and isinstance(error, JanusError)
    assert f"{code} {code_name} (Janus's own words)" in error.message
    assert error.janus_code == code and error.source == source


def test_an_unexpected_code_is_an_internal_error() -> None:
    error = janus_error("videoroom", 430, "room should be a positive integer", "create")
    assert type(error) is JanusError
    assert error.code == "internal" and error.status == 500
    assert error.message == (
        "Janus refused create: 430 INVALID_ELEMENT (room should be a positive integer)"
    )


def test_sdp_errors_say_so() -> None:
    error = janus_error("janus", 465, "Missing mandatory lines", "joinandconfigure")
    assert error.message.startswith("the video server (Janus) cannot use this SDP")


def test_room_numbers_are_stable_distinct_and_safe_integers() -> None:
    names = [f"workshop-{n}" for n in range(2000)] + ["ws1~1", "ws1~2", ""]
    numbers = [room_number(name) for name in names]
    assert len(set(numbers)) == len(names)
    assert all(0 < n < 2**48 for n in numbers)
    assert room_number("ws1") == room_number("ws1")
