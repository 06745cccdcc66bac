"""The server's estimates carry the runtime overhead of the cluster's accelerators."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import gpustack_source_local
import pytest

from gpustack_core import Accelerator, DetectOptions, Device, PluginHost, hookimpl
from gpustack_core.errors import EstimationError
from gpustack_core.estimate.llamacpp import PROCESS_OVERHEAD_LABEL, VOCAB_BYTES_PER_TOKEN
from gpustack_core.server.planning import EstimateCache
from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf
from gpustack_core.types import (
    Deployment,
    KVCacheExtension,
    MemoryItem,
    ModelRef,
    PerformancePreset,
    RuntimeOverhead,
    RuntimeWorkload,
    SpeculativeDecoding,
)

MIB = 2**20


class _Vendor(Accelerator):
    name = "vendorx"
    vendor = "x"

    def detect(self, options: DetectOptions) -> list[Device]:
        return []

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        return {}

    def runtime_overhead(self, device: Device, workload: RuntimeWorkload) -> RuntimeOverhead:
        mib = 300 if device.compute_capability == "big" else 100
        return RuntimeOverhead(
            device_items=(MemoryItem(label="context", bytes=mib * MIB),), sources=("test",)
        )


def _plugin() -> SimpleNamespace:
    @hookimpl
    def gpustack_register_accelerators(register: Callable[[Accelerator], None]) -> None:
        register(_Vendor())

    return SimpleNamespace(gpustack_register_accelerators=gpustack_register_accelerators)


def _device(capability: str, accelerator: str = "vendorx") -> Device:
    return Device(
        accelerator=accelerator, vendor="x", index=0, uuid=f"u-{capability}-{accelerator}", name="d",
        compute_capability=capability, memory_total_bytes=2**34,
    )  # fmt: skip


def test_estimate_adds_the_largest_overhead_of_the_cluster_devices(tmp_path: Path) -> None:
    model = write_llama_gguf(tmp_path / "m.gguf", TinyLlamaSpec(name="p"), fill="zeros")
    host = PluginHost(
        entry_points=False,
        plugins=[("accelerators", "vendorx", _plugin()), ("sources", "local", gpustack_source_local)],
    )
    cache = EstimateCache(host, tmp_path / "cache")
    dep = Deployment(
        name="d", model=ModelRef(source="local", id=str(model)), engine="llama.cpp", context_length=512
    )
    bare = cache.estimate(dep)
    small = cache.estimate(dep, [_device("small")])
    mixed = cache.estimate(dep, [_device("small"), _device("big"), _device("big", accelerator="absent")])

    def device_bytes(estimate: object) -> int:
        return estimate.claims[0].devices[0].memory_bytes  # type: ignore[attr-defined, no-any-return]

    assert device_bytes(small) - device_bytes(bare) == 100 * MIB
    assert device_bytes(mixed) - device_bytes(bare) == 300 * MIB
    assert bare.claims[-1] == mixed.claims[-1]  # the CPU-only claim is unchanged


def test_preset_adds_host_kv_memory_and_a_gguf_draft(tmp_path: Path) -> None:
    model = write_llama_gguf(tmp_path / "m.gguf", TinyLlamaSpec(name="p"), fill="zeros")
    draft = write_llama_gguf(tmp_path / "d.gguf", TinyLlamaSpec(name="d", n_layer=1), fill="zeros")
    host = PluginHost(entry_points=False, plugins=[("sources", "local", gpustack_source_local)])
    cache = EstimateCache(host, tmp_path / "cache")
    base = Deployment(
        name="d", model=ModelRef(source="local", id=str(model)), engine="llama.cpp", context_length=512
    )
    preset = PerformancePreset(
        speculative=SpeculativeDecoding(method="draft_model", draft_model=str(draft)),
        kv_cache_extension=KVCacheExtension(kind="lmcache", host_memory_bytes=3 * 2**30),
    )
    plain = cache.estimate(base)
    with_preset = cache.estimate(base.model_copy(update={"performance": preset}))
    gpu_plain, gpu = plain.claims[0], with_preset.claims[0]
    draft_device = [i for i in gpu.devices[0].items if i.label.startswith("draft model: ")]
    assert draft_device, gpu.devices[0].items
    assert gpu.devices[0].memory_bytes - gpu_plain.devices[0].memory_bytes == sum(
        i.bytes for i in draft_device
    )
    assert gpu.host_memory_bytes - gpu_plain.host_memory_bytes >= 3 * 2**30
    cpu_plain, cpu = plain.claims[-1], with_preset.claims[-1]
    assert cpu.strategy == "cpu_only"
    assert (
        cpu.host_memory_bytes > cpu_plain.host_memory_bytes + 3 * 2**30
    )  # KV extension + the draft's weights
    draft_host = [i for i in cpu.host_items if i.label.startswith("draft model: ")]
    assert cpu.host_memory_bytes - cpu_plain.host_memory_bytes == 3 * 2**30 + sum(i.bytes for i in draft_host)
    # one process: the target's overhead is counted once, the draft adds only its vocabulary
    assert not [i for i in draft_host if PROCESS_OVERHEAD_LABEL in i.label]
    assert [i.bytes for i in draft_host if i.label == "draft model: vocabulary"] == [
        512 * VOCAB_BYTES_PER_TOKEN
    ]
    missing = base.model_copy(
        update={
            "performance": PerformancePreset(
                speculative=SpeculativeDecoding(method="draft_model", draft_model="/no/d.gguf")
            )
        }
    )
    with pytest.raises(EstimationError, match="not a local GGUF file"):
        cache.estimate(missing)


def _safetensors_model(root: Path) -> Path:
    """A directory with Meta-Llama-3-8B's config.json and one tiny safetensors file."""
    import json
    import struct

    root.mkdir()
    config = Path(__file__).parents[1] / "estimate" / "fixtures" / "Meta-Llama-3-8B.config.json"
    (root / "config.json").write_text(config.read_text())
    header = json.dumps({"w": {"dtype": "BF16", "shape": [4, 4], "data_offsets": [0, 32]}}).encode()
    (root / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(32))
    return root


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_safetensors_estimate_uses_the_context_length_and_the_engine(tmp_path: Path, engine: str) -> None:
    # the vLLM/SGLang plugins pass context_length as --max-model-len / --context-length: the KV
    # cache is sized for it, not for the model's 8192 max_position_embeddings; SGLang's claim has
    # no activation item (its activations live in the 1 - mem_fraction_static it leaves free)
    model = _safetensors_model(tmp_path / "llama3")
    host = PluginHost(entry_points=False, plugins=[("sources", "local", gpustack_source_local)])
    cache = EstimateCache(host, tmp_path / "cache")
    ref = ModelRef(source="local", id=str(model))
    dep = Deployment(name="d", model=ref, engine=engine, context_length=2048)
    items = cache.estimate(dep).claims[0].devices[0].items
    kv = next(i for i in items if i.label.startswith("KV cache"))
    assert kv.label.startswith("KV cache 2048 tokens x 131072 B/token")
    assert kv.bytes == 2048 * 131072
    assert any(i.label.startswith("activation") for i in items) == (engine == "vllm")
