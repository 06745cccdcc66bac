"""Quotas, rate limits and fallbacks through the gateway on the server's store-backed pieces, with
fake engine processes: 64 concurrent streams against one key's token budget (in process on every
database, and two gateway processes on one PostgreSQL), RPM/TPM windows, fallback on a killed engine."""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
from governed_gateway import Process, fake_engines, governed_gateway, in_process_client, start_process
from server_helpers import POSTGRES_ENV, _fresh_database

from gpustack_core.gateway import estimate_tokens
from gpustack_core.server.security import hash_secret, new_api_key
from gpustack_core.server.store import Store, migrate
from gpustack_core.server.store import schema as t
from gpustack_core.server.store.database import make_engine
from gpustack_core.server.store.governance import GovernanceStore, window_of

pytestmark = pytest.mark.anyio

MODEL = "chat"
PROMPT = " ".join(["word"] * 200)  # the fake engine counts 200 prompt tokens
NOW = 1_800_000_030.0  # a fixed clock: 30 s into a minute


def _body(**extra: Any) -> bytes:
    obj = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "max_tokens": 8,
        "fake_tokens": 8,
        "fake_delay_s": 0.02,
        **extra,
    }
    return json.dumps(obj).encode()


def _estimate(body: bytes) -> int:
    return estimate_tokens(json.loads(body), len(body))


def _key(store: Store, name: str = "app") -> tuple[str, str, str]:
    """A user with an inference key: (user id, key id, token)."""
    user = store.create_user(f"{name}-{new_api_key()[0][:6]}", "x", "user")
    key_id, token = new_api_key()
    store.create_key(key_id, user.id, name, "key", hash_secret(token), ["inference"], None, None)
    return user.id, key_id, token


@pytest.fixture
def engines() -> Iterator[dict[str, Process]]:
    yield from fake_engines(["primary", "backup"])


async def _fire(clients: list[httpx.AsyncClient], token: str, body: bytes, n: int) -> list[httpx.Response]:
    out: list[httpx.Response] = []
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}

    async def one(i: int) -> None:
        out.append(
            await clients[i % len(clients)].post("/v1/chat/completions", content=body, headers=headers)
        )

    async with anyio.create_task_group() as group:
        for i in range(n):
            group.start_soon(one, i)
    return out


def _check_budget(
    store: Store, responses: list[httpx.Response], key_id: str, budget: int, limit_id: str
) -> None:
    """The acceptance: spent <= budget, a usage row for every completed request, 429s with headers,
    and the counter equal to what was spent (every reservation settled exactly)."""
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(ok) + len(refused) == len(responses), {r.status_code for r in responses}
    assert ok
    assert refused
    for r in ok:
        assert "data: [DONE]" in r.text
        assert '"error"' not in r.text
        assert r.headers["x-ratelimit-limit-tokens"] == str(budget)
        assert int(r.headers["x-ratelimit-remaining-tokens"]) >= 0
        assert r.headers["x-ratelimit-reset-tokens"]
    for r in refused:
        assert r.json()["error"]["code"] == "insufficient_quota"
        assert 1 <= int(r.headers["retry-after"]) <= 86400
        assert r.headers["x-ratelimit-limit-tokens"] == str(budget)
        assert r.headers["x-ratelimit-remaining-tokens"] == "0"
    with store.engine.connect() as c:
        rows = c.execute(sa.select(t.usage).where(t.usage.c.key_id == key_id)).fetchall()
    assert sum(r.requests for r in rows) == len(ok)
    spent = sum(r.prompt_tokens + r.completion_tokens for r in rows)
    assert spent % len(ok) == 0
    assert spent // len(ok) > 200
    assert spent <= budget
    start, _ = window_of("day", time.time())
    assert GovernanceStore(store.engine).counter(limit_id, start) == spent


async def test_64_concurrent_streams_never_spend_past_a_key_budget(
    store: Store, engines: dict[str, Process]
) -> None:
    _, key_id, token = _key(store)
    body = _body()
    budget = _estimate(body) * 10 + 100  # ten reservations fit at once
    lim = GovernanceStore(store.engine).set_limit("key", key_id, "", "tokens", "day", budget)
    governed = governed_gateway(store, {MODEL: engines["primary"].url})
    async with in_process_client(governed) as client:
        responses = await _fire([client], token, body, 64)
    _check_budget(store, responses, key_id, budget, lim.id)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"{POSTGRES_ENV} not set")
    yield from _fresh_database(os.environ[POSTGRES_ENV])


async def test_two_gateway_processes_on_one_postgresql_share_the_budget(
    postgres_url: str, engines: dict[str, Process]
) -> None:
    engine = make_engine(postgres_url)
    migrate.upgrade(engine)
    store = Store(engine)
    _, key_id, token = _key(store)
    body = _body()
    budget = _estimate(body) * 10 + 100
    lim = GovernanceStore(engine).set_limit("key", key_id, "", "tokens", "day", budget)
    script = str(Path(__file__).resolve().parent / "governed_gateway.py")
    argv = [sys.executable, script, postgres_url, f"{MODEL}={engines['primary'].url}"]
    gateways = [start_process(argv), start_process(argv)]
    try:
        async with (
            httpx.AsyncClient(base_url=gateways[0].url, timeout=60) as a,
            httpx.AsyncClient(base_url=gateways[1].url, timeout=60) as b,
        ):
            responses = await _fire([a, b], token, body, 64)
        _check_budget(store, responses, key_id, budget, lim.id)
    finally:
        for g in gateways:
            g.stop()
        engine.dispose()


async def test_rpm_and_tpm_windows_hold_to_one_request(store: Store, engines: dict[str, Process]) -> None:
    clock = [NOW]
    user_id, key_id, token = _key(store)
    gov = GovernanceStore(store.engine)
    rpm = gov.set_limit("key", key_id, "", "requests", "minute", 3)
    governed = governed_gateway(store, {MODEL: engines["primary"].url}, clock=lambda: clock[0])
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    body = _body(stream=False)
    async with in_process_client(governed) as client:
        for left in (2, 1, 0):
            r = await client.post("/v1/chat/completions", content=body, headers=headers)
            assert r.status_code == 200, r.text
            assert r.headers["x-ratelimit-limit-requests"] == "3"
            assert r.headers["x-ratelimit-remaining-requests"] == str(left)
            assert r.headers["x-ratelimit-reset-requests"] == "30s"
        r = await client.post("/v1/chat/completions", content=body, headers=headers)
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert "3 requests per minute" in r.json()["error"]["message"]
        assert r.headers["retry-after"] == "30"
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        clock[0] += 30  # the next minute
        assert (await client.post("/v1/chat/completions", content=body, headers=headers)).status_code == 200
        gov.delete_limit(rpm.id)

        # TPM on the user: room for exactly two requests' reservations; each settles to what it used
        estimate = _estimate(body)
        tpm = gov.set_limit("user", user_id, MODEL, "tokens", "minute", 2 * estimate)
        clock[0] += 60  # the start of a minute: 60 s left in its window
        for _ in range(2):
            r = await client.post("/v1/chat/completions", content=body, headers=headers)
            assert r.status_code == 200, r.text
        used = r.json()["usage"]["total_tokens"]
        window = window_of("minute", clock[0])[0]
        assert gov.counter(tpm.id, window) == 2 * used  # each reservation settled to what it used
        # a third reservation fits exactly when 2*used + estimate <= 2*estimate
        third = await client.post("/v1/chat/completions", content=body, headers=headers)
        fits = 2 * used + estimate <= 2 * estimate
        assert third.status_code == (200 if fits else 429)
        assert third.headers["x-ratelimit-limit-tokens"] == str(2 * estimate)
        remaining = 2 * estimate - 2 * used - estimate if fits else 0
        assert third.headers["x-ratelimit-remaining-tokens"] == str(remaining)
        before = gov.counter(tpm.id, window)
        big = _body(stream=False, max_tokens=2 * estimate)  # could never fit: refused, nothing counted
        r = await client.post("/v1/chat/completions", content=big, headers=headers)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "60"
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert gov.counter(tpm.id, window) == before


async def test_a_killed_primary_falls_back_and_the_answer_says_who_served(
    store: Store, engines: dict[str, Process]
) -> None:
    _, key_id, token = _key(store)
    GovernanceStore(store.engine).set_fallbacks(MODEL, ["small"])
    governed = governed_gateway(store, {MODEL: engines["primary"].url, "small": engines["backup"].url})
    engines["primary"].stop()
    headers = {"Authorization": f"Bearer {token}"}
    async with in_process_client(governed) as client:
        for stream in (False, True):
            r = await client.post(
                "/v1/chat/completions",
                content=_body(stream=stream),
                headers={**headers, "content-type": "application/json"},
            )
            assert r.status_code == 200, r.text
            if stream:
                first = json.loads(r.text.split("data: ", 2)[1].split("\n", 1)[0])
                assert first["model"] == "small"
            else:
                assert r.json()["model"] == "small"
        governed.routes.remove_instance(MODEL, f"{MODEL}-0")  # no instance at all: straight to the fallback
        r = await client.post("/v1/chat/completions", content=_body(stream=False), headers=headers)
        assert r.status_code == 200
        assert r.json()["model"] == "small"
    value = governed.registry.get_sample_value
    assert (
        value(
            "gpustack_gateway_fallbacks_total",
            {"model": MODEL, "fallback": "small", "reason": "upstream_unreachable"},
        )
        == 2
    )
    assert (
        value(
            "gpustack_gateway_fallbacks_total",
            {"model": MODEL, "fallback": "small", "reason": "no_running_instance"},
        )
        == 1
    )
    with store.engine.connect() as c:
        models = {r.model for r in c.execute(sa.select(t.usage).where(t.usage.c.key_id == key_id))}
    assert models == {"small"}


class _Failing(http.server.BaseHTTPRequestHandler):
    """An engine that answers every request with 500 (as an engine whose model crashed)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b'{"error": {"message": "model crashed", "type": "server_error"}}'
        self.send_response(500)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


async def test_an_engine_5xx_falls_back_before_the_first_byte(
    store: Store, engines: dict[str, Process]
) -> None:
    _, _, token = _key(store)
    GovernanceStore(store.engine).set_fallbacks(MODEL, ["small"])
    failing = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=failing.serve_forever, daemon=True)
    thread.start()
    try:
        primary = f"http://127.0.0.1:{failing.server_address[1]}"
        governed = governed_gateway(store, {MODEL: primary, "small": engines["backup"].url})
        headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
        async with in_process_client(governed) as client:
            r = await client.post("/v1/chat/completions", content=_body(stream=False), headers=headers)
            assert r.status_code == 200, r.text
            assert r.json()["model"] == "small"
            GovernanceStore(store.engine).set_fallbacks(MODEL, [])
            governed.fallbacks.refresh(store)
            r = await client.post("/v1/chat/completions", content=_body(stream=False), headers=headers)
            assert r.status_code == 500  # no fallback left: the engine's own answer stands
        sample = governed.registry.get_sample_value(
            "gpustack_gateway_fallbacks_total",
            {"model": MODEL, "fallback": "small", "reason": "upstream_5xx"},
        )
        assert sample == 1
    finally:
        failing.shutdown()
        failing.server_close()
        thread.join(timeout=10)
