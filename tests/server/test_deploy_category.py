"""``POST /deployments`` without a ``category`` takes the model's own (GGUF pooling type); an explicit
one wins; the llama.cpp plugin's refusal of ``--embeddings`` names the category to use."""

from __future__ import annotations

from pathlib import Path

import pytest
from server_helpers import fast_config, start_app

from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf

pytestmark = pytest.mark.anyio


async def test_category_detected_unless_given(tmp_path: Path) -> None:
    embedder = write_llama_gguf(tmp_path / "embed.gguf", TinyLlamaSpec(seed=2, pooling="mean"))
    reranker = write_llama_gguf(tmp_path / "rerank.gguf", TinyLlamaSpec(seed=3, pooling="rank"))
    chat = write_llama_gguf(tmp_path / "chat.gguf", TinyLlamaSpec(seed=4))
    async for server in start_app(fast_config(tmp_path / "data")):
        created = {}
        for name, model, extra in (
            ("embed", embedder, {}),
            ("rerank", reranker, {}),
            ("chat", chat, {}),
            ("forced", embedder, {"category": "llm"}),
        ):
            body = {"name": name, "model": f"local:{model}", "engine": "llama.cpp", "replicas": 0, **extra}
            r = await server.api("POST", "/deployments", json=body)
            assert r.status_code == 201, r.text
            created[name] = r.json()["spec"]["category"]
        assert created == {"embed": "embedding", "rerank": "rerank", "chat": "llm", "forced": "llm"}
        body = {
            "name": "bad",
            "model": f"local:{embedder}",
            "engine": "llama.cpp",
            "extra_args": ["--embeddings"],
        }
        r = await server.api("POST", "/deployments", json=body)
        assert r.status_code == 422
        assert "--category embedding" in r.text
