"""The governance store: teams, access rules, limit counters (atomic, exact under concurrency),
fallback chains, hourly usage buckets, and the 0004 migration up and down; on every database."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from gpustack_core.server.store import ConflictError, Store, migrate
from gpustack_core.server.store.governance import CounterClaim, GovernanceStore, LimitBlocked, window_of


@pytest.fixture
def gov(store: Store) -> GovernanceStore:
    return GovernanceStore(store.engine)


def test_window_of_aligns_minutes_days_and_months() -> None:
    t = dt.datetime(2026, 12, 31, 23, 59, 30, tzinfo=dt.timezone.utc).timestamp()
    assert window_of("minute", t) == (int(t) - 30, 30.0)
    start, left = window_of("day", t)
    assert start == int(dt.datetime(2026, 12, 31, tzinfo=dt.timezone.utc).timestamp())
    assert left == 30.0
    start, left = window_of("month", t)
    assert start == int(dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc).timestamp())
    assert left == 30.0
    assert window_of("total", t) == (0, None)
    with pytest.raises(ValueError, match="unknown period"):
        window_of("week", t)


def test_teams_and_the_access_union(store: Store, gov: GovernanceStore) -> None:
    alice = store.create_user("alice", "x", "user")
    bob = store.create_user("bob", "x", "user")
    team = gov.create_team("research", "the lab")
    with pytest.raises(ConflictError, match="already exists"):
        gov.create_team("research")
    gov.add_member(team.id, alice.id)
    gov.add_member(team.id, alice.id)  # again: no-op
    assert gov.get_team("research") == gov.get_team(team.id)
    assert gov.get_team("research").members == (alice.id,)  # type: ignore[union-attr]
    assert gov.teams_of(alice.id) == {team.id}
    # no rule anywhere: every model
    assert gov.allowed_models(alice.id, gov.teams_of(alice.id)) is None
    gov.grant("team", team.id, "llama")
    gov.grant("user", alice.id, "qwen")
    assert gov.allowed_models(alice.id, gov.teams_of(alice.id)) == {"llama", "qwen"}
    assert gov.allowed_models(bob.id, gov.teams_of(bob.id)) is None  # rules of others do not apply
    gov.grant("user", bob.id, "*")
    assert gov.allowed_models(bob.id, frozenset()) is None
    assert gov.revoke("team", team.id, "llama")
    assert not gov.revoke("team", team.id, "llama")
    assert gov.allowed_models(alice.id, gov.teams_of(alice.id)) == {"qwen"}
    gov.set_user_teams(bob.id, [team.id])
    assert gov.teams_of(bob.id) == {team.id}
    assert gov.remove_member(team.id, bob.id)
    assert gov.delete_team(team.id)
    assert gov.teams_of(alice.id) == frozenset()


def test_set_limit_replaces_the_maximum_and_reserve_is_all_or_nothing(gov: GovernanceStore) -> None:
    a = gov.set_limit("key", "k1", "", "tokens", "day", 100)
    again = gov.set_limit("key", "k1", "", "tokens", "day", 150)
    assert again.id == a.id
    assert again.max_value == 150
    b = gov.set_limit("user", "u1", "", "requests", "minute", 2)
    assert gov.reserve([CounterClaim(a.id, 10, 150, 100), CounterClaim(b.id, 60, 2, 1)]) == [100, 1]
    # the token claim would pass 150: nothing of this reservation is counted, the request counter included
    with pytest.raises(LimitBlocked) as blocked:
        gov.reserve([CounterClaim(b.id, 60, 2, 1), CounterClaim(a.id, 10, 150, 51)])
    assert (blocked.value.index, blocked.value.used) == (1, 100)
    assert gov.counter(b.id, 60) == 1
    assert gov.reserve([CounterClaim(a.id, 10, 150, 50), CounterClaim(b.id, 60, 2, 1)]) == [150, 2]
    with pytest.raises(LimitBlocked):
        gov.reserve([CounterClaim(b.id, 60, 2, 1)])
    assert gov.reserve([CounterClaim(b.id, 120, 2, 1)]) == [1]  # the next window starts at 0
    gov.adjust([(a.id, 10, -70)])  # settled: 30 of the reserved tokens were not used
    assert gov.counter(a.id, 10) == 80
    assert gov.prune_counters(100) == 2  # the windows at 10 and 60 are gone, 120 stays
    assert gov.counter(b.id, 120) == 1
    with pytest.raises(LimitBlocked):  # a claim larger than the limit never creates its counter
        gov.reserve([CounterClaim(a.id, 500, 150, 151)])
    assert gov.counter(a.id, 500) == 0
    assert gov.delete_limit(a.id)
    assert [lim.id for lim in gov.list_limits()] == [b.id]


def test_concurrent_reservations_never_pass_the_limit(gov: GovernanceStore) -> None:
    """64 threads (each with its own connection) race for a counter that fits 20 of them."""
    lim = gov.set_limit("key", "k1", "", "tokens", "total", 1000)
    start = threading.Barrier(64)

    def one(_: int) -> bool:
        start.wait()
        try:
            gov.reserve([CounterClaim(lim.id, 0, 1000, 50)])
            return True
        except LimitBlocked:
            return False

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(one, range(64)))
    assert sum(results) == 20
    assert gov.counter(lim.id, 0) == 1000


def test_fallback_chains(gov: GovernanceStore) -> None:
    gov.set_fallbacks("big", ["medium", "small"])
    gov.set_fallbacks("other", ["small"])
    assert gov.all_fallbacks() == {"big": ("medium", "small"), "other": ("small",)}
    gov.set_fallbacks("big", ["small"])
    gov.set_fallbacks("other", [])
    assert gov.all_fallbacks() == {"big": ("small",)}
    with pytest.raises(ValueError, match="its own fallback"):
        gov.set_fallbacks("big", ["big"])


def test_usage_buckets_by_hour_day_model_user_and_team(store: Store, gov: GovernanceStore) -> None:
    alice = store.create_user("alice", "x", "user")
    bob = store.create_user("bob", "x", "user")
    team = gov.create_team("t")
    gov.add_member(team.id, alice.id)
    gov.add_member(team.id, bob.id)
    h1 = dt.datetime(2026, 12, 3, 1, 20)
    h2 = dt.datetime(2026, 12, 3, 2, 5)
    gov.add_hourly_usage(alice.id, "k1", "m", h1, 10, 5, 1)
    gov.add_hourly_usage(alice.id, "k1", "m", h1, 1, 1, 1)
    gov.add_hourly_usage(bob.id, None, "m", h2, 100, 50, 2)
    gov.add_hourly_usage(bob.id, None, "n", h2, 7, 0, 1)
    hours = gov.usage_buckets("hour", ["model"])
    assert [(b.start, b.model, b.prompt_tokens, b.completion_tokens, b.requests) for b in hours] == [
        (dt.datetime(2026, 12, 3, 1), "m", 11, 6, 2),
        (dt.datetime(2026, 12, 3, 2), "m", 100, 50, 2),
        (dt.datetime(2026, 12, 3, 2), "n", 7, 0, 1),
    ]
    days = gov.usage_buckets("day", ["team"])
    assert [(b.start, b.team_id, b.requests, b.prompt_tokens) for b in days] == [
        (dt.datetime(2026, 12, 3), team.id, 5, 118)
    ]
    by_user = gov.usage_buckets("day", ["user", "key"], model="m")
    assert {(b.user_id, b.key_id, b.requests) for b in by_user} == {(alice.id, "k1", 2), (bob.id, None, 2)}
    window = gov.usage_buckets(
        "hour", ["model"], start=dt.datetime(2026, 12, 3, 1), end=dt.datetime(2026, 12, 3, 2)
    )
    assert [(b.start, b.requests) for b in window] == [
        (dt.datetime(2026, 12, 3, 1), 2)
    ]  # the end is exclusive
    with pytest.raises(ValueError, match="cannot group usage by"):
        gov.usage_buckets("hour", ["colour"])


def test_the_governance_migration_goes_down_and_up(store: Store) -> None:
    governance_tables = {"teams", "team_members", "model_access", "limits", "limit_counters"}
    assert governance_tables <= set(sa.inspect(store.engine).get_table_names())
    migrate.downgrade(store.engine, "0001")
    assert not governance_tables & set(sa.inspect(store.engine).get_table_names())
    assert migrate.current_revision(store.engine) == "0001"
    migrate.upgrade(store.engine)
    assert governance_tables <= set(sa.inspect(store.engine).get_table_names())
    assert migrate.current_revision(store.engine) == migrate.head_revision()


def test_concurrent_reservations_of_several_counters_are_all_or_nothing_and_settle_exactly(
    gov: GovernanceStore,
) -> None:
    """64 threads reserve two counters each (a shared request counter and one of two token
    counters, listed in either order) and settle at once: no deadlock, no half reservation."""
    a = gov.set_limit("key", "k1", "", "tokens", "total", 1000)
    b = gov.set_limit("user", "u1", "", "requests", "total", 30)
    c = gov.set_limit("team", "t1", "", "tokens", "total", 1000)
    assert gov.reserve([CounterClaim(x.id, 0, x.max_value, 0) for x in (a, b, c)]) == [0, 0, 0]
    start = threading.Barrier(64)

    def one(i: int) -> bool:
        tokens = a if i % 2 == 0 else c
        claims = [CounterClaim(tokens.id, 0, 1000, 50), CounterClaim(b.id, 0, 30, 1)]
        start.wait()
        try:
            gov.reserve(claims if i % 2 == 0 else claims[::-1])
        except LimitBlocked:
            return False
        gov.adjust([(tokens.id, 0, -20)])  # settled: 30 of the 50 reserved tokens were used
        return True

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(one, range(64)))
    even = sum(ok for i, ok in enumerate(results) if i % 2 == 0)
    odd = sum(ok for i, ok in enumerate(results) if i % 2 == 1)
    assert 0 < even + odd <= 30
    assert gov.counter(b.id, 0) == even + odd
    assert gov.counter(a.id, 0) == 30 * even
    assert gov.counter(c.id, 0) == 30 * odd
