"""Database sessions killed under load (issue #20): every request still succeeds and the usage
count stays exact (``terminate_database_connections`` from the fault harness)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from server_helpers import MYSQL_ENV, POSTGRES_ENV, Running, _fresh_database, fast_config, start_app

from gpustack_core.testing.netns import terminate_database_connections

pytestmark = pytest.mark.anyio

REQUESTS = 60


def _db(env: str, name: str) -> Any:
    return pytest.param(
        env, id=name, marks=pytest.mark.skipif(not os.environ.get(env), reason=f"{env} not set")
    )


@pytest.fixture(params=[_db(POSTGRES_ENV, "postgresql"), _db(MYSQL_ENV, "mysql")])
def server_database(request: pytest.FixtureRequest) -> Any:
    yield from _fresh_database(os.environ[request.param])


@pytest.fixture
async def server(tmp_path: Path, server_database: str) -> AsyncIterator[Running]:
    config = fast_config(tmp_path / "data", server_database, auth_cache_ttl_s=0, usage_flush_interval_s=0.2)
    async for running in start_app(config):
        yield running


async def test_killed_database_sessions_cause_no_errors_and_no_lost_usage(
    server: Running, server_database: str, tiny_model: Path
) -> None:
    body = {
        "name": "busy",
        "model": f"local:{tiny_model}",
        "engine": "fake",
        "replicas": 1,
        "extra_args": ["--openai"],
    }
    assert (await server.api("POST", "/deployments", json=body)).status_code == 201
    r = await server.api("POST", "/api-keys", json={"name": "load", "scopes": ["inference"]})
    headers = {"Authorization": f"Bearer {r.json()['key']}"}
    chat = {"model": "busy", "messages": [{"role": "user", "content": "hi"}]}

    async def serving() -> bool:
        return (
            await server.client.post("/v1/chat/completions", json=chat, headers=headers)
        ).status_code == 200

    await server.wait_for(serving, timeout=60)
    await server.api("GET", "/usage")  # the warm-up request's usage is written before we count
    before = (await server.api("GET", "/usage", params={"model": "busy"})).json()
    start = sum(row["requests"] for row in before["items"])

    statuses: list[int] = []
    killed = 0

    async def client() -> None:
        for _ in range(REQUESTS // 6):
            r = await server.client.post("/v1/chat/completions", json=chat, headers=headers)
            statuses.append(r.status_code)

    async def killer() -> None:
        nonlocal killed
        while len(statuses) < REQUESTS:
            killed += await anyio.to_thread.run_sync(terminate_database_connections, server_database)
            await anyio.sleep(0.1)

    async with anyio.create_task_group() as group:
        group.start_soon(killer)
        async with anyio.create_task_group() as clients:
            for _ in range(6):
                clients.start_soon(client)
    assert killed > 0
    assert statuses == [200] * REQUESTS
    after = (await server.api("GET", "/usage", params={"model": "busy"})).json()
    assert sum(row["requests"] for row in after["items"]) - start == REQUESTS
