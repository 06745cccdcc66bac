"""The CUDA plugin's per-process overhead: the H200 measurements, scaled by SMs and capability."""

from __future__ import annotations

import pytest
from gpustack_accelerator_cuda import CudaAccelerator
from gpustack_accelerator_cuda._overhead import max_threads_per_sm, sm_count

from gpustack_core.types import Device, RuntimeWorkload

MIB = 2**20
QUANT = RuntimeWorkload(engine="llama.cpp", weight_types=("Q8_0", "F32"), micro_batch_tokens=512)
DENSE = RuntimeWorkload(
    engine="llama.cpp", weight_types=("F16", "F32"), dense_blas=True, micro_batch_tokens=512
)


def _device(capability: str | None, cores: int | None = None, **extra: str) -> Device:
    return Device(
        accelerator="cuda", vendor="nvidia", index=0, uuid="GPU-1", name="gpu", compute_capability=capability,
        memory_total_bytes=80 * 2**30, core_count=cores, extra=extra,
    )  # fmt: skip


def _sums(device: Device, workload: RuntimeWorkload) -> tuple[int, int, int, int]:
    o = CudaAccelerator(nvml=None).runtime_overhead(device, workload)
    load = sum(i.bytes for i in o.device_items if not i.first_request)
    first = sum(i.bytes for i in o.device_items if i.first_request)
    host_load = sum(i.bytes for i in o.host_items if not i.first_request)
    host_first = sum(i.bytes for i in o.host_items if i.first_request)
    return load // MIB, first // MIB, host_load // MIB, host_first // MIB


def test_h200_reproduces_the_measured_constants() -> None:
    h200 = _device("9.0", 132 * 128)
    # 518 MiB context + 66 MiB kernel images + 2 MiB pool after load (docs/benchmarks/estimation-h200.md)
    assert _sums(h200, QUANT)[:2] == (518 + 66 + 2, 16 + 2)
    # F16: cuBLAS 68 MiB + llama.cpp's 32 MiB workspace at the first request
    assert _sums(h200, DENSE)[:2] == (586, 16 + 100)
    assert _sums(h200, QUANT)[2:] == (326, 27)
    assert _sums(h200, DENSE)[2:] == (326, 165)


def test_stack_scales_with_sms_and_resident_threads() -> None:
    a100 = _device("8.0", 108 * 64)  # 108 SMs x 2048 threads
    l40s = _device("8.9", 142 * 128)  # 142 SMs x 1536 threads
    assert sm_count(a100) == 108
    assert max_threads_per_sm(l40s) == 1536
    assert _sums(a100, QUANT)[0] == 254 + 108 * 2048 // 1024 + 66 + 2
    assert _sums(l40s, QUANT)[0] == 254 + 142 * 1536 // 1024 + 66 + 2


def test_workspace_is_4_mib_below_hopper() -> None:
    assert _sums(_device("8.0", 108 * 64), DENSE)[1] == 16 + 68 + 4


def test_unknown_sm_count_assumes_the_h200_and_says_so() -> None:
    o = CudaAccelerator(nvml=None).runtime_overhead(_device(None), QUANT)
    assert "132 SMs assumed" in o.device_items[0].label
    assert o.device_items[0].bytes == (254 + 264) * MIB
    assert sm_count(_device("9.0", sm_count="78")) == 78


@pytest.mark.parametrize(("ubatch", "fa", "peak"), [(512, True, 18), (2048, True, 72), (512, False, 86)])
def test_pool_peak_follows_ubatch_and_flash_attention(ubatch: int, fa: bool, peak: int) -> None:
    workload = RuntimeWorkload(
        engine="llama.cpp", micro_batch_tokens=ubatch, flash_attention=fa, dense_blas=not fa
    )
    o = CudaAccelerator(nvml=None).runtime_overhead(_device("9.0", 132 * 128), workload)
    pool = next(i for i in o.device_items if "pool, peak" in i.label)
    assert pool.bytes == (peak - 2) * MIB


def test_other_engines_get_the_context_and_cublas_only() -> None:
    vllm = RuntimeWorkload(engine="vllm", weight_types=("bfloat16",), dense_blas=True)
    o = CudaAccelerator(nvml=None).runtime_overhead(_device("9.0", 132 * 128), vllm)
    assert [i.bytes // MIB for i in o.device_items] == [518, 68]
    assert o.host_items == ()
    assert o.allocation_granularity_bytes == 2 * MIB
    assert all("estimation-h200" in s for s in o.sources)
