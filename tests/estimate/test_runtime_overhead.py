"""The estimator adds the accelerator's per-process overhead to GPU claims, and only to those."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpustack_core.cli.app import build_app
from gpustack_core.contracts import Accelerator
from gpustack_core.estimate import (
    EstimateOptions,
    estimate_gguf,
    largest_overhead,
    read_gguf_file,
    runtime_overhead_for,
)
from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf
from gpustack_core.types import DetectOptions, Device, MemoryItem, RuntimeOverhead, RuntimeWorkload

MIB = 2**20


class _Plain(Accelerator):
    """A third-party accelerator written before the hook existed: no override."""

    name = "plain"
    vendor = "plain"

    def detect(self, options: DetectOptions) -> list[Device]:
        return []

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        return {}


class _Fixed(_Plain):
    def __init__(self, device_mib: int, page_mib: int = 2) -> None:
        self.device_mib = device_mib
        self.page_mib = page_mib
        self.seen: list[RuntimeWorkload] = []

    def runtime_overhead(self, device: Device, workload: RuntimeWorkload) -> RuntimeOverhead:
        self.seen.append(workload)
        return RuntimeOverhead(
            device_items=(
                MemoryItem(label="context", bytes=self.device_mib * MIB),
                MemoryItem(label="workspace", bytes=4 * MIB, first_request=True),
            ),
            host_items=(MemoryItem(label="libraries", bytes=100 * MIB),),
            allocation_granularity_bytes=self.page_mib * MIB,
            sources=("test",),
        )


def _gpu(name: str = "gpu") -> Device:
    return Device(accelerator="x", vendor="x", index=0, uuid=name, name=name, memory_total_bytes=2**34)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = TinyLlamaSpec(weight_type="F16", name="rt")
    return write_llama_gguf(tmp_path_factory.mktemp("rt") / "m.gguf", spec, fill="zeros")


def test_default_is_no_overhead() -> None:
    assert _Plain().runtime_overhead(_gpu(), RuntimeWorkload(engine="llama.cpp")) == RuntimeOverhead()


def test_gpu_claims_get_the_overhead_rounding_and_host_items(model: Path) -> None:
    info = read_gguf_file(model)
    options = EstimateOptions(ctx_size=1024, gpus=1)
    bare = estimate_gguf(info, options, "m")
    accel = _Fixed(500)
    with_rt = estimate_gguf(info, options, "m", runtime_overhead_for([(accel, _gpu())]))
    assert accel.seen[0].engine == "llama.cpp"
    assert accel.seen[0].dense_blas  # F16 weights go through the vendor BLAS
    b, w = bare.claims[0], with_rt.claims[0]
    assert b.strategy == w.strategy == "single_device"
    added = w.devices[0].memory_bytes - b.devices[0].memory_bytes
    pages = sum(i.bytes for i in w.devices[0].items if i.label.startswith("buffers rounded up"))
    assert 0 < pages < 4 * 2 * MIB
    assert added == 504 * MIB + pages
    assert w.devices[0].memory_bytes - w.devices[0].after_load_bytes == 4 * MIB
    assert w.host_memory_bytes - b.host_memory_bytes == 100 * MIB
    cpu = with_rt.claims[-1]
    assert cpu.strategy == "cpu_only"
    assert cpu == bare.claims[-1], "a CPU-only claim carries no device runtime"


def test_largest_overhead_wins_and_cpu_devices_are_skipped() -> None:
    small, big = _Fixed(100), _Fixed(900)
    cpu = _gpu("cpu").model_copy(update={"device_type": "cpu"})
    fn = runtime_overhead_for([(small, _gpu("a")), (big, _gpu("b")), (_Fixed(5000), cpu)])
    chosen = fn(RuntimeWorkload(engine="llama.cpp"))
    assert chosen.device_items[0].bytes == 900 * MIB
    assert largest_overhead([]) == RuntimeOverhead()


def test_cli_accelerator_describes_a_device(model: Path) -> None:
    app = build_app()
    base = ["estimate", str(model), "--json", "--gpus", "1", "--ctx-size", "1024"]
    plain = CliRunner().invoke(app, base)
    described = CliRunner().invoke(
        app, [*base, "--accelerator", "cuda", "--compute-capability", "9.0", "--sm-count", "132"]
    )
    assert plain.exit_code == 0, plain.output
    assert described.exit_code == 0, described.output
    assert "CUDA context" in described.stdout
    assert "CUDA context" not in plain.stdout
    unknown = CliRunner().invoke(
        app, [*base, "--accelerator", "no-such-plugin", "--compute-capability", "9.0"]
    )
    assert unknown.exit_code != 0
    lonely = CliRunner().invoke(app, [*base, "--compute-capability", "9.0"])
    assert lonely.exit_code != 0
    assert "--accelerator" in lonely.output
