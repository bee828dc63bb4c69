"""Unit tests for hybridcon.realtime.heap.HeapFreezer's policy.

``gc.freeze``/``unfreeze``/``collect`` are replaced by recorders here: the policy is
about when they are called, and freezing the test process's own heap would leak the
objects of every later test. That the real ones are called on a running node is tested
in tests/integration/test_heap.py.
"""

from __future__ import annotations

from collections.abc import Callable

from hybridcon.realtime.heap import THAW_DELAY, HeapFreezer


def recording(every: int) -> tuple[HeapFreezer, list[str], list[Callable[[], None]]]:
    """A freezer whose gc calls are recorded and whose thaws wait until the test runs them."""
    calls: list[str] = []
    later: list[Callable[[], None]] = []

    def collect() -> int:
        calls.append("collect")
        return 0

    def call_later(delay: float, callback: Callable[[], None]) -> None:
        assert delay == THAW_DELAY
        calls.append("thaw due")
        later.append(callback)

    freezer = HeapFreezer(
        every,
        freeze=lambda: calls.append("freeze"),
        unfreeze=lambda: calls.append("unfreeze"),
        collect=collect,
        call_later=call_later,
    )
    return freezer, calls, later


def test_start_up_is_frozen() -> None:
    freezer, calls, _ = recording(500)
    freezer.started()
    assert calls == ["freeze"]


def test_every_so_many_joins_freeze_without_a_collection() -> None:
    freezer, calls, _ = recording(3)
    for _ in range(2):
        freezer.joined()
    assert calls == []
    freezer.joined()
    assert calls == ["freeze"]
    for _ in range(5):
        freezer.joined()
    assert calls == ["freeze", "freeze"]


def test_a_quarter_of_the_frozen_leaving_makes_a_thaw_due_once() -> None:
    freezer, calls, later = recording(10)
    for _ in range(100):  # 10 freezes, 100 connections frozen
        freezer.joined()
    calls.clear()
    for open_now in range(99, 75, -1):  # 24 leave: under a quarter
        freezer.left(open_now)
    assert calls == []
    for open_now in range(75, 60, -1):  # the 25th, and more during the delay
        freezer.left(open_now)
    assert calls == ["thaw due"]
    later.pop()()
    assert calls == ["thaw due", "unfreeze", "collect", "freeze"]


def test_after_a_thaw_the_connections_open_then_are_the_frozen_ones() -> None:
    freezer, calls, later = recording(10)
    for _ in range(100):
        freezer.joined()
    for open_now in range(99, 74, -1):
        freezer.left(open_now)
    later.pop()()  # 75 open, all frozen now: a quarter of them (18) must leave next
    calls.clear()
    for open_now in range(74, 57, -1):
        freezer.left(open_now)
    assert calls == []
    freezer.left(57)
    assert calls == ["thaw due"]


def test_at_least_every_departures_between_thaws() -> None:
    freezer, calls, _ = recording(10)
    for _ in range(9):  # nothing frozen yet besides start-up
        freezer.left(0)
    assert calls == []
    freezer.left(0)
    assert calls == ["thaw due"]


def test_a_stopping_node_thaws() -> None:
    freezer, calls, _ = recording(10)
    freezer.started()
    freezer.stopped()
    assert calls == ["freeze", "unfreeze"]


def test_zero_turns_it_all_off() -> None:
    freezer, calls, _ = recording(0)
    freezer.started()
    for _ in range(1000):
        freezer.joined()
    for _ in range(1000):
        freezer.left(0)
    freezer.stopped()
    assert calls == []
