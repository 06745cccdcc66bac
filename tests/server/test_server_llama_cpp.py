"""Acceptance with the real engine: serve (SQLite, or PostgreSQL / MariaDB when their URLs are set)
with the embedded worker -> deploy a tiny GGUF through the REST API on llama.cpp -> running ->
a chat completion through the gateway -> delete -> the llama-server process is gone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from server_helpers import Running, fast_config, start_app

from gpustack_core.engines import default_engine_options, ensure_installed
from gpustack_core.plugins import PluginHost

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture(scope="module")
def llama_cpp_built() -> str:
    """The llama.cpp plugin's default version, from the shared cache (built once if missing)."""
    from gpustack_engine_llama_cpp import LlamaCppEngine

    return ensure_installed(LlamaCppEngine(), None, default_engine_options()).executable


@pytest.fixture
async def server(tmp_path: Path, database_url: str | None, llama_cpp_built: str) -> AsyncIterator[Running]:
    host = PluginHost(environ={})
    async for running in start_app(fast_config(tmp_path / "data", database_url), host=host):
        yield running


async def test_tiny_gguf_on_llama_cpp_end_to_end(server: Running, tiny_model: Path) -> None:
    body = {
        "name": "tiny-llama",
        "model": f"local:{tiny_model}",
        "engine": "llama.cpp",
        "context_length": 512,
    }
    r = await server.api("POST", "/deployments", json=body)
    assert r.status_code == 201, r.text

    async def running() -> dict[str, Any] | None:
        items = (await server.api("GET", "/instances", params={"deployment": "tiny-llama"})).json()["items"]
        if items and items[0]["state"] == "error":
            pytest.fail(f"instance failed: {items[0]['message']}")
        return items[0] if items and items[0]["state"] == "running" else None

    instance = await server.wait_for(running, timeout=120)
    process = psutil.Process(instance["pid"])
    assert "llama-server" in " ".join(process.cmdline())

    chat = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

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
