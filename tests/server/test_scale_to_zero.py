"""Scale to zero end to end with the embedded worker and the fake OpenAI engine (a real process): an
idle deployment is stopped, the next request is held while it starts, then served (not 503), with
its wait recorded; a request that cannot be held long enough gets 503 with Retry-After."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from server_helpers import Running, fast_config, start_app

from gpustack_core.gateway import gateway_of

pytestmark = pytest.mark.anyio


async def _instances(server: Running, deployment: str) -> list[dict[str, Any]]:
    r = await server.api("GET", "/instances", params={"deployment": deployment})
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_an_idle_deployment_stops_and_the_next_request_waits_for_it(
    tmp_path: Path, tiny_model: Path
) -> None:
    config = fast_config(tmp_path / "data", scale_to_zero_check_interval_s=0.2, cold_start_hold_timeout_s=60)
    server: Running
    async for server in start_app(config):
        body = {"name": "chat", "model": f"local:{tiny_model}", "engine": "fake", "extra_args": ["--openai"]}
        assert (await server.api("POST", "/deployments", json=body)).status_code == 201
        key = (await server.api("POST", "/api-keys", json={"name": "k"})).json()["key"]
        headers = {"Authorization": f"Bearer {key}"}

        async def running(server: Running = server) -> bool:
            items = await _instances(server, "chat")
            return bool(items) and items[0]["state"] == "running"

        await server.wait_for(running, what="the first replica running")
        r = await server.api("PUT", "/scale-to-zero/chat", json={"idle_timeout_s": 1.0})
        assert r.status_code == 200, r.text
        assert (
            await server.api("PUT", "/scale-to-zero/nope", json={"idle_timeout_s": 1.0})
        ).status_code == 404

        async def stopped(server: Running = server) -> bool:
            dep = (await server.api("GET", "/deployments/chat")).json()["deployment"]
            return dep["replicas"] == 0 and not await _instances(server, "chat")

        await server.wait_for(stopped, timeout=30, what="the idle deployment scaled to zero")
        chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "fake_tokens": 3}
        r = await server.client.post("/v1/chat/completions", json=chat, headers=headers, timeout=90)
        assert r.status_code == 200, r.text  # held while the replica started, then served
        assert r.json()["usage"]["completion_tokens"] == 3
        waited_ms = int(r.headers["x-gpustack-cold-start-ms"])
        assert waited_ms > 0
        metrics = gateway_of(server.app.router.routes[-1].app).metrics  # type: ignore[attr-defined]
        count = metrics.registry.get_sample_value(
            "gpustack_gateway_cold_start_wait_seconds_count", {"model": "chat"}
        )
        assert count == 1
        assert (await server.api("GET", "/deployments/chat")).json()["deployment"]["replicas"] == 1
        # served while running: no hold, no header
        r = await server.client.post("/v1/chat/completions", json=chat, headers=headers)
        assert r.status_code == 200
        assert "x-gpustack-cold-start-ms" not in r.headers
        assert (
            await server.api("PUT", "/scale-to-zero/chat", json={"idle_timeout_s": None})
        ).status_code == 200
        await anyio.sleep(1.5)
        assert (await server.api("GET", "/deployments/chat")).json()["deployment"][
            "replicas"
        ] == 1  # no policy: stays up


async def test_a_hold_is_bounded_by_its_timeout(tmp_path: Path, tiny_model: Path) -> None:
    # no worker: the woken deployment can never start, so the hold runs out
    config = fast_config(tmp_path / "data", embedded_worker=False, cold_start_hold_timeout_s=0.5)
    async for server in start_app(config):
        body = {"name": "chat", "model": f"local:{tiny_model}", "engine": "fake", "replicas": 0}
        assert (await server.api("POST", "/deployments", json=body)).status_code == 201
        assert (
            await server.api("PUT", "/scale-to-zero/chat", json={"idle_timeout_s": 60})
        ).status_code == 200
        key = (await server.api("POST", "/api-keys", json={"name": "k"})).json()["key"]
        chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
        r = await server.client.post(
            "/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "cold_start_timeout"
        assert r.headers["retry-after"] == "10"
        assert (await server.api("GET", "/deployments/chat")).json()["deployment"][
            "replicas"
        ] == 1  # it was woken
