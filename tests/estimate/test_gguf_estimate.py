"""GGUF (llama.cpp) estimates against hand-computed values for generated models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpustack_core.errors import EstimationError
from gpustack_core.estimate import EstimateOptions, GGUFEstimator, estimate_gguf, read_gguf_file
from gpustack_core.testing.gguf_models import TinyLlamaSpec, llama_info_from_config, write_llama_gguf

MIB = 2**20
FIXTURES = Path(__file__).parent / "fixtures"


def load_config(name: str) -> dict[str, Any]:
    """A config.json fixture by model name."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.config.json").read_text())
    return data


def test_generated_file_has_the_spec_shapes(tiny_gguf: Path) -> None:
    spec = TinyLlamaSpec.tiny()
    info = read_gguf_file(tiny_gguf)
    assert info.architecture == "llama"
    assert sum(t.n_elements for t in info.tensors) == spec.n_params
    assert info.weight_bytes == spec.n_params * 4  # F32
    assert info.array_lengths["tokenizer.ggml.tokens"] == spec.n_vocab
    assert info.file_size == tiny_gguf.stat().st_size


def test_quantized_file_sizes_match_block_arithmetic(tmp_path: Path) -> None:
    spec = TinyLlamaSpec.tiny("Q4_0")
    info = read_gguf_file(write_llama_gguf(tmp_path / "q4.gguf", spec))
    q = info.tensor("blk.0.ffn_up.weight")
    assert q is not None
    assert q.type_name == "Q4_0"
    assert q.shape == (64, 128)
    assert q.n_bytes == 64 * 128 // 32 * 18  # 32-value blocks of 18 bytes
    norm = info.tensor("blk.0.attn_norm.weight")
    assert norm is not None
    assert norm.type_name == "F32"


def test_layer_weights_by_hand(tiny_gguf: Path) -> None:
    est = GGUFEstimator(read_gguf_file(tiny_gguf), EstimateOptions(ctx_size=1000))
    # 2 norms (64) + q,o (64x64) + k,v (64x64, 4 KV heads of 16) + gate,up,down (64x128), F32
    per_layer = (2 * 64 + 2 * 64 * 64 + 2 * 64 * 64 + 3 * 64 * 128) * 4
    assert est.layer_weights == [per_layer, per_layer]
    assert est.input_weights == 512 * 64 * 4
    assert est.output_weights == (512 * 64 + 64) * 4


def test_kv_cache_by_hand_for_cache_types(small_q8_gguf: Path) -> None:
    info = read_gguf_file(small_q8_gguf)
    # small: 4 layers, 2 KV heads of 32 dims -> n_embd_k_gqa = 64; ctx 1000 pads to 1024
    f16 = GGUFEstimator(info, EstimateOptions(ctx_size=1000))
    assert f16.n_ctx == 1024
    assert f16.kv_bytes(0) == (64 * 1024 * 2, 64 * 1024 * 2)
    assert f16.kv_total_bytes == 4 * 2 * 64 * 1024 * 2
    q8 = GGUFEstimator(info, EstimateOptions(ctx_size=1024, cache_type_k="q8_0", cache_type_v="q8_0"))
    assert q8.kv_bytes(3) == (64 * 1024 // 32 * 34, 64 * 1024 // 32 * 34)
    q4 = GGUFEstimator(info, EstimateOptions(ctx_size=1024, cache_type_k="q4_0", cache_type_v="q4_0"))
    assert q4.kv_bytes(0) == (64 * 1024 // 32 * 18, 64 * 1024 // 32 * 18)


def test_quantized_v_cache_needs_flash_attention(small_q8_gguf: Path) -> None:
    info = read_gguf_file(small_q8_gguf)
    with pytest.raises(EstimationError, match="flash attention"):
        GGUFEstimator(info, EstimateOptions(cache_type_v="q8_0", flash_attention=False))
    with pytest.raises(ValueError, match="not a KV cache type"):
        EstimateOptions(cache_type_k="q3_k")


@pytest.mark.parametrize(
    ("name", "ctx", "kv_mib", "compute_mib"),
    [
        # CPU compute buffer sizes logged by llama.cpp (flash attention off, ubatch 512);
        # sources in docs/benchmarks/estimation.md
        ("Qwen2.5-7B-Instruct", 8192, 448.00, 492.01),  # ollama/ollama#7585
        # ollama/ollama#9496; that llama.cpp padded n_ctx to 32 (32384), today's to 256 (32512)
        ("Mistral-7B-Instruct-v0.2", 32384, 4048.00 * 32512 / 32384, 2119.26),
    ],
)
def test_matches_published_llamacpp_logs(name: str, ctx: int, kv_mib: float, compute_mib: float) -> None:
    info = llama_info_from_config(load_config(name))
    # those builds reserved n_ubatch output rows; their attention phase kept one activation less
    # than today's llama.cpp, which the formula follows (within 3% here)
    est = GGUFEstimator(info, EstimateOptions(ctx_size=ctx, flash_attention=False, max_outputs=512))
    assert est.kv_total_bytes / MIB == pytest.approx(kv_mib, abs=0.01)
    assert est.compute_bytes() / MIB == pytest.approx(compute_mib, rel=0.03)


def test_cpu_only_claim_holds_everything(small_q8_gguf: Path) -> None:
    info = read_gguf_file(small_q8_gguf)
    est = GGUFEstimator(info, EstimateOptions(ctx_size=2048))
    claim = est.cpu_only()
    assert claim.strategy == "cpu_only"
    assert claim.devices == ()
    labels = {i.label.split(":")[0].split(" (")[0] for i in claim.host_items}
    assert {"weights", "output buffer", "runtime overhead"} <= labels
    weights = sum(i.bytes for i in claim.host_items if i.label.startswith("weights"))
    assert weights == info.weight_bytes
    assert claim.host_memory_bytes == sum(i.bytes for i in claim.host_items)
    assert any(i.bytes == est.kv_total_bytes for i in claim.host_items if i.label.startswith("KV"))


def test_partial_offload_is_monotonic_in_free_memory(small_q8_gguf: Path) -> None:
    est = GGUFEstimator(read_gguf_file(small_q8_gguf), EstimateOptions(ctx_size=4096))
    full = est.full_offload().devices[0].memory_bytes
    steps = [int(full * f) for f in (0.0, 0.2, 0.4, 0.6, 0.8, 0.99, 1.0, 2.0)]
    fitted = [est.fit_layers(b) for b in steps]
    assert fitted == sorted(fitted)
    assert fitted[0] == 0
    assert fitted[-2] == fitted[-1] == est.hparams.n_layer + 1
    assert fitted[-3] < est.hparams.n_layer + 1
    for n in range(1, est.hparams.n_layer + 2):
        claim = est.claim(n, (1.0,))
        assert claim.offloaded_layers == n
        assert claim.strategy == ("single_device" if n == est.hparams.n_layer + 1 else "partial_offload")


def test_layer_assignment_mirrors_llamacpp(small_q8_gguf: Path) -> None:
    est = GGUFEstimator(read_gguf_file(small_q8_gguf), EstimateOptions(ctx_size=512))
    # 4 blocks + output, two equal devices: x = il/5 -> 0, .2, .4 on device 0; .6, .8 on device 1
    assert est.assign_layers(5, (1.0, 1.0)) == [0, 0, 0, 1, 1]
    assert est.assign_layers(2, (1.0, 1.0)) == [-1, -1, -1, 0, 1]
    assert est.assign_layers(5, (3.0, 1.0)) == [0, 0, 0, 0, 1]
    assert est.assign_layers(0, (1.0,)) == [-1] * 5


def test_tensor_split_parts_sum_to_the_whole(small_q8_gguf: Path) -> None:
    info = read_gguf_file(small_q8_gguf)
    est = GGUFEstimator(info, EstimateOptions(ctx_size=2048))
    claim = est.claim(5, (2.0, 1.0, 1.0), ("gpu:0", "gpu:1", "gpu:2"))
    assert claim.strategy == "multi_device"
    items = [i for d in claim.devices for i in d.items] + list(claim.host_items)
    weights = sum(i.bytes for i in items if i.label.startswith("weights"))
    assert weights == info.weight_bytes  # output.weight exists, so no tied copy
    kv = sum(i.bytes for i in items if i.label.startswith("KV"))
    assert kv == est.kv_total_bytes
    for d in claim.devices:
        assert d.memory_bytes == sum(i.bytes for i in d.items)


def test_split_across_stops_where_a_device_is_full(small_q8_gguf: Path) -> None:
    est = GGUFEstimator(read_gguf_file(small_q8_gguf), EstimateOptions(ctx_size=2048))
    full = est.full_offload().devices[0].memory_bytes
    roomy = est.split_across([full, full])
    assert roomy.strategy == "multi_device"
    assert roomy.offloaded_layers == est.hparams.n_layer + 1
    tight = est.split_across([full // 4, full // 4])
    assert tight.strategy in ("partial_offload", "cpu_only")
    assert (tight.offloaded_layers or 0) < est.hparams.n_layer + 1
    for d in tight.devices:
        assert d.memory_bytes <= full // 4


def test_rpc_devices_come_first_in_the_split(small_q8_gguf: Path) -> None:
    from gpustack_core.estimate import RemoteDevice

    info = read_gguf_file(small_q8_gguf)
    big = 2**30
    options = EstimateOptions(
        ctx_size=2048, device_memory=(big,), rpc_devices=(RemoteDevice(endpoint="h:50052", memory_bytes=big),)
    )
    estimate = estimate_gguf(info, options, "m")
    first = estimate.claims[0]
    assert first.strategy == "multi_device"
    assert first.notes == ("devices: rpc:h:50052, gpu:0",)
    assert estimate.claims[-1].strategy == "cpu_only"


def test_estimate_without_devices_lists_requirements(small_q8_gguf: Path) -> None:
    estimate = estimate_gguf(read_gguf_file(small_q8_gguf), EstimateOptions(ctx_size=2048, gpus=2), "m")
    assert [c.strategy for c in estimate.claims] == ["single_device", "multi_device", "cpu_only"]
    assert estimate.claims[1].device_count == 2


def test_remote_header_description_gives_the_same_estimate(small_q8_gguf: Path) -> None:
    """A source's range-read header (gguf_metadata + gguf_tensors) estimates like the local file."""
    from types import SimpleNamespace

    from gpustack_core.estimate import info_from_model_metadata

    local = read_gguf_file(small_q8_gguf)
    kv = dict(local.kv)
    kv["tokenizer.ggml.tokens"] = ["t"] * local.array_lengths["tokenizer.ggml.tokens"]
    tensors = [
        SimpleNamespace(name=t.name, shape=t.shape, ggml_type=t.ggml_type, size_bytes=None)
        for t in local.tensors
    ]
    remote = info_from_model_metadata(
        SimpleNamespace(gguf_metadata=kv, gguf_tensors=tensors, total_size_bytes=0)
    )
    assert remote is not None
    options = EstimateOptions(ctx_size=4096)
    assert GGUFEstimator(remote, options).cpu_only() == GGUFEstimator(local, options).cpu_only()
    assert info_from_model_metadata(SimpleNamespace(gguf_metadata=None, gguf_tensors=None)) is None


def test_metadata_as_a_source_stores_it_describes_the_model_like_the_file(small_q8_gguf: Path) -> None:
    """ModelMetadata carries long arrays as {"array_length": N} and lists every file of the repo."""
    from gpustack_core.estimate import info_from_model_metadata
    from gpustack_core.models.gguf_header import metadata_for_display, read_gguf_header
    from gpustack_core.types import ModelFile, ModelFormat, ModelMetadata, ModelRef

    local = read_gguf_file(small_q8_gguf)
    header = read_gguf_header(small_q8_gguf)
    size = small_q8_gguf.stat().st_size
    metadata = ModelMetadata(
        ref=ModelRef.parse("huggingface:org/m#Q8_0"),
        format=ModelFormat.GGUF,
        files=(
            ModelFile(path=small_q8_gguf.name, size_bytes=size, format=ModelFormat.GGUF),
            ModelFile(path="small-q4.gguf", size_bytes=123, format=ModelFormat.GGUF),
        ),
        gguf_metadata=metadata_for_display(header.metadata),
        gguf_tensors=header.tensors,
    )
    remote = info_from_model_metadata(metadata)
    assert remote is not None
    assert remote.array_lengths["tokenizer.ggml.tokens"] == local.array_lengths["tokenizer.ggml.tokens"]
    assert remote.file_size == local.file_size == size  # the selected file, not the other quantization
    options = EstimateOptions(ctx_size=4096)
    assert GGUFEstimator(remote, options).cpu_only() == GGUFEstimator(local, options).cpu_only()


def test_cpu_repack_copy_of_q4_0_matrices(tmp_path: Path) -> None:
    info = read_gguf_file(write_llama_gguf(tmp_path / "q4.gguf", TinyLlamaSpec.tiny("Q4_0")))
    est = GGUFEstimator(info, EstimateOptions(ctx_size=512))
    # per block: q, k, v, o (64x64) + gate, up, down (64x128) in 18-byte blocks of 32 values;
    # output.weight is repacked too but lies after output_norm, outside the mapped range
    per_block = 4 * (64 * 64 // 32 * 18) + 3 * (64 * 128 // 32 * 18)
    assert est.repack_duplicate_bytes({0, 1}, output_on_host=True) == 2 * per_block
    claim = est.cpu_only()
    assert any(
        i.label.startswith("weights: CPU repack copy") and i.bytes == 2 * per_block for i in claim.host_items
    )
    for off in (EstimateOptions(ctx_size=512, cpu_repack=False), EstimateOptions(ctx_size=512, mmap=False)):
        assert GGUFEstimator(info, off).repack_duplicate_bytes({0, 1}, output_on_host=True) == 0
    f32 = GGUFEstimator(
        read_gguf_file(write_llama_gguf(tmp_path / "f32.gguf", TinyLlamaSpec.tiny())), EstimateOptions()
    )
    assert f32.repack_duplicate_bytes({0, 1}, output_on_host=True) == 0


def test_cpu_work_buffer_without_flash_attention(small_q8_gguf: Path) -> None:
    info = read_gguf_file(small_q8_gguf)
    no_fa = GGUFEstimator(info, EstimateOptions(ctx_size=2048, ubatch_size=256, flash_attention=False))
    assert no_fa.cpu_work_bytes() == 2048 * 256 * 8 * 2  # KQ probabilities as f16, 8 heads
    fa = GGUFEstimator(info, EstimateOptions(ctx_size=2048, ubatch_size=256))
    assert fa.cpu_work_bytes() == 256 * 768 * 2  # the feed-forward input, n_ff 768
    assert any(i.label == "CPU matmul work buffer" for i in no_fa.cpu_only().host_items)
    assert not any(i.label == "CPU matmul work buffer" for i in no_fa.full_offload().host_items)


def test_a_split_over_the_cpus_of_workers_moves_the_last_layers_to_the_rpc_servers(
    small_q8_gguf: Path,
) -> None:
    from gpustack_core.estimate.llamacpp import RPC_SERVER_OVERHEAD_BYTES

    est = GGUFEstimator(read_gguf_file(small_q8_gguf), EstimateOptions(ctx_size=1024))
    whole = est.cpu_only().host_memory_bytes
    n_all = est.hparams.n_layer + 1  # blocks + output, as -ngl counts them
    for workers in range(2, n_all + 1):
        claim = est.split_over_hosts(workers)
        assert claim.spans_worker_hosts
        assert claim.devices == ()
        assert len(claim.worker_host_memory_bytes) == workers
        assert claim.host_memory_bytes == claim.worker_host_memory_bytes[0]
        assert workers - 1 <= (claim.offloaded_layers or 0) <= n_all - 1  # the head keeps a block
        # the same layers as -ngl over the RPC devices (evenly split) would put there
        as_devices = est.claim(claim.offloaded_layers or 0, [1.0] * (workers - 1))
        assert claim.host_memory_bytes == as_devices.host_memory_bytes < whole
        assert claim.worker_host_memory_bytes[1:] == tuple(
            d.memory_bytes + RPC_SERVER_OVERHEAD_BYTES for d in as_devices.devices
        )
    assert est.split_over_hosts(2).offloaded_layers == round(n_all / 2)
    for workers in (1, n_all + 1):
        with pytest.raises(EstimationError, match=f"over the CPUs of {workers} workers"):
            est.split_over_hosts(workers)
