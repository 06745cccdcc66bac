"""The GGUF generator's Q4_K_M mix and fills, and llama.cpp log parsing on a real CUDA log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from gpustack_core.estimate import read_gguf_file
from gpustack_core.testing.gguf_models import (
    Fill,
    TinyLlamaSpec,
    llama_info_from_config,
    matrix_type,
    write_llama_gguf,
)
from gpustack_core.testing.llama_server import BufferLine, parse_buffer_lines, parse_buffer_sizes

FIXTURES = Path(__file__).parent / "fixtures"
MIB = 2**20
Q4_K, Q6_K = GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q6_K
# 8 blocks: llama-quantize's use_more_bits picks layers 0 (first eighth), 3, 6 ((i - 1) % 3 == 2), 7 (last)
SPEC = TinyLlamaSpec(
    n_vocab=1024, n_embd=256, n_layer=8, n_head=4, n_head_kv=2, n_ff=768, weight_type="Q4_K_M"
)


def _types(path: Path) -> dict[str, GGMLQuantizationType]:
    return {t.name: GGMLQuantizationType(t.tensor_type) for t in GGUFReader(path).tensors}


def test_q4_k_m_follows_llama_quantize(tmp_path: Path) -> None:
    types = _types(write_llama_gguf(tmp_path / "m.gguf", SPEC))
    q6 = {name for name, t in types.items() if t == Q6_K}
    more_bits = (0, 3, 6, 7)
    assert q6 == {f"blk.{i}.{w}.weight" for i in more_bits for w in ("attn_v", "ffn_down")} | {
        "output.weight"
    }
    assert types["token_embd.weight"] == Q4_K
    assert types["blk.1.attn_v.weight"] == Q4_K
    assert types["blk.0.attn_q.weight"] == Q4_K
    assert types["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32
    assert matrix_type("Q4_K_M", "token_embd.weight", 8, tied_embeddings=True) == Q6_K
    assert matrix_type("Q8_0", "output.weight", 8, tied_embeddings=False) == GGMLQuantizationType.Q8_0


@pytest.mark.parametrize("fill", ["random", "tiled"])
def test_k_quant_blocks_hold_small_finite_values(tmp_path: Path, fill: Fill) -> None:
    reader = GGUFReader(write_llama_gguf(tmp_path / "m.gguf", SPEC, fill=fill))
    for tensor in reader.tensors:
        if tensor.tensor_type in (Q4_K, Q6_K):
            values = dequantize(np.asarray(tensor.data), tensor.tensor_type)
            assert np.isfinite(values).all(), tensor.name
            assert float(np.abs(values).mean()) > 0.001, tensor.name
            assert float(np.abs(values).max()) <= 0.0301, tensor.name


def test_config_description_matches_the_written_file(tmp_path: Path) -> None:
    written = read_gguf_file(write_llama_gguf(tmp_path / "m.gguf", SPEC, fill="zeros"))
    config = {
        "hidden_size": SPEC.n_embd,
        "num_hidden_layers": SPEC.n_layer,
        "num_attention_heads": SPEC.n_head,
        "num_key_value_heads": SPEC.n_head_kv,
        "intermediate_size": SPEC.n_ff,
        "vocab_size": SPEC.n_vocab,
    }
    described = llama_info_from_config(config, "Q4_K_M")
    assert {t.name: (t.ggml_type, t.n_bytes) for t in described.tensors} == {
        t.name: (t.ggml_type, t.n_bytes) for t in written.tensors
    }


def test_fills_share_the_header_and_zeros_is_sparse(tmp_path: Path) -> None:
    spec = TinyLlamaSpec(
        n_vocab=4096, n_embd=512, n_layer=4, n_head=8, n_head_kv=2, n_ff=1536, weight_type="F16"
    )
    fills: tuple[Fill, ...] = ("random", "tiled", "zeros")
    paths = {fill: write_llama_gguf(tmp_path / f"{fill}.gguf", spec, fill=fill) for fill in fills}
    offset = GGUFReader(paths["random"]).data_offset
    headers = {fill: path.read_bytes()[:offset] for fill, path in paths.items()}
    assert headers["random"] == headers["tiled"] == headers["zeros"]
    sizes = {path.stat().st_size for path in paths.values()}
    assert len(sizes) == 1
    zeros = paths["zeros"]
    assert zeros.stat().st_blocks * 512 < zeros.stat().st_size // 4, (
        "the weights are a hole, not written zeros"
    )
    assert not any(zeros.read_bytes()[offset:])
    tiled = paths["tiled"].read_bytes()
    assert write_llama_gguf(tmp_path / "again.gguf", spec, fill="tiled").read_bytes() == tiled
    assert tiled != paths["random"].read_bytes()
    assert any(tiled[offset:])


@pytest.mark.parametrize(
    ("spec", "fill", "message"),
    [
        (SPEC, "ones", "fill 'ones'"),
        (
            TinyLlamaSpec(n_embd=384, n_head=4, n_head_kv=2, n_ff=1024, weight_type="Q4_K_M"),
            "random",
            "multiples of 256",
        ),
    ],
)
def test_bad_fill_or_k_quant_shape_is_refused(
    tmp_path: Path, spec: TinyLlamaSpec, fill: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        # a value outside Fill on purpose
        write_llama_gguf(tmp_path / "bad.gguf", spec, fill=fill)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir()), "nothing written for a refused request"


def test_buffer_lines_of_a_cuda_log() -> None:
    log = (FIXTURES / "llama-server-cuda-h200.log").read_text()
    lines = parse_buffer_lines(log)
    assert lines == [
        BufferLine("load_tensors", "CPU_Mapped", "model", round(532.31 * MIB)),
        BufferLine("load_tensors", "CUDA0", "model", round(7605.33 * MIB)),
        BufferLine("llama_context", "CUDA_Host", "output", round(1.96 * MIB)),
        BufferLine("llama_kv_cache", "CUDA0", "KV", 512 * MIB),
        BufferLine("sched_reserve", "CUDA0", "compute", round(112.01 * MIB)),
        BufferLine("sched_reserve", "CUDA_Host", "compute", round(20.01 * MIB)),
    ]
    sizes = parse_buffer_sizes(log)
    assert sizes["model"] == round(532.31 * MIB) + round(7605.33 * MIB)
    assert sizes["compute"] == round(112.01 * MIB) + round(20.01 * MIB)
