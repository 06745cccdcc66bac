"""A real engine end to end: llama.cpp's server at the plugin's default version (the prebuilt
xllamacpp runtime), serving a tiny random GGUF through the llama.cpp plugin and the supervisor."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import anyio
import httpx
import pytest
from gpustack_engine_llama_cpp import LlamaCppEngine

from gpustack_core.supervisor import RestartPolicy, Supervisor
from gpustack_core.testing.engines import DeviceSetup, EngineConformanceSuite
from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf
from gpustack_core.types import EngineInstallation, ModelCategory

# The first run on a machine pip-installs the prebuilt runtime (seconds; a minute on a slow network).
pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(600)]


async def test_llama_server_end_to_end(llama_cpp_installation: EngineInstallation, tmp_path: Path) -> None:
    engine = LlamaCppEngine()
    assert Path(llama_cpp_installation.executable).is_file()
    assert llama_cpp_installation.version == engine.default_version()
    model = str(write_llama_gguf(tmp_path / "tiny.gguf", TinyLlamaSpec(seed=1)))
    embedder = str(write_llama_gguf(tmp_path / "tiny-embed.gguf", TinyLlamaSpec(seed=2, pooling="mean")))
    helper = EngineConformanceSuite()
    chat_request = helper.make_request(llama_cpp_installation, ModelCategory.LLM, (model,), DeviceSetup.cpu())
    embed_request = helper.make_request(
        llama_cpp_installation, ModelCategory.EMBEDDING, (embedder,), DeviceSetup.cpu()
    )
    chat_spec = engine.launch_spec(chat_request)
    embed_spec = engine.launch_spec(embed_request)
    assert "--embeddings" in embed_spec.argv
    assert "--embeddings" not in chat_spec.argv
    policy = RestartPolicy(initial_backoff_s=0.5, max_backoff_s=2.0, health_interval_s=1.0)
    async with Supervisor(tmp_path / "state", tmp_path / "logs", policy) as sup:
        await sup.start("chat", chat_spec)
        await sup.start("embed", embed_spec)
        await sup.wait_ready("chat", timeout_s=120)
        await sup.wait_ready("embed", timeout_s=120)
        chat_base = f"http://127.0.0.1:{chat_spec.port}"
        embed_base = f"http://127.0.0.1:{embed_spec.port}"
        async with httpx.AsyncClient(timeout=60) as client:
            health = await client.get(f"{chat_base}/health")
            assert health.status_code == 200
            messages = [{"role": "user", "content": "Say hello"}]
            body = {"model": chat_spec.served_model_name, "messages": messages, "max_tokens": 12}
            chat = (await client.post(f"{chat_base}/v1/chat/completions", json=body)).json()
            assert chat["object"] == "chat.completion"
            assert chat["usage"]["completion_tokens"] > 0
            streamed: list[dict[str, object]] = []
            async with client.stream(
                "POST", f"{chat_base}/v1/chat/completions", json={**body, "stream": True}
            ) as s:
                async for line in s.aiter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        streamed.append(json.loads(line[6:]))
            assert len(streamed) >= 2
            assert all(chunk["object"] == "chat.completion.chunk" for chunk in streamed)
            completion = await client.post(
                f"{chat_base}/v1/completions",
                json={"model": chat_spec.served_model_name, "prompt": "abc", "max_tokens": 5},
            )
            assert completion.status_code == 200
            assert completion.json()["usage"]["completion_tokens"] > 0
            embeddings = await client.post(
                f"{embed_base}/v1/embeddings",
                json={"model": embed_spec.served_model_name, "input": ["hello", "tiny world"]},
            )
            assert embeddings.status_code == 200, embeddings.text
            vectors = [item["embedding"] for item in embeddings.json()["data"]]
            assert len(vectors) == 2
            assert len(vectors[0]) == 64  # n_embd of the tiny model
            assert vectors[0] != vectors[1]

            first = sup.status("chat")
            assert first.pid is not None
            os.kill(first.pid, signal.SIGKILL)
            with anyio.fail_after(120):
                while not (sup.status("chat").restarts == 1 and sup.status("chat").state == "ready"):
                    await anyio.sleep(0.1)
            again = sup.status("chat")
            assert again.pid != first.pid
            assert again.last_exit_code == -signal.SIGKILL
            retry = (await client.post(f"{chat_base}/v1/chat/completions", json=body)).json()
            assert retry["choices"][0]["message"]["role"] == "assistant"
        assert "start #2" in sup.log_tail("chat", 200_000)
