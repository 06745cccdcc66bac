"""The server's estimates carry the runtime overhead of the cluster's accelerators."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import gpustack_source_local

from gpustack_core import Accelerator, DetectOptions, Device, PluginHost, hookimpl
from gpustack_core.server.planning import EstimateCache
from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf
from gpustack_core.types import Deployment, MemoryItem, ModelRef, RuntimeOverhead, RuntimeWorkload

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
