"""The server's gateway bridge keeps the database off each request's path: API keys are cached
briefly (revocations through this server apply at once), usage is written in batches that are
never lost to a failed write, a read of the usage API or a shutdown."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import anyio
import pytest
from server_helpers import Running, fast_config, start_app

from gpustack_core.gateway import UsageRecord
from gpustack_core.server import gateway_bridge
from gpustack_core.server.gateway_bridge import StoreKeyAuthenticator, StoreUsageSink
from gpustack_core.server.security import hash_secret, new_api_key
from gpustack_core.server.store import Store
from gpustack_core.server.store.database import make_engine
from gpustack_core.server.store.governance import GovernanceStore

pytestmark = pytest.mark.anyio

DAY = dt.date(2026, 11, 21)


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every database lookup the authenticator makes (the real one still runs)."""
    calls: list[str] = []
    real = gateway_bridge.authenticate_key

    def counting(store: Store, token: str, now: Any = None) -> Any:
        calls.append(token)
        return real(store, token, now)

    monkeypatch.setattr(gateway_bridge, "authenticate_key", counting)
    return calls


def _key(store: Store, expires_at: dt.datetime | None = None) -> tuple[str, str]:
    user = store.create_user(f"u-{new_api_key()[0]}", "x", "user")
    key_id, token = new_api_key()
    store.create_key(key_id, user.id, "k", "key", hash_secret(token), ["inference"], None, expires_at)
    return key_id, token


def _usage(model: str = "m", key_id: str | None = "k1", prompt: int = 2, completion: int = 3) -> UsageRecord:
    return UsageRecord("u1", key_id, model, DAY, prompt, completion, 1)


async def test_a_checked_key_is_served_from_the_cache_until_its_ttl(store: Store, lookups: list[str]) -> None:
    key_id, token = _key(store)
    auth = StoreKeyAuthenticator(ttl_s=0.3)
    auth.store = store
    first = await auth.authenticate(token)
    assert first is not None
    assert first.key_id == key_id
    assert await auth.authenticate(token) == first
    assert len(lookups) == 1
    assert await auth.authenticate(token + "x") is None  # a wrong token is never served from the cache
    assert await auth.authenticate(token + "x") is None
    assert len(lookups) == 3
    store.delete_key(key_id)  # revoked by another server sharing the database
    assert await auth.authenticate(token) == first  # still trusted within the TTL
    await anyio.sleep(0.35)
    assert await auth.authenticate(token) is None
    assert len(lookups) == 4


async def test_invalidate_and_key_expiry_bound_the_cache(store: Store, lookups: list[str]) -> None:
    auth = StoreKeyAuthenticator(ttl_s=60)
    auth.store = store
    key_id, token = _key(store)
    assert await auth.authenticate(token) is not None
    store.delete_key(key_id)
    auth.invalidate()
    assert await auth.authenticate(token) is None
    # a key that expires in 2 s is cached for at most those 2 s, whatever the TTL; whole seconds are
    # stored, so it expires 1-2 s from now
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    _, soon = _key(store, expires_at=now + dt.timedelta(seconds=2))
    assert await auth.authenticate(soon) is not None
    await anyio.sleep(2.1)
    assert await auth.authenticate(soon) is None
    uncached = StoreKeyAuthenticator(ttl_s=0)
    uncached.store = store
    _, token2 = _key(store)
    before = len(lookups)
    for _ in range(3):
        assert await uncached.authenticate(token2) is not None
    assert len(lookups) == before + 3


async def test_revoking_through_the_server_applies_to_the_gateway_at_once(tmp_path: Path) -> None:
    config = fast_config(tmp_path / "data", embedded_worker=False, auth_cache_ttl_s=3600)
    server: Running
    async for server in start_app(config):
        r = await server.api("POST", "/api-keys", json={"name": "app", "scopes": ["inference"]})
        key, key_id = r.json()["key"], r.json()["record"]["id"]
        headers = {"Authorization": f"Bearer {key}"}
        assert (await server.client.get("/v1/models", headers=headers)).status_code == 200
        assert (await server.api("DELETE", f"/api-keys/{key_id}")).status_code == 204
        assert (await server.client.get("/v1/models", headers=headers)).status_code == 401

        r = await server.api("POST", "/users", json={"username": "bob", "password": "pw-123456789"})
        user_id = r.json()["id"]
        r = await server.api(
            "POST", "/auth/login", token="", json={"username": "bob", "password": "pw-123456789"}
        )
        session = {"Authorization": f"Bearer {r.json()['token']}"}
        assert (await server.client.get("/v1/models", headers=session)).status_code == 200
        r = await server.api("PATCH", f"/users/{user_id}", json={"disabled": True})
        assert r.status_code == 200, r.text
        assert (await server.client.get("/v1/models", headers=session)).status_code == 401


async def test_usage_is_added_up_in_memory_and_written_on_flush(store: Store) -> None:
    sink = StoreUsageSink(flush_interval_s=60)
    sink.store = store
    for _ in range(3):
        await sink.record(_usage())
    await sink.record(_usage(model="other"))
    assert sink.pending == 2
    assert store.query_usage(10, 0)[1] == 0  # nothing written yet
    await sink.flush()
    assert sink.pending == 0
    rows = {r.model: r for r in store.query_usage(10, 0)[0]}
    assert (rows["m"].requests, rows["m"].prompt_tokens, rows["m"].completion_tokens) == (3, 6, 9)
    assert rows["other"].requests == 1
    immediate = StoreUsageSink(flush_interval_s=0)
    immediate.store = store
    await immediate.record(_usage(model="now"))
    assert immediate.pending == 0
    assert {r.model for r in store.query_usage(10, 0)[0]} == {"m", "other", "now"}


class _FlakyBatches:
    """A store whose first ``add_usage_batch`` fails: before writing, or after its commit reached
    the database (the answer lost, as when the session is killed during COMMIT)."""

    def __init__(self, store: Store, *, committed: bool) -> None:
        self.store = store
        self.committed = committed
        self.calls: list[str] = []

    def add_usage_batch(self, batch_id: str, counts: Any) -> bool:
        self.calls.append(batch_id)
        if len(self.calls) == 1:
            if self.committed:
                self.store.add_usage_batch(batch_id, counts)
            raise ConnectionError("Lost connection to server during query")
        return self.store.add_usage_batch(batch_id, counts)


def _day_and_hour_requests(store: Store) -> tuple[dict[str, int], dict[str, int]]:
    days: dict[str, int] = {}
    for row in store.query_usage(10, 0)[0]:
        days[row.model] = days.get(row.model, 0) + row.requests
    hours: dict[str, int] = {}
    for bucket in GovernanceStore(store.engine).usage_buckets("hour", ["model"]):
        assert bucket.model is not None
        hours[bucket.model] = hours.get(bucket.model, 0) + bucket.requests
    return days, hours


@pytest.mark.parametrize("committed", [False, True], ids=["failed-before-writing", "answer-lost"])
async def test_a_failed_batch_is_retried_under_its_id_and_counted_once(store: Store, committed: bool) -> None:
    flaky = _FlakyBatches(store, committed=committed)
    sink = StoreUsageSink(flush_interval_s=60)
    sink.store = flaky  # type: ignore[assignment]
    for model in ("a", "b", "c"):
        await sink.record(_usage(model=model))
    with pytest.raises(ConnectionError, match="Lost connection"):
        await sink.flush()
    assert sink.pending == 3  # kept whole, under its id
    await sink.record(_usage(model="b"))  # arrives while the failed batch waits: the next batch
    assert sink.pending == 4
    await sink.flush()
    assert sink.pending == 0
    assert flaky.calls[0] == flaky.calls[1] != flaky.calls[2]  # the retry reused the failed id
    expected = {"a": 1, "b": 2, "c": 1}
    assert _day_and_hour_requests(store) == (expected, expected)


async def test_the_shutdown_flush_tries_again_after_a_lost_answer(store: Store) -> None:
    flaky = _FlakyBatches(store, committed=True)
    sink = StoreUsageSink(flush_interval_s=60)
    sink.store = flaky  # type: ignore[assignment]
    await sink.record(_usage(model="last"))
    await sink.flush_at_exit()
    assert (len(flaky.calls), sink.pending) == (2, 0)
    assert _day_and_hour_requests(store) == ({"last": 1}, {"last": 1})


async def test_a_usage_batch_written_twice_under_one_id_is_added_once(store: Store) -> None:
    hour = dt.datetime(2026, 11, 21, 14)
    counts = {("u1", "k1", "m", DAY, hour): [10, 5, 1], ("u1", None, "m", DAY, hour): [1, 2, 3]}
    assert store.add_usage_batch("batch-1", counts) is True
    assert store.usage_batch_written("batch-1")
    assert store.add_usage_batch("batch-1", counts) is False
    assert store.add_usage_batch("batch-2", {("u1", "k1", "m", DAY, hour): [1, 1, 1]}) is True
    rows = store.query_usage(10, 0)[0]
    written = {(r.key_id, r.model): (r.prompt_tokens, r.completion_tokens, r.requests) for r in rows}
    assert written == {("k1", "m"): (11, 6, 2), (None, "m"): (1, 2, 3)}
    assert _day_and_hour_requests(store) == ({"m": 5}, {"m": 5})
    assert store.prune_usage_batches(dt.datetime(2000, 1, 1)) == 0
    assert store.prune_usage_batches(dt.datetime(2100, 1, 1)) == 2
    assert not store.usage_batch_written("batch-1")


async def test_the_usage_api_and_shutdown_write_pending_usage(tmp_path: Path) -> None:
    config = fast_config(tmp_path / "data", embedded_worker=False, usage_flush_interval_s=3600)
    async for server in start_app(config):
        bridge = server.app.state.gateway
        admin = (await server.api("GET", "/auth/me")).json()["user"]["id"]
        await bridge.usage.record(UsageRecord(admin, None, "m", DAY, 5, 7, 1))
        rows = (await server.api("GET", "/usage")).json()["items"]
        assert [(r["model"], r["requests"], r["completion_tokens"]) for r in rows] == [("m", 1, 7)]
        await bridge.usage.record(UsageRecord(admin, None, "late", DAY, 1, 1, 1))
        assert bridge.usage.pending == 1
    engine = make_engine(config.resolved_database_url)
    try:
        models = {r.model for r in Store(engine).query_usage(10, 0)[0]}
    finally:
        engine.dispose()
    assert models == {"m", "late"}  # the lifespan wrote the last record before the app stopped


async def test_the_servers_gateway_body_limit_is_configurable(tmp_path: Path) -> None:
    config = fast_config(tmp_path / "data", embedded_worker=False, gateway_max_body_bytes=200)
    async for server in start_app(config):
        r = await server.api("POST", "/api-keys", json={"name": "app", "scopes": ["inference"]})
        headers = {"Authorization": f"Bearer {r.json()['key']}"}
        small = {"model": "none", "messages": [{"role": "user", "content": "hi"}]}
        r = await server.client.post("/v1/chat/completions", json=small, headers=headers)
        assert r.status_code == 404  # within the limit: the gateway got as far as routing
        large = {**small, "messages": [{"role": "user", "content": "x" * 300}]}
        r = await server.client.post("/v1/chat/completions", json=large, headers=headers)
        assert r.status_code == 413
        assert "200 bytes" in r.json()["error"]["message"]
