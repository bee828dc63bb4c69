"""Unit tests for hybridcon.core.ratelimit: token buckets on a fake monotonic clock."""

from __future__ import annotations

import pytest

from hybridcon.core.ratelimit import KeyedLimiter, TokenBucket


def test_full_bucket_allows_its_burst_then_refuses() -> None:
    bucket = TokenBucket.full(rate=1.0, capacity=5, now=100.0)
    assert [bucket.take(100.0) for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.take(100.0)


def test_refill_over_time() -> None:
    bucket = TokenBucket.full(rate=2.0, capacity=4, now=0.0)
    for _ in range(4):
        assert bucket.take(0.0)
    assert not bucket.take(0.0)
    assert not bucket.take(0.49)  # 0.98 tokens
    assert bucket.take(0.5)  # 1 token
    assert not bucket.take(0.5)
    assert bucket.take(1.5)
    assert bucket.take(1.5)
    assert not bucket.take(1.5)


def test_refill_is_capped_at_capacity() -> None:
    bucket = TokenBucket.full(rate=10.0, capacity=3, now=0.0)
    assert bucket.take(0.0)
    bucket.retry_after(1000.0)  # a long idle time refills only to capacity
    assert bucket.tokens == 3
    assert [bucket.take(1000.0) for _ in range(4)] == [True, True, True, False]


def test_retry_after_is_accurate() -> None:
    bucket = TokenBucket.full(rate=0.5, capacity=3, now=10.0)
    assert bucket.retry_after(10.0) == 0.0
    for _ in range(3):
        assert bucket.take(10.0)
    wait = bucket.retry_after(10.0)
    assert wait == pytest.approx(2.0)
    assert not bucket.take(10.0 + wait - 0.01)
    assert bucket.take(10.0 + wait)
    assert bucket.retry_after(12.0) == pytest.approx(2.0)
    assert bucket.retry_after(13.0) == pytest.approx(1.0)


def test_retry_after_for_a_larger_cost() -> None:
    bucket = TokenBucket.full(rate=1.0, capacity=10, now=0.0)
    assert bucket.take(0.0, cost=8)
    assert not bucket.take(0.0, cost=3)
    assert bucket.retry_after(0.0, cost=3) == pytest.approx(1.0)
    assert bucket.take(1.0, cost=3)


def test_refused_take_spends_nothing() -> None:
    bucket = TokenBucket.full(rate=1.0, capacity=2, now=0.0)
    assert not bucket.take(0.0, cost=3)
    assert bucket.tokens == 2


def test_clock_going_backwards_does_not_refill_or_crash() -> None:
    bucket = TokenBucket.full(rate=1.0, capacity=1, now=50.0)
    assert bucket.take(50.0)
    assert not bucket.take(40.0)
    assert bucket.updated == 50.0
    assert bucket.take(51.0)


def test_keyed_limiter_returns_zero_when_allowed_else_wait() -> None:
    limiter = KeyedLimiter(rate=1.0, capacity=2)
    assert limiter.take("a", 0.0) == 0.0
    assert limiter.take("a", 0.0) == 0.0
    assert limiter.take("a", 0.0) == pytest.approx(1.0)
    assert limiter.take("a", 0.25) == pytest.approx(0.75)
    assert limiter.take("a", 1.0) == 0.0


def test_keyed_limiter_keys_are_independent() -> None:
    limiter = KeyedLimiter(rate=0.1, capacity=1)
    assert limiter.take("10.0.0.1", 0.0) == 0.0
    assert limiter.take("10.0.0.1", 0.0) > 0
    assert limiter.take("10.0.0.2", 0.0) == 0.0
    assert limiter.take("10.0.0.2", 0.0) > 0
    assert limiter.take("10.0.0.3", 0.0) == 0.0


def test_keyed_limiter_forgets_the_least_recently_used_key() -> None:
    limiter = KeyedLimiter(rate=0.001, capacity=1, max_keys=2)
    assert limiter.take("a", 0.0) == 0.0
    assert limiter.take("b", 0.0) == 0.0
    assert limiter.take("a", 1.0) > 0  # a is now the most recently used
    assert limiter.take("c", 2.0) == 0.0  # evicts b, not a
    assert len(limiter._buckets) == 2
    assert limiter.take("a", 3.0) > 0  # a kept its empty bucket
    assert limiter.take("b", 4.0) == 0.0  # b was forgotten: starts full again (evicts c)
    assert limiter.take("c", 5.0) == 0.0  # c was forgotten too


def test_keyed_limiter_never_holds_more_than_max_keys() -> None:
    limiter = KeyedLimiter(rate=1.0, capacity=1, max_keys=10)
    for i in range(1000):
        limiter.take(f"k{i}", float(i))
    assert len(limiter._buckets) == 10
    assert list(limiter._buckets) == [f"k{i}" for i in range(990, 1000)]


def test_a_cost_over_capacity_never_fits() -> None:
    bucket = TokenBucket.full(rate=1.0, capacity=1.0, now=0.0)
    assert not bucket.take(100.0, cost=2.0)
    assert bucket.retry_after(100.0, cost=2.0) == float("inf")
