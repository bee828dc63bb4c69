"""How many connections one person may hold, and which give way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def to_evict(open_oldest_first: Sequence[T], cap: int) -> list[T]:
    """The connections to close so that at most ``cap`` remain: the oldest go first.

    A token shared in a group chat then cannot fill a room: each new device pushes
    the oldest one out (it is closed with 4008).
    """
    excess = len(open_oldest_first) - cap
    return list(open_oldest_first[:excess]) if excess > 0 else []
