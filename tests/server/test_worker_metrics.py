"""A running worker serves its own metrics and its engines', relabelled per instance and model
(the series documented in ``gpustack_core.worker.metrics`` and docs/observability.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import Running, fast_config, start_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    async for running in start_app(fast_config(tmp_path / "data")):
        yield running


def _samples(text: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


async def test_a_worker_scrape_has_devices_engine_processes_and_engine_metrics(
    server: Running, tiny_model: Path
) -> None:
    body = {
        "name": "metered",
        "model": f"local:{tiny_model}",
        "engine": "fake",
        "replicas": 1,
        "extra_args": ["--openai"],
    }
    assert (await server.api("POST", "/deployments", json=body)).status_code == 201

    async def running() -> dict[str, Any] | None:
        items = (await server.api("GET", "/instances", params={"deployment": "metered"})).json()["items"]
        return items[0] if items and items[0]["state"] == "running" else None

    instance = await server.wait_for(running, timeout=60)
    chat = {"model": "metered", "messages": [{"role": "user", "content": "hi"}]}

    async def answered() -> bool:
        r = await server.client.post("/v1/chat/completions", json=chat, headers=server.admin)
        return r.status_code == 200

    await server.wait_for(answered, timeout=20)
    agent = server.app.state.embedded_worker
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{agent.api_port}/metrics")
    assert r.status_code == 200
    samples = _samples(r.text)
    memory = samples["gpustack_worker_device_memory_total_bytes"]
    assert memory
    assert all(s.labels["worker"] == "worker-a" and s.value > 0 for s in memory)
    labels = {"worker": "worker-a", "instance": instance["id"], "model": "metered"}
    (up,) = samples["gpustack_worker_engine_up"]
    assert up.labels == labels
    assert up.value == 1.0
    states = {s.labels["state"]: s.value for s in samples["gpustack_worker_engine_state"]}
    assert states["ready"] == 1.0
    assert sum(states.values()) == 1.0
    assert samples["gpustack_worker_engine_restarts"][0].value == 0
    assert samples["gpustack_worker_engine_scrape_ok"][0].value == 1.0
    (engine_requests,) = samples["fake_engine:requests_total"]
    assert engine_requests.labels == labels
    assert engine_requests.value >= 1


def test_engine_families_of_several_instances_merge_and_bad_texts_are_flagged() -> None:
    from gpustack_core.supervisor import ProcessStatus
    from gpustack_core.worker.metrics import EngineTarget, render_worker_metrics

    def target(iid: str) -> EngineTarget:
        status = ProcessStatus(instance_id=iid, state="ready", log_path="/dev/null")
        return EngineTarget(iid, "m", status, f"http://127.0.0.1/{iid}")

    a, b, bad = target("a"), target("b"), target("bad")
    text = '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="m"} 3\n'
    out = render_worker_metrics("w", (), [a, b, bad], {a: text, b: text, bad: "not { metrics"}).decode()
    assert out.count("# TYPE vllm:num_requests_running gauge") == 1
    running = _samples(out)["vllm:num_requests_running"]
    assert sorted(s.labels["instance"] for s in running) == ["a", "b"]
    scrape_ok = {s.labels["instance"]: s.value for s in _samples(out)["gpustack_worker_engine_scrape_ok"]}
    assert scrape_ok == {"a": 1.0, "b": 1.0, "bad": 0.0}
