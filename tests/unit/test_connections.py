"""Unit tests for hybridcon.core.connections.to_evict."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridcon.core.connections import to_evict


@pytest.mark.parametrize(
    ("open_oldest_first", "cap", "expected"),
    [
        ([], 3, []),
        (["a"], 3, []),
        (["a", "b", "c"], 3, []),
        (["a", "b", "c", "d"], 3, ["a"]),
        (["a", "b", "c", "d", "e"], 3, ["a", "b"]),
        (["a", "b"], 1, ["a"]),
        (["a", "b"], 0, ["a", "b"]),
        (["a", "b"], -1, ["a", "b"]),
    ],
)
def test_oldest_go_first(open_oldest_first: list[str], cap: int, expected: list[str]) -> None:
    assert to_evict(open_oldest_first, cap) == expected


def test_accepts_any_sequence_and_returns_a_new_list() -> None:
    conns = ["a", "b", "c"]
    evicted = to_evict(conns, 1)
    assert evicted == ["a", "b"]
    evicted.clear()
    assert conns == ["a", "b", "c"]
    assert to_evict(("x", "y"), 1) == ["x"]
    assert to_evict(range(5), 2) == [0, 1, 2]


@given(conns=st.lists(st.integers(), unique=True, max_size=30), cap=st.integers(0, 40))
def test_what_remains_is_the_newest_cap(conns: list[int], cap: int) -> None:
    evicted = to_evict(conns, cap)
    remaining = [c for c in conns if c not in evicted]
    assert len(remaining) == min(cap, len(conns))
    assert remaining == conns[len(conns) - len(remaining) :]
    assert evicted == conns[: len(evicted)]
