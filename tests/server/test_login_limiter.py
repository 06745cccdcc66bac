"""The login rate limiter's memory stays bounded under a flood of distinct failed usernames."""

from __future__ import annotations

from gpustack_core.server.security import LoginRateLimiter


def test_failures_that_left_the_window_are_pruned() -> None:
    limiter = LoginRateLimiter(max_failures=5, window_s=10.0)
    for i in range(30_000):
        limiter.failed(f"user-{i}", "203.0.113.7", now=i * 0.001)  # 30 s of distinct names
    # one window's names plus at most half a window's (pruning runs every half window)
    assert len(limiter) <= 15_000
    limiter.failed("late", "203.0.113.7", now=1000.0)
    assert len(limiter) == 1


def test_the_number_of_tracked_pairs_is_capped_oldest_first() -> None:
    limiter = LoginRateLimiter(max_failures=3, window_s=300.0, max_tracked=100)
    for i in range(1000):
        limiter.failed(f"user-{i}", "203.0.113.7", now=1.0)
    assert len(limiter) == 100
    assert limiter.retry_after("user-0", "203.0.113.7", now=1.0) is None  # dropped first
    for _ in range(3):
        limiter.failed("user-999", "203.0.113.7", now=1.0)
    assert limiter.retry_after("user-999", "203.0.113.7", now=1.0) is not None


def test_one_pair_keeps_at_most_max_failures_timestamps() -> None:
    limiter = LoginRateLimiter(max_failures=5, window_s=300.0)
    for i in range(10_000):
        limiter.failed("admin", "203.0.113.7", now=float(i) / 1000)
    assert len(limiter._failures[("admin", "203.0.113.7")]) == 5
    wait = limiter.retry_after("admin", "203.0.113.7", now=10.0)
    assert wait is not None
    assert 0 < wait <= 300.0
