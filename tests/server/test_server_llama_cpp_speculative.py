"""Speculative decoding with a draft model, for real: the server deploys one GGUF on llama.cpp three
times (no speculation; a smaller draft GGUF of the same vocabulary; the model as its own draft),
on the prebuilt runtime and on a native build, and the greedy answers through the gateway are the
same token for token, while the speculative instances really drafted (llama-server's ``timings``).

Random weights: what the model says means nothing and is never asserted; only that the three
deployments say the same. The model drafting for itself proposes what the target would pick, so
its drafts are accepted: that exercises the verify-and-accept path, not only the drafting.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import Running, deploy_and_wait_running, fast_config, start_app

from gpustack_core.plugins import PluginHost
from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf
from gpustack_core.testing.sampling import deterministic
from gpustack_core.types import EngineInstallation

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(600)]

#: The target: 4 layers, n_embd 128. The draft: 1 layer, n_embd 64, other weights. Both have the
#: generator's vocabulary of 512 tokens, which depends on ``n_vocab`` only: llama.cpp's
#: compatibility check (same vocabulary type, special tokens and token texts) passes.
TARGET = TinyLlamaSpec(n_embd=128, n_layer=4, n_head=4, n_head_kv=4, n_ff=256, seed=11, name="spec-target")
DRAFT = TinyLlamaSpec(seed=12, name="spec-draft")
MAX_TOKENS = 48
DRAFT_TOKENS = 4


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    async for running in start_app(fast_config(tmp_path / "data"), host=PluginHost(environ={})):
        yield running


@pytest.fixture(params=["prebuilt", "native"])
def runtime(request: pytest.FixtureRequest) -> EngineInstallation:
    """The prebuilt xllamacpp runtime (always) and a native build (when cached, see conftest)."""
    name = "llama_cpp_installation" if request.param == "prebuilt" else "llama_cpp_native_installation"
    installation: EngineInstallation = request.getfixturevalue(name)
    return installation


def _deployment(name: str, model: Path, version: str, draft: Path | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "model": f"local:{model}",
        "engine": "llama.cpp",
        "engine_version": version,
        "context_length": 512,
        # one slot (--parallel 1), so that every request takes the same path through llama-server
        "performance": {"mode": "latency"},
    }
    if draft is not None:
        speculative = {
            "method": "draft_model",
            "draft_model": str(draft),
            "num_speculative_tokens": DRAFT_TOKENS,
        }
        body["performance"]["speculative"] = speculative
    return body


async def test_speculative_decoding_keeps_greedy_output_token_for_token(
    runtime: EngineInstallation, server: Running, tmp_path: Path
) -> None:
    target = write_llama_gguf(tmp_path / "target.gguf", TARGET)
    draft = write_llama_gguf(tmp_path / "draft.gguf", DRAFT)
    self_draft = Path(shutil.copy(target, tmp_path / "target-as-draft.gguf"))
    deployments = {
        "plain": _deployment("plain", target, runtime.version, None),
        "small-draft": _deployment("small-draft", target, runtime.version, draft),
        "self-draft": _deployment("self-draft", target, runtime.version, self_draft),
    }

    async def worker_ready() -> bool:
        items = (await server.api("GET", "/workers")).json()["items"]
        return any(w["state"] == "ready" for w in items)

    await server.wait_for(worker_ready, timeout=30)
    # the estimator counts the draft: its weights are in the claim the scheduler places
    evaluation = (await server.api("POST", "/deployment-evaluations", json=deployments["small-draft"])).json()
    assert evaluation["fits"], evaluation
    assert any("draft model" in note for note in evaluation["estimate"]["notes"]), evaluation["estimate"]
    cpu_claim = evaluation["placement"]["claim"]
    assert any(item["label"].startswith("draft model: ") for item in cpu_claim["host_items"]), cpu_claim

    await deploy_and_wait_running(server, list(deployments.values()), timeout=180)

    async def complete(name: str) -> dict[str, Any] | None:
        # llama-server's own fields: the token ids (return_tokens, shown under __verbose) and timings
        body = deterministic(
            {"model": name, "prompt": "Once upon a time", "max_tokens": MAX_TOKENS, "return_tokens": True}
        )
        r = await server.client.post(
            "/v1/completions", json={**body, "verbose": True}, headers=server.admin, timeout=120
        )
        assert r.status_code in (200, 503), r.text  # 503 until the gateway's route table has it
        return r.json() if r.status_code == 200 else None

    answers = {name: await server.wait_for(lambda n=name: complete(n), timeout=30) for name in deployments}
    tokens = {name: answer["__verbose"]["tokens"] for name, answer in answers.items()}
    timings = {name: answer["timings"] for name, answer in answers.items()}
    assert len(tokens["plain"]) == MAX_TOKENS
    assert tokens["small-draft"] == tokens["plain"]
    assert tokens["self-draft"] == tokens["plain"]
    assert {a["choices"][0]["text"] for a in answers.values()} == {answers["plain"]["choices"][0]["text"]}

    assert "draft_n" not in timings["plain"]
    for name in ("small-draft", "self-draft"):
        assert timings[name]["draft_n"] > 0, (name, timings[name])
        assert timings[name]["predicted_n"] == MAX_TOKENS
    # the model drafting for itself: its proposals are the target's own greedy picks
    assert timings["self-draft"]["draft_n_accepted"] > 0, timings["self-draft"]

    for name in deployments:
        assert (await server.api("DELETE", f"/deployments/{name}")).status_code == 202

    async def none_left() -> bool:
        return not (await server.api("GET", "/instances")).json()["items"]

    await server.wait_for(none_left, timeout=60)
