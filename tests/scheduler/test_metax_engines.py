"""MetaX GPUs and the built-in engines: vLLM (MetaX's build) is placed there, SGLang is refused with why."""

from __future__ import annotations

from types import SimpleNamespace

from gpustack_engine_sglang import SglangEngine
from gpustack_engine_vllm import VllmEngine

from gpustack_core.scheduler.policies import EngineCompatibility
from gpustack_core.types import Candidate, ModelRef, PolicyContext


def _check(b: SimpleNamespace, engine: str, capabilities: object) -> str | None:
    worker = b.worker("mx1", b.device(0, 64, accelerator="metax", vendor="metax"))
    deployment = b.deployment(engine=engine, model=ModelRef(source="local", id="/models/qwen"))
    ctx = PolicyContext(
        deployment=deployment, workers=(worker,), placements=(), engine_capabilities=capabilities
    )
    rejection = EngineCompatibility().filter(
        Candidate(worker=worker, devices=worker.devices, claim=b.one_gpu(10)), ctx
    )
    return None if rejection is None else rejection.reason


def test_vllm_is_placed_on_a_metax_gpu(b: SimpleNamespace) -> None:
    assert _check(b, "vllm", VllmEngine().capabilities()) is None


def test_sglang_is_refused_on_a_metax_gpu_with_the_reason(b: SimpleNamespace) -> None:
    assert (
        _check(b, "sglang", SglangEngine().capabilities())
        == "mx1:metax:0 is metax; engine sglang runs on amd, nvidia"
    )
