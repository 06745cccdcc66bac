"""Acceptance with the real engine: serve (SQLite, or PostgreSQL / MariaDB when their URLs are set)
with the embedded worker -> deploy a tiny GGUF through the REST API on llama.cpp -> running ->
a chat completion through the gateway -> delete -> the llama-server process is gone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import openai
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import Running, deploy_and_wait_running, fast_config, serve_http, start_app

from gpustack_core.plugins import PluginHost
from gpustack_core.testing.sampling import DETERMINISTIC_SAMPLING, deterministic
from gpustack_core.types import EngineInstallation

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
async def server(tmp_path: Path, database_url: str | None) -> AsyncIterator[Running]:
    host = PluginHost(environ={})
    async for running in start_app(fast_config(tmp_path / "data", database_url), host=host):
        yield running


@pytest.fixture(params=["prebuilt", "native"])
def runtime(request: pytest.FixtureRequest) -> EngineInstallation:
    """The prebuilt xllamacpp runtime (always) and a native build (opt-in, see conftest)."""
    name = "llama_cpp_installation" if request.param == "prebuilt" else "llama_cpp_native_installation"
    installation: EngineInstallation = request.getfixturevalue(name)
    return installation


async def test_tiny_gguf_on_llama_cpp_end_to_end(
    runtime: EngineInstallation, server: Running, tiny_model: Path
) -> None:
    body = {
        "name": "tiny-llama",
        "model": f"local:{tiny_model}",
        "engine": "llama.cpp",
        "engine_version": runtime.version,
        "context_length": 512,
    }
    [instance] = await deploy_and_wait_running(server, [body], timeout=120)
    process = psutil.Process(instance["pid"])
    assert process.cmdline()[0] == runtime.executable
    assert str(tiny_model) in process.cmdline()

    chat = deterministic(
        {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    )

    async def answered() -> Any:
        # The gateway's route table follows the database within a moment; until then it answers 503.
        r = await server.client.post("/v1/chat/completions", json=chat, headers=server.admin, timeout=60)
        assert r.status_code in (200, 503), r.text
        return r if r.status_code == 200 else None

    r = await server.wait_for(answered, timeout=10)
    assert r.json()["usage"]["completion_tokens"] > 0

    assert (await server.api("DELETE", "/deployments/tiny-llama")).status_code == 202

    async def gone() -> bool:
        return (await server.api("GET", "/deployments/tiny-llama")).status_code == 404

    await server.wait_for(gone, timeout=60)
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE


def _openai_calls(base_url: str, key: str) -> dict[str, tuple[int, int]]:
    """Chat (plain and streamed), completions and embeddings with the official client and an API key."""
    usage: dict[str, tuple[int, int]] = {}
    with openai.OpenAI(api_key=key, base_url=base_url + "/v1", max_retries=0, timeout=120) as client:
        chat = client.chat.completions.create(
            model="tiny-chat",
            messages=[{"role": "user", "content": "Say hello"}],
            max_tokens=8,
            extra_body=DETERMINISTIC_SAMPLING,
        )
        assert chat.choices[0].message.role == "assistant"
        assert chat.usage is not None
        usage["chat"] = (chat.usage.prompt_tokens, chat.usage.completion_tokens)
        chunks = list(
            client.chat.completions.create(
                model="tiny-chat",
                messages=[{"role": "user", "content": "Count"}],
                max_tokens=8,
                stream=True,
                extra_body=DETERMINISTIC_SAMPLING,
            )
        )
        assert len(chunks) >= 2  # ignore_eos: never a lone end-of-sequence chunk
        assert all(c.object == "chat.completion.chunk" for c in chunks)
        assert all(c.usage is None for c in chunks), "the usage chunk the gateway asked for leaked"
        completion = client.completions.create(
            model="tiny-chat", prompt="abc", max_tokens=5, extra_body=DETERMINISTIC_SAMPLING
        )
        assert completion.usage is not None
        assert completion.usage.completion_tokens == 5
        usage["completion"] = (completion.usage.prompt_tokens, completion.usage.completion_tokens)
        embeddings = client.embeddings.create(model="tiny-embed", input=["hello", "tiny world"])
        assert len(embeddings.data) == 2
        assert len(embeddings.data[0].embedding) == 64  # n_embd of the tiny model
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(api_key="sk-wrong", base_url=base_url + "/v1", max_retries=0).models.list()
    return usage


@pytest.fixture
async def served(tmp_path: Path, database_url: str | None) -> AsyncIterator[Running]:
    """The app under uvicorn on a loopback port, as ``gpustack-core serve`` runs it."""
    async for running in serve_http(fast_config(tmp_path / "data", database_url)):
        yield running


async def test_openai_client_against_llama_cpp_deployed_by_the_server(
    runtime: EngineInstallation, served: Running, tmp_path: Path, tiny_model: Path
) -> None:
    """Issue 8's acceptance: the served app deploys llama.cpp, the openai client calls it with a key,
    usage lands in the usage API and ``/metrics`` parses and counts it. Issue 14's: on the prebuilt
    runtime and on a native build (each pinned: unpinned, a native build wins once installed)."""
    from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf

    server = served
    assert server.base_url is not None
    embed_model = write_llama_gguf(tmp_path / "tiny-embed.gguf", TinyLlamaSpec(seed=2, pooling="mean"))
    deployments = [
        {
            "name": "tiny-chat",
            "model": f"local:{tiny_model}",
            "engine": "llama.cpp",
            "engine_version": runtime.version,
            "context_length": 512,
        },
        {
            "name": "tiny-embed",
            "model": f"local:{embed_model}",
            "engine": "llama.cpp",
            "engine_version": runtime.version,
            "category": "embedding",
            "context_length": 512,
        },
    ]
    for instance in await deploy_and_wait_running(server, deployments, timeout=120):
        assert psutil.Process(instance["pid"]).cmdline()[0] == runtime.executable
    r = await server.api("POST", "/api-keys", json={"name": "app", "scopes": ["inference"]})
    assert r.status_code == 201, r.text
    key, key_id = r.json()["key"], r.json()["record"]["id"]

    async def routed() -> bool:
        # The gateway's route table follows the database within a moment.
        r = await server.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        return r.status_code == 200 and {"tiny-chat", "tiny-embed"} <= {m["id"] for m in r.json()["data"]}

    await server.wait_for(routed, timeout=30)
    answered = await anyio.to_thread.run_sync(_openai_calls, server.base_url, key)

    rows = (await server.api("GET", "/usage", params={"key_id": key_id})).json()["items"]
    by_model = {row["model"]: row for row in rows}
    assert set(by_model) == {"tiny-chat", "tiny-embed"}
    chat_row = by_model["tiny-chat"]
    assert chat_row["requests"] == 3  # chat, streamed chat, completion
    # the streamed request's tokens came from the usage chunk the gateway asked llama-server for
    streamed_prompt = chat_row["prompt_tokens"] - answered["chat"][0] - answered["completion"][0]
    streamed_completion = chat_row["completion_tokens"] - answered["chat"][1] - answered["completion"][1]
    assert streamed_prompt > 0
    assert streamed_completion > 0
    assert by_model["tiny-embed"]["requests"] == 1
    assert by_model["tiny-embed"]["prompt_tokens"] > 0

    metrics = await server.client.get("/metrics")
    assert metrics.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.text)
        for s in family.samples
    }
    assert samples[("gpustack_gateway_requests_total", (("model", "tiny-chat"), ("status", "200")))] == 3
    assert samples[("gpustack_gateway_requests_total", (("model", "tiny-embed"), ("status", "200")))] == 1
    assert samples[("gpustack_gateway_time_to_first_token_seconds_count", (("model", "tiny-chat"),))] == 1
    assert (
        samples[("gpustack_gateway_completion_tokens_total", (("model", "tiny-chat"),))]
        == chat_row["completion_tokens"]
    )
    assert samples[("gpustack_instances", (("deployment", "tiny-chat"), ("state", "running")))] == 1
    assert samples[("gpustack_instances", (("deployment", "tiny-embed"), ("state", "running")))] == 1
    # the embedded worker's heartbeat and its devices (the host CPU at least), from the last pass
    assert 0 <= samples[("gpustack_worker_heartbeat_age_seconds", (("worker", "worker-a"),))] < 30
    memory = {
        labels: value
        for (name, labels), value in samples.items()
        if name == "gpustack_device_memory_total_bytes"
    }
    assert memory, "no device memory gauge"
    assert all(dict(labels)["worker"] == "worker-a" and value > 0 for labels, value in memory.items())

    for name in ("tiny-chat", "tiny-embed"):
        assert (await server.api("DELETE", f"/deployments/{name}")).status_code == 202

    async def none_left() -> bool:
        return not (await server.api("GET", "/instances")).json()["items"]

    await server.wait_for(none_left, timeout=60)
