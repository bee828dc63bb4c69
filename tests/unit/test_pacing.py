"""Unit tests for hybridcon.core.pacing.next_tick (times are a fake clock, in seconds)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridcon.core.pacing import next_tick


def test_the_first_push_waits_the_interval() -> None:
    assert next_tick(100.0, None, interval=0.01, period=0.14) == pytest.approx(100.01)


def test_a_quiet_stage_waits_only_the_interval() -> None:
    # The previous tick started long ago: a lone line is not held back for the period.
    assert next_tick(100.0, 90.0, interval=0.01, period=0.14) == pytest.approx(100.01)


def test_while_pushes_keep_coming_ticks_start_a_period_apart() -> None:
    # A short tick (a small stage): it started at 100.0 and ended at 100.03; the next
    # push arrives at once and waits until 100.14, longer than the interval.
    assert next_tick(100.03, 100.0, interval=0.01, period=0.14) == pytest.approx(100.14)


def test_a_long_tick_shortens_the_wait_after_it() -> None:
    # Ticks of 80 and 120 ms: the wait after each is what is left of the period.
    after_80 = next_tick(100.08, 100.0, interval=0.01, period=0.14) - 100.08
    after_120 = next_tick(100.12, 100.0, interval=0.01, period=0.14) - 100.12
    assert after_80 == pytest.approx(0.06)
    assert after_120 == pytest.approx(0.02)


def test_a_tick_longer_than_the_period_is_followed_after_the_interval() -> None:
    assert next_tick(100.3, 100.0, interval=0.01, period=0.14) == pytest.approx(100.31)


def test_period_zero_is_a_fixed_wait_after_the_first_push() -> None:
    assert next_tick(100.03, 100.0, interval=0.05, period=0.0) == pytest.approx(100.08)
    assert next_tick(100.03, 100.0, interval=0.0, period=0.0) == pytest.approx(100.03)


@pytest.mark.parametrize(("interval", "period"), [(-0.01, 0.1), (0.01, -0.1)])
def test_negative_values_are_refused(interval: float, period: float) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        next_tick(1.0, 0.0, interval=interval, period=period)


times = st.floats(0, 1e6, allow_nan=False)
spans = st.floats(0, 10, allow_nan=False)


@given(now=times, since_last=spans, interval=spans, period=spans)
def test_never_sooner_than_either_bound_and_one_of_them_holds_exactly(
    now: float, since_last: float, interval: float, period: float
) -> None:
    last = now - since_last
    due = next_tick(now, last, interval=interval, period=period)
    assert due >= now + interval
    assert due >= last + period
    assert due in (now + interval, last + period)


# -- adapting to the load ------------------------------------------------------------------


def test_a_quiet_node_writes_almost_at_once() -> None:
    # The last tick took 2 ms: the period is 3 ms, and a push waits no longer than that.
    due = next_tick(10.0, 9.9, interval=0.01, period=0.12, last_tick=0.002, load_factor=1.5)
    assert due == pytest.approx(10.003)


def test_a_busy_node_coalesces_up_to_the_full_period() -> None:
    # 80 ms ticks (some 5,000 viewers): 1.5 x 80 ms reaches the 120 ms ceiling.
    due = next_tick(10.05, 10.0, interval=0.01, period=0.12, last_tick=0.08, load_factor=1.5)
    assert due == pytest.approx(10.12)
    # Longer ticks never push it past the ceiling.
    due = next_tick(10.05, 10.0, interval=0.01, period=0.12, last_tick=0.3, load_factor=1.5)
    assert due == pytest.approx(10.12)


def test_in_between_the_period_follows_the_tick() -> None:
    due = next_tick(10.001, 10.0, interval=0.01, period=0.12, last_tick=0.02, load_factor=1.5)
    assert due == pytest.approx(10.03)  # 1.5 x 20 ms after the last start
    # A push long after the last tick waits only the (shrunk) interval.
    due = next_tick(11.0, 10.0, interval=0.01, period=0.12, last_tick=0.004, load_factor=1.5)
    assert due == pytest.approx(11.006)


@pytest.mark.parametrize("factor", [0.0, 1.5])
def test_without_a_measured_tick_or_a_factor_the_fixed_rule_holds(factor: float) -> None:
    fixed = next_tick(10.0, 9.95, interval=0.01, period=0.12)
    assert next_tick(10.0, 9.95, interval=0.01, period=0.12, load_factor=factor) == fixed
    assert (
        next_tick(10.0, 9.95, interval=0.01, period=0.12, last_tick=0.002, load_factor=0.0) == fixed
    )


def test_a_negative_load_factor_is_refused() -> None:
    with pytest.raises(ValueError, match="load_factor"):
        next_tick(0.0, None, interval=0.01, period=0.12, last_tick=0.01, load_factor=-1)
