"""Each built-in policy through the public contract: filter/score on Candidate and PolicyContext."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from gpustack_core.scheduler.policies import (
    Binpack,
    EngineCompatibility,
    GpuSelector,
    LabelSelector,
    ModelCached,
    ResourceFit,
    Spread,
    WorkerReady,
)
from gpustack_core.types import (
    Candidate,
    DeviceRef,
    EngineCapabilities,
    KVCacheExtension,
    LabelRequirement,
    ModelCategory,
    ModelFormat,
    PerformancePreset,
    PolicyContext,
    ResourceClaim,
    SpeculativeDecoding,
    WorkerInfo,
    WorkerState,
)


def _ctx(b: SimpleNamespace, workers: list[WorkerInfo], **dep: object) -> PolicyContext:
    caps = dep.pop("caps", None)
    placements = dep.pop("placements", ())
    return PolicyContext(
        deployment=b.deployment(**dep),
        workers=tuple(workers),
        placements=placements,
        engine_capabilities=caps,
    )


def _cand(worker: WorkerInfo, claim: ResourceClaim, *indices: int) -> Candidate:
    devices = tuple(d for d in worker.devices if d.index in indices)
    return Candidate(worker=worker, devices=devices, claim=claim)


def test_worker_ready_rejects_not_ready_and_names_state(b: SimpleNamespace) -> None:
    down = b.worker("w1", b.device(0, 80), state=WorkerState.UNREACHABLE)
    up = b.worker("w2", b.device(0, 80))
    ctx = _ctx(b, [down, up])
    rejection = WorkerReady().filter(_cand(down, b.one_gpu(10), 0), ctx)
    assert rejection is not None
    assert rejection.reason == "w1 is unreachable"
    assert rejection.candidate == "w1:cuda:0"
    assert WorkerReady().filter(_cand(up, b.one_gpu(10), 0), ctx) is None


@pytest.mark.parametrize(
    ("operator", "values", "labels", "accepted"),
    [
        ("equals", ("h200",), {"gpu": "h200"}, True),
        ("equals", ("h200",), {"gpu": "l40s"}, False),
        ("equals", ("h200",), {}, False),
        ("not_equals", ("h200",), {"gpu": "l40s"}, True),
        ("not_equals", ("h200",), {}, True),
        ("not_equals", ("h200",), {"gpu": "h200"}, False),
        ("in", ("h200", "a100"), {"gpu": "a100"}, True),
        ("in", ("h200", "a100"), {"gpu": "l40s"}, False),
        ("exists", (), {"gpu": ""}, True),
        ("exists", (), {"zone": "x"}, False),
    ],
)
def test_label_selector_operators(
    b: SimpleNamespace, operator: str, values: tuple[str, ...], labels: dict[str, str], accepted: bool
) -> None:
    worker = b.worker("w1", b.device(0, 80), labels=labels)
    req = LabelRequirement.model_validate({"key": "gpu", "operator": operator, "values": values})
    ctx = _ctx(b, [worker], label_selector=(req,))
    rejection = LabelSelector().filter(_cand(worker, b.one_gpu(1), 0), ctx)
    assert (rejection is None) is accepted
    if rejection is not None:
        assert "w1 has gpu" in rejection.reason


def test_label_selector_reason_shows_value(b: SimpleNamespace) -> None:
    worker = b.worker("w1", b.device(0, 80), labels={"zone": "eu-2"})
    req = LabelRequirement(key="zone", operator="equals", values=("eu-1",))
    rejection = LabelSelector().filter(
        _cand(worker, b.one_gpu(1), 0), _ctx(b, [worker], label_selector=(req,))
    )
    assert rejection is not None
    assert rejection.reason == "needs zone=eu-1; w1 has zone 'eu-2'"


def test_gpu_selector_explicit_devices(b: SimpleNamespace) -> None:
    w1 = b.worker("w1", b.device(0, 80), b.device(1, 80))
    w2 = b.worker("w2", b.device(0, 80))
    ctx = _ctx(b, [w1, w2], gpu_selector=(DeviceRef.parse("w1:cuda:1"),))
    policy = GpuSelector()
    assert policy.filter(_cand(w1, b.one_gpu(1), 1), ctx) is None
    outside = policy.filter(_cand(w1, b.one_gpu(1), 0), ctx)
    assert outside is not None
    assert outside.reason == "w1:cuda:0 is not in the GPU selector (w1:cuda:1)"
    other = policy.filter(_cand(w2, b.one_gpu(1), 0), ctx)
    assert other is not None
    assert other.reason.startswith("w2 has no device in the GPU selector")


def test_gpu_selector_gpus_per_replica(b: SimpleNamespace) -> None:
    worker = b.worker("w1", b.device(0, 80), b.device(1, 80))
    ctx = _ctx(b, [worker], gpus_per_replica=2)
    rejection = GpuSelector().filter(_cand(worker, b.one_gpu(1), 0), ctx)
    assert rejection is not None
    assert rejection.reason == "deployment asks for 2 GPU(s) per replica; this claim uses 1"
    assert GpuSelector().filter(_cand(worker, b.multi_gpu(10, 2), 0, 1), ctx) is None


def _caps(**fields: object) -> EngineCapabilities:
    data: dict[str, object] = {
        "formats": (ModelFormat.GGUF,),
        "categories": (ModelCategory.LLM,),
        "vendors": ("nvidia", "cpu"),
    }
    data.update(fields)
    return EngineCapabilities.model_validate(data)


def test_engine_compatibility_worker_engines(b: SimpleNamespace) -> None:
    vllm_only = b.worker("w1", b.device(0, 80), engines=("vllm",))
    unknown = b.worker("w2", b.device(0, 80))
    ctx = _ctx(b, [vllm_only, unknown])
    rejection = EngineCompatibility().filter(_cand(vllm_only, b.one_gpu(1), 0), ctx)
    assert rejection is not None
    assert rejection.reason == "w1 runs engines vllm; not llama.cpp"
    assert EngineCompatibility().filter(_cand(unknown, b.one_gpu(1), 0), ctx) is None


def test_engine_compatibility_vendor_and_strategies(b: SimpleNamespace) -> None:
    amd = b.worker("w1", b.device(0, 192, accelerator="rocm", vendor="amd"))
    nv = b.worker("w2", b.device(0, 80), b.device(1, 80))
    ctx = _ctx(b, [amd, nv], caps=_caps())
    rejection = EngineCompatibility().filter(_cand(amd, b.one_gpu(1), 0), ctx)
    assert rejection is not None
    assert rejection.reason == "w1:rocm:0 is amd; engine llama.cpp runs on cpu, nvidia"
    tp = EngineCompatibility().filter(_cand(nv, b.multi_gpu(10, 2), 0, 1), ctx)
    assert tp is not None
    assert tp.reason == "engine llama.cpp does not support tensor parallelism"
    ctx_tp = _ctx(b, [amd, nv], caps=_caps(tensor_parallel=True))
    assert EngineCompatibility().filter(_cand(nv, b.multi_gpu(10, 2), 0, 1), ctx_tp) is None
    offload = ResourceClaim(strategy="partial_offload", devices=b.one_gpu(5).devices, host_memory_bytes=b.GIB)
    no_offload = EngineCompatibility().filter(_cand(nv, offload, 0), ctx)
    assert no_offload is not None
    assert "cannot offload" in no_offload.reason


def test_engine_compatibility_refuses_a_preset_the_engine_does_not_claim(b: SimpleNamespace) -> None:
    nv = b.worker("w1", b.device(0, 80))
    ngram = PerformancePreset(speculative=SpeculativeDecoding(method="ngram"))
    refused = EngineCompatibility().filter(
        _cand(nv, b.one_gpu(1), 0), _ctx(b, [nv], caps=_caps(), performance=ngram)
    )
    assert refused is not None
    assert refused.reason == "engine llama.cpp cannot do speculative decoding with 'ngram' (it can: none)"
    able = _caps(speculative_methods=("ngram",))
    assert (
        EngineCompatibility().filter(_cand(nv, b.one_gpu(1), 0), _ctx(b, [nv], caps=able, performance=ngram))
        is None
    )
    hicache = PerformancePreset(kv_cache_extension=KVCacheExtension(kind="hicache", host_memory_bytes=b.GIB))
    no_ext = EngineCompatibility().filter(
        _cand(nv, b.one_gpu(1), 0), _ctx(b, [nv], caps=able, performance=hicache)
    )
    assert no_ext is not None
    assert "no 'hicache' KV-cache extension" in no_ext.reason
    latency = PerformancePreset(mode="latency")
    no_mode = EngineCompatibility().filter(
        _cand(nv, b.one_gpu(1), 0), _ctx(b, [nv], caps=able, performance=latency)
    )
    assert no_mode is not None
    assert "no 'latency' performance mode" in no_mode.reason
    balanced = PerformancePreset(mode="balanced")
    assert (
        EngineCompatibility().filter(
            _cand(nv, b.one_gpu(1), 0), _ctx(b, [nv], caps=_caps(), performance=balanced)
        )
        is None
    )


def test_resource_fit_counts_reserve_claims_and_foreign_use(b: SimpleNamespace) -> None:
    # 80 GiB device, 2 GiB reserved, 30 GiB reported used of which 20 GiB is our placement
    # (unknown split): free = 78 - max(30, 20) = 48 GiB.
    worker = b.worker("w1", b.device(0, 80, 30), reserved_device_memory_bytes=2 * b.GIB)
    ctx = _ctx(b, [worker], placements=(b.placement("other", 0, "w1", 0, 20),))
    assert ResourceFit().filter(_cand(worker, b.one_gpu(48), 0), ctx) is None
    rejection = ResourceFit().filter(_cand(worker, b.one_gpu(48.5), 0), ctx)
    assert rejection is not None
    assert rejection.reason == "needs 48.5 GiB on one GPU; w1:cuda:0 has 48.0 GiB free"


def test_resource_fit_claimed_but_not_loaded_still_counts(b: SimpleNamespace) -> None:
    # Our placement claims 60 GiB but the engine is still starting (reported use 5 GiB): 80-60 = 20 free.
    worker = b.worker("w1", b.device(0, 80, 5))
    ctx = _ctx(b, [worker], placements=(b.placement("other", 0, "w1", 0, 60),))
    rejection = ResourceFit().filter(_cand(worker, b.one_gpu(21), 0), ctx)
    assert rejection is not None
    assert "has 20.0 GiB free" in rejection.reason


def test_resource_fit_with_managed_accounting_subtracts_foreign_use(b: SimpleNamespace) -> None:
    # Reported 15 GiB: 5 GiB ours (engine still loading), 10 GiB foreign; we claimed 60.
    # free = 80 - 10 (foreign) - max(60 claimed, 5 managed) = 10 GiB.
    worker = b.worker("w1", b.device(0, 80, 15), managed_device_memory_used_bytes={"w1:cuda:0": 5 * b.GIB})
    ctx = _ctx(b, [worker], placements=(b.placement("other", 0, "w1", 0, 60),))
    assert ResourceFit().filter(_cand(worker, b.one_gpu(10), 0), ctx) is None
    rejection = ResourceFit().filter(_cand(worker, b.one_gpu(10.5), 0), ctx)
    assert rejection is not None
    assert "has 10.0 GiB free" in rejection.reason


def test_resource_fit_host_memory(b: SimpleNamespace) -> None:
    worker = b.worker(
        "w1", memory_total_bytes=64 * b.GIB, memory_used_bytes=20 * b.GIB, reserved_memory_bytes=4 * b.GIB
    )
    cpu = ResourceClaim(strategy="cpu_only", host_memory_bytes=41 * b.GIB)
    rejection = ResourceFit().filter(Candidate(worker=worker, claim=cpu), _ctx(b, [worker]))
    assert rejection is not None
    assert rejection.reason == "needs 41.0 GiB host memory; w1 has 40.0 GiB free"


def test_resource_fit_worker_without_gpu(b: SimpleNamespace) -> None:
    worker = b.worker("w1")
    rejection = ResourceFit().filter(Candidate(worker=worker, claim=b.one_gpu(8)), _ctx(b, [worker]))
    assert rejection is not None
    assert rejection.reason == "needs 8.0 GiB on one GPU; w1 has no GPU"


def test_model_cached_scores_workers_with_the_model(b: SimpleNamespace) -> None:
    cached = b.worker("w1", b.device(0, 80), cached_models=("local:/models/m.gguf",))
    cold = b.worker("w2", b.device(0, 80))
    ctx = _ctx(b, [cached, cold])
    assert ModelCached().score(_cand(cached, b.one_gpu(1), 0), ctx) == 100.0
    assert ModelCached().score(_cand(cold, b.one_gpu(1), 0), ctx) == 0.0


def test_binpack_prefers_fuller_devices_and_spread_emptier(b: SimpleNamespace) -> None:
    worker = b.worker("w1", b.device(0, 100, 50), b.device(1, 100, 0))
    claim = b.one_gpu(10)
    bin_ctx = _ctx(b, [worker], placement_strategy="binpack")
    spread_ctx = _ctx(b, [worker], placement_strategy="spread")
    assert Binpack().score(_cand(worker, claim, 0), bin_ctx) == pytest.approx(60.0)
    assert Binpack().score(_cand(worker, claim, 1), bin_ctx) == pytest.approx(10.0)
    assert Binpack().score(_cand(worker, claim, 0), spread_ctx) is None
    assert Spread().score(_cand(worker, claim, 0), spread_ctx) == pytest.approx(40.0)
    assert Spread().score(_cand(worker, claim, 1), spread_ctx) == pytest.approx(90.0)
    assert Spread().score(_cand(worker, claim, 1), bin_ctx) is None


def test_spread_penalises_workers_already_running_the_deployment(b: SimpleNamespace) -> None:
    worker = b.worker("w1", b.device(0, 100), b.device(1, 100))
    ctx = _ctx(b, [worker], placements=(b.placement("app", 0, "w1", 0, 10),))
    assert Spread().score(_cand(worker, b.one_gpu(10), 1), ctx) == pytest.approx(45.0)
