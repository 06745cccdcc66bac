"""safetensors/vLLM estimates: weights, KV cache per token, TP divisibility, embedding models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpustack_core.errors import EstimationError
from gpustack_core.estimate import (
    EstimateOptions,
    TransformerConfig,
    VllmEstimator,
    estimate_safetensors,
    valid_tp_sizes,
)
from gpustack_core.types import ModelCategory

FIXTURES = Path(__file__).parent / "fixtures"
GIB = 2**30


def load_config(name: str) -> dict[str, Any]:
    """A config.json fixture by model name."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.config.json").read_text())
    return data


def test_llama3_param_count_and_kv_per_token() -> None:
    cfg = TransformerConfig.from_config(load_config("Meta-Llama-3-8B"))
    assert cfg.param_count == 8_030_261_248  # the model card's 8.03 B
    est = VllmEstimator(load_config("Meta-Llama-3-8B"), EstimateOptions())
    # 2 (K,V) x 32 layers x 8 KV heads x 128 dims x 2 bytes
    assert est.kv_bytes_per_token(1) == 131072
    assert est.kv_bytes_per_token(2) == 65536
    assert est.kv_bytes_per_token(16) == 2 * 32 * 1 * 128 * 2  # heads replicated past 8 ranks
    fp8 = VllmEstimator(load_config("Meta-Llama-3-8B"), EstimateOptions(kv_cache_dtype="fp8"))
    assert fp8.kv_bytes_per_token(1) == 65536


def test_weights_from_safetensors_headers_by_dtype() -> None:
    headers = {
        "model-00001.safetensors": {
            "__metadata__": {"format": "pt"},
            "a": {"dtype": "BF16", "shape": [4, 8], "data_offsets": [0, 64]},
            "b": {"dtype": "F32", "shape": [8], "data_offsets": [64, 96]},
        },
        "model-00002.safetensors": {"c": {"dtype": "BF16", "shape": [2, 8], "data_offsets": [0, 32]}},
    }
    est = VllmEstimator(load_config("Meta-Llama-3-8B"), EstimateOptions(), safetensors_headers=headers)
    assert est.weights_by_dtype == {"BF16": 96, "F32": 32}
    assert est.weights_source == "safetensors headers"


def test_quantization_config_shrinks_weights() -> None:
    base = load_config("Meta-Llama-3-8B")
    dense = VllmEstimator(base, EstimateOptions()).weight_bytes
    awq = {**base, "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}}
    fp8 = {**base, "quantization_config": {"quant_method": "fp8"}}
    awq_bytes = VllmEstimator(awq, EstimateOptions()).weight_bytes
    fp8_bytes = VllmEstimator(fp8, EstimateOptions()).weight_bytes
    assert dense == 8_030_261_248 * 2
    assert awq_bytes < fp8_bytes < dense
    # embeddings stay 16-bit: 2 x 128256 x 4096 x 2 bytes = 1.96 GiB of the AWQ total
    assert 5.0 * GIB < awq_bytes < 6.0 * GIB


def test_tensor_parallel_divisibility() -> None:
    llama = TransformerConfig.from_config(load_config("Meta-Llama-3-8B"))  # 32 heads, 8 KV heads
    assert valid_tp_sizes(llama, 64) == [1, 2, 4, 8, 16, 32]
    qwen = TransformerConfig.from_config(load_config("Qwen2.5-7B-Instruct"))  # 28 heads, 4 KV heads
    assert valid_tp_sizes(qwen, 64) == [1, 2, 4]
    odd = TransformerConfig.from_config({**load_config("Qwen2.5-7B-Instruct"), "num_key_value_heads": 7})
    assert valid_tp_sizes(odd, 64) == [1]
    with pytest.raises(EstimationError, match="valid sizes: 1, 2, 4"):
        estimate_safetensors(load_config("Qwen2.5-7B-Instruct"), EstimateOptions(tensor_parallel_size=8), "q")


def test_claim_divides_by_memory_utilization_and_reports_kv_tokens() -> None:
    cfg = load_config("Meta-Llama-3-8B")
    options = EstimateOptions(max_model_len=8192, gpu_memory_utilization=0.9, device_memory=(80 * GIB,))
    est = VllmEstimator(cfg, options)
    claim = est.claim(1)
    used = sum(i.bytes for i in claim.devices[0].items)
    assert claim.devices[0].memory_bytes == -(-used * 1000 // 900)
    kv_item = next(i for i in claim.devices[0].items if i.label.startswith("KV"))
    assert kv_item.bytes == 8192 * 131072
    assert any("tokens" in n and "max_model_len 8192" in n for n in claim.notes)
    assert est.fits(claim)
    assert not est.fits(est.claim(2))  # one device given, TP 2 needs two


def test_estimate_orders_fitting_claims_first() -> None:
    cfg = load_config("Meta-Llama-3-8B")
    small = EstimateOptions(max_model_len=8192, device_memory=(16 * GIB, 16 * GIB))
    estimate = estimate_safetensors(cfg, small, "llama3")
    assert [c.tensor_parallel_size for c in estimate.claims] == [2, 1]
    none_fit = estimate_safetensors(cfg, EstimateOptions(device_memory=(8 * GIB,)), "llama3")
    assert any("no TP size fits" in n for n in none_fit.notes)


def test_embedding_model_has_no_kv_cache() -> None:
    cfg = {
        "architectures": ["XLMRobertaModel"],
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "vocab_size": 250002,
        "max_position_embeddings": 8194,
        "torch_dtype": "float32",
    }
    est = VllmEstimator(cfg, EstimateOptions(), category=ModelCategory.EMBEDDING)
    assert est.kv_bytes_per_token(1) == 0
    claim = est.claim(1)
    assert not any(i.label.startswith("KV") for i in claim.devices[0].items)
    assert any("embedding" in n for n in claim.notes)
    # a decoder used as an embedding model also gets no KV cache item
    decoder = VllmEstimator(
        load_config("Qwen2.5-7B-Instruct"), EstimateOptions(), category=ModelCategory.EMBEDDING
    )
    assert decoder.kv_bytes_per_token(1) == 0


def test_missing_config_field_is_named() -> None:
    with pytest.raises(EstimationError, match="num_hidden_layers"):
        TransformerConfig.from_config({"hidden_size": 8, "num_attention_heads": 2, "vocab_size": 10})
