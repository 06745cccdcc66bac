"""vLLM/SGLang estimates against startup figures the engines printed in public threads.

Each case of ``fixtures/engine_logs.json`` quotes the log lines and links the thread; the
estimator gets the same model (config.json fixture), GPU memory, TP size, memory fraction and
profiled batch. Tolerances: weights within 3% (config-derived parameter counts; the engine adds
small buffers such as the RoPE cache), KV capacity within 10% (activation peak and non-torch
memory are profiled quantities that move between engine releases, GPUs and interconnects; see
docs/benchmarks/estimation-engines.md).
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import estimation_engines as bench
from gpustack_core.errors import EstimationError
from gpustack_core.estimate import EstimateOptions, VllmEstimator

GIB = 2**30
CASES = bench.load_cases()
HELD = [c for c in CASES if c.get("tolerance") is not None]


def test_every_case_names_its_source_and_configuration() -> None:
    assert len(HELD) >= 3
    assert {c["engine"] for c in HELD} == {"vllm", "sglang"}
    for case in CASES:
        assert case["source"].startswith("https://github.com/"), case["id"]
        assert case["log"], case["id"]
        assert (bench.FIXTURES / f"{case['model']}.config.json").is_file(), case["id"]
        assert "kv_gib" in case["logged"] or "kv_tokens" in case["logged"], case["id"]
        if case.get("tolerance") is None:
            assert case["outlier"], f"{case['id']}: an outlier says why it is not held to a tolerance"


@pytest.mark.parametrize("case", HELD, ids=[c["id"] for c in HELD])
def test_kv_capacity_matches_the_log(case: dict[str, Any]) -> None:
    result = bench.compare(case)
    tolerance = case["tolerance"]["kv"]
    assert abs(result.kv_error()) <= tolerance, (
        f"{case['id']}: KV capacity {result.capacity.tokens} tokens / {result.kv_gib:.2f} GiB "
        f"against logged {case['logged']} ({result.kv_error() * 100:+.1f}%, tolerance {tolerance * 100:.0f}%)"
    )


@pytest.mark.parametrize(
    "case",
    [c for c in HELD if c["tolerance"]["weights"] is not None],
    ids=[c["id"] for c in HELD if c["tolerance"]["weights"] is not None],
)
def test_weights_match_the_log(case: dict[str, Any]) -> None:
    result = bench.compare(case)
    error = result.weights_error()
    assert error is not None
    assert abs(error) <= case["tolerance"]["weights"], (
        f"{case['id']}: weights {result.weights_gib:.3f} GiB against logged "
        f"{case['logged']['weights_gib']} GiB ({error * 100:+.1f}%)"
    )


def test_kv_bytes_per_token_is_exact_where_the_engine_prints_the_pool() -> None:
    # SGLang prints "#tokens: 367404, K size: 8.23 GB": K alone is tokens x layers x KV heads per
    # rank x head_dim x 2 bytes (Qwen3-235B: 94 layers, 4 KV heads / TP 4, head_dim 128)
    case = next(c for c in CASES if c["id"] == "sglang-qwen3-235b-fp8-h100x4")
    result = bench.compare(case)
    assert result.capacity.bytes_per_token == 2 * 94 * 1 * 128 * 2
    k_gib = case["logged"]["kv_tokens"] * result.capacity.bytes_per_token / 2 / GIB
    assert round(k_gib, 2) == case["logged"]["k_gib"]
    # vLLM's "# GPU blocks: 1952" with 16-token blocks is the logged 31232 tokens; the estimate
    # holds whole blocks too
    vllm = bench.compare(next(c for c in CASES if c["id"] == "vllm-llama31-8b-rtx3090-20k"))
    assert vllm.capacity.tokens % 16 == 0
    assert vllm.capacity.bytes_per_token == 2 * 32 * 8 * 128 * 2


def test_activation_peak_is_the_larger_phase_not_the_sum() -> None:
    # vllm-project/vllm#10517: Llama-3.1-8B profiled at 20000 and 29000 tokens logs 2.07 and
    # 2.99 GiB: the forward pass alone (110592 B/token); the sampler's 0.37 GiB of float32
    # logits comes after the forward pass has freed its activations
    for case_id, logged in (("vllm-llama31-8b-rtx3090-20k", 2.07), ("vllm-llama31-8b-rtx3090-29k", 2.99)):
        result = bench.compare(next(c for c in CASES if c["id"] == case_id))
        assert abs(result.activation_gib - logged) / logged < 0.02, (case_id, result.activation_gib)
    # a small model with a large vocabulary peaks in the sampler instead (Qwen2.5-0.5B: 256 rows
    # x 151936 x 4 B x 3 copies)
    small = bench.compare(next(c for c in CASES if c["id"] == "vllm-qwen25-05b-a100-40g"))
    assert small.estimator.activation_bytes(1) == 256 * 151936 * 4 * 3


def test_sglang_claim_divides_by_mem_fraction_static_and_has_no_activation_item() -> None:
    cfg = bench.model_config("Meta-Llama-3-8B")
    options = EstimateOptions(engine="sglang", mem_fraction_static=0.8, max_model_len=8192)
    est = VllmEstimator(cfg, options)
    claim = est.claim(1)
    items = claim.devices[0].items
    assert not any(i.label.startswith("activation") for i in items)
    used = sum(i.bytes for i in items)
    assert claim.devices[0].memory_bytes == -(-used * 1000 // 800)
    assert any("mem_fraction_static=0.8" in n for n in claim.notes)
    # without mem_fraction_static SGLang semantics take gpu_memory_utilization's value
    assert EstimateOptions(engine="sglang", gpu_memory_utilization=0.85).sglang_mem_fraction == 0.85


def test_kv_capacity_note_uses_the_engine_semantics() -> None:
    cfg = bench.model_config("Meta-Llama-3-8B")
    device = int(79.22 * GIB)
    vllm = VllmEstimator(cfg, EstimateOptions(max_model_len=8192, device_memory=(device,)))
    sglang_options = EstimateOptions(
        engine="sglang", mem_fraction_static=0.9, max_model_len=8192, device_memory=(device,)
    )
    sglang = VllmEstimator(cfg, sglang_options)
    v, s = vllm.kv_capacity(1, device), sglang.kv_capacity(1, device)
    # same share of the device; SGLang does not take the activation peak out of it
    assert s.kv_bytes - v.kv_bytes == vllm.activation_bytes(1)
    assert any(f"= {v.tokens} tokens" in n for n in vllm.claim(1).notes)
    assert any(f"= {s.tokens} tokens" in n for n in sglang.claim(1).notes)


def test_kv_capacity_of_an_embedding_model_is_an_error() -> None:
    cfg = {**bench.model_config("Qwen2.5-0.5B"), "architectures": ["XLMRobertaModel"]}
    with pytest.raises(EstimationError, match="no KV cache"):
        VllmEstimator(cfg, EstimateOptions()).kv_capacity(1, 40 * GIB)
