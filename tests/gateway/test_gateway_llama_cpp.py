"""The gateway in front of a real llama.cpp llama-server (tiny random GGUF), driven by the openai client.

The engine is started the way a worker starts it: the llama.cpp plugin's launch spec, run by the
supervisor, at the plugin's default version: the prebuilt xllamacpp runtime (pip-installed on the
first run on a machine, in seconds).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpustack_core.gateway import ModelEntry, Upstream
from gpustack_core.types import EngineInstallation, ModelCategory

from .conftest import API_KEY, MODEL, GatewayServer

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(600)]

EMBED_MODEL = "tiny-embed"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _openai_checks(base_url: str) -> dict[str, object]:
    """Chat (plain and streamed), completions and embeddings through the gateway."""
    out: dict[str, object] = {}
    with openai.OpenAI(api_key=API_KEY, base_url=base_url + "/v1", max_retries=0, timeout=120) as c:
        chat = c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Say hello"}], max_tokens=8
        )
        assert chat.choices[0].message.role == "assistant"
        assert chat.usage is not None
        out["chat_usage"] = (chat.usage.prompt_tokens, chat.usage.completion_tokens)
        chunks = list(
            c.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Count"}], max_tokens=8, stream=True
            )
        )
        assert len(chunks) >= 2
        assert all(ch.object == "chat.completion.chunk" for ch in chunks)
        assert all(ch.usage is None for ch in chunks), "the usage chunk the gateway asked for leaked"
        comp = c.completions.create(model=MODEL, prompt="abc", max_tokens=5)
        assert comp.usage is not None
        out["completion_usage"] = (comp.usage.prompt_tokens, comp.usage.completion_tokens)
        emb = c.embeddings.create(model=EMBED_MODEL, input=["hello", "tiny world"])
        assert len(emb.data) == 2
        assert len(emb.data[0].embedding) == 64  # n_embd of the tiny model
    return out


async def test_openai_client_through_gateway_to_llama_server(  # type: ignore[no-untyped-def]
    llama_cpp_installation: EngineInstallation, gateway: GatewayServer, tmp_path: Path
) -> None:
    from gpustack_engine_llama_cpp import LlamaCppEngine

    from gpustack_core.supervisor import RestartPolicy, Supervisor
    from gpustack_core.testing.engines import DeviceSetup, EngineConformanceSuite
    from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf

    engine = LlamaCppEngine()
    helper = EngineConformanceSuite()
    chat_model = str(write_llama_gguf(tmp_path / "tiny.gguf", TinyLlamaSpec(seed=1)))
    embed_model = str(write_llama_gguf(tmp_path / "tiny-embed.gguf", TinyLlamaSpec(seed=2, pooling="mean")))
    chat_spec = engine.launch_spec(
        helper.make_request(llama_cpp_installation, ModelCategory.LLM, (chat_model,), DeviceSetup.cpu())
    )
    embed_spec = engine.launch_spec(
        helper.make_request(
            llama_cpp_installation, ModelCategory.EMBEDDING, (embed_model,), DeviceSetup.cpu()
        )
    )
    gateway.routes.add_model(ModelEntry(EMBED_MODEL, "gpustack", 1_700_000_002, "embedding"))
    async with Supervisor(tmp_path / "state", tmp_path / "logs", RestartPolicy()) as sup:
        await sup.start("chat", chat_spec)
        await sup.start("embed", embed_spec)
        await sup.wait_ready("chat", timeout_s=120)
        await sup.wait_ready("embed", timeout_s=120)
        gateway.routes.set_instance(
            MODEL, Upstream("chat", f"http://127.0.0.1:{chat_spec.port}", chat_spec.served_model_name, MODEL)
        )
        gateway.routes.set_instance(
            EMBED_MODEL,
            Upstream(
                "embed", f"http://127.0.0.1:{embed_spec.port}", embed_spec.served_model_name, EMBED_MODEL
            ),
        )
        result = await anyio.to_thread.run_sync(_openai_checks, gateway.base_url)
        metrics_text = await anyio.to_thread.run_sync(lambda: httpx.get(gateway.base_url + "/metrics").text)

    records = gateway.usage.records
    assert [r.model for r in records] == [MODEL, MODEL, MODEL, EMBED_MODEL]
    chat_rec, stream_rec, comp_rec, emb_rec = records
    assert (chat_rec.prompt_tokens, chat_rec.completion_tokens) == result["chat_usage"]
    assert (comp_rec.prompt_tokens, comp_rec.completion_tokens) == result["completion_usage"]
    # the streamed request's usage came from the final usage chunk the gateway asked llama-server for
    assert stream_rec.prompt_tokens > 0
    assert stream_rec.completion_tokens > 0
    assert emb_rec.prompt_tokens > 0
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(metrics_text)
        for s in fam.samples
    }
    assert samples[("gpustack_gateway_requests_total", (("model", MODEL), ("status", "200")))] == 3
    assert samples[("gpustack_gateway_time_to_first_token_seconds_count", (("model", MODEL),))] == 1
    completion_total = sum(r.completion_tokens for r in records)
    assert samples[("gpustack_gateway_completion_tokens_total", (("model", MODEL),))] == completion_total
