"""What the CUDA runtime costs one process on an NVIDIA GPU, beyond the engine's own buffers.

Every number cites its source. "H200" means the measurement of 45 llama-server processes and a bare
CUDA program on one NVIDIA H200 (compute capability 9.0, 132 SMs, driver 580.159.04, CUDA 13.0),
``docs/benchmarks/estimation-h200.md`` (raw data: ``docs/benchmarks/data/estimation-h200*.json``).
Numbers measured only there are used for every device, and the item's label says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpustack_core.types import Device, MemoryItem, RuntimeOverhead, RuntimeWorkload


__all__ = [
    "CONTEXT_BASE_BYTES",
    "CUBLAS_INIT_BYTES",
    "PAGE_BYTES",
    "STACK_BYTES_PER_THREAD",
    "cuda_runtime_overhead",
    "max_threads_per_sm",
    "sm_count",
]

_MIB = 2**20
_SOURCE = "docs/benchmarks/estimation-h200.md"

#: cudaMalloc and ggml-cuda's VMM pool map whole 2 MiB pages (H200: ``baseline.cu`` ``malloc_1B``
#: took 2 MiB, ``cuMemGetAllocationGranularity`` 2097152 B; every llama.cpp buffer rounded up).
PAGE_BYTES = 2 * _MIB
#: Default per-thread stack (``cudaLimitStackSize``) the driver reserves local memory for, for every
#: resident thread of every SM (H200: 1024 B printed by ``baseline.cu``; 1024 B x 132 x 2048 = 264 MiB,
#: and a 1536-byte frame added exactly (1536 - 1024) x 270336 B).
STACK_BYTES_PER_THREAD = 1024
#: The CUDA context of a bare process without its local-memory reservation (H200: ``cudaFree(0)``
#: 518 MiB - 264 MiB stack = 254 MiB; measured on this driver only).
CONTEXT_BASE_BYTES = 254 * _MIB
#: ``cublasCreate`` in a bare process (H200 ``baseline.cu``: 586 - 518 = 68 MiB).
CUBLAS_INIT_BYTES = 68 * _MIB
#: ggml-cuda kernel images the first graph loads lazily (H200: every llama-server held
#: 584 MiB - 518 MiB context = 66 MiB more than a bare context once it answered; sm_90 build).
_LLAMACPP_KERNELS_BYTES = 66 * _MIB
#: ggml-cuda's VMM pool after load: its first granule (H200: 2 MiB in all 45 runs).
_LLAMACPP_POOL_LOAD_BYTES = 2 * _MIB
#: The pool's peak per 512 tokens of ubatch at the first request (H200, ubatch 512: 8-18 MiB over
#: all weight types; ubatch 2048: 32 MiB Q8_0, 72 MiB F16 = 4 x 18).
_LLAMACPP_POOL_PEAK_PER_512_BYTES = 18 * _MIB
#: The same with flash attention off (H200 fa-off Q8_0 ubatch 512: 86 MiB).
_LLAMACPP_POOL_PEAK_NO_FA_PER_512_BYTES = 86 * _MIB
#: Kernels loaded at the first request when cuBLAS does not run (H200 Q8_0/Q4_K_M: 2 MiB).
_LLAMACPP_LAZY_KERNELS_BYTES = 2 * _MIB
#: Workspace llama.cpp gives each cuBLAS handle: 32 MiB from compute capability 9.0, 4 MiB below
#: (llama.cpp ``ggml/src/ggml-cuda/common.cuh``; H200: F16 first request grew 68 + 32 = 100 MiB).
_LLAMACPP_CUBLAS_WORKSPACE_SM90_BYTES = 32 * _MIB
_LLAMACPP_CUBLAS_WORKSPACE_BYTES = 4 * _MIB
#: Host RSS of a CUDA llama-server beyond the core's estimate of a CPU build's process (its buffers,
#: 21 MiB and the vocabulary): CUDA libraries' file pages, driver and runtime state. H200, upper ends
#: over 45 runs and 15 variants: 312-326 MiB after load; at the first request 17-27 MiB more without
#: cuBLAS, 90-165 MiB more with it (cuBLAS/cuBLASLt host state).
_LLAMACPP_HOST_LOAD_BYTES = 326 * _MIB
_LLAMACPP_HOST_REQUEST_BYTES = 27 * _MIB
_LLAMACPP_HOST_BLAS_REQUEST_BYTES = 165 * _MIB
#: The same with flash attention off (cuBLAS runs the KQ products; H200 fa-off Q8_0: 228 MiB).
_LLAMACPP_HOST_NO_FA_REQUEST_BYTES = 230 * _MIB

#: Resident threads per SM by compute capability (CUDA C++ Programming Guide, "Technical
#: Specifications per Compute Capability"). Unknown capabilities use 2048, the largest.
_THREADS_PER_SM = {
    "5": 2048, "6": 2048, "7.0": 2048, "7.2": 2048, "7.5": 1024, "8.0": 2048, "8.6": 1536,
    "8.7": 2048, "8.9": 1536, "9.0": 2048, "10.0": 2048, "10.3": 2048, "11.0": 1536, "12.0": 1536,
    "12.1": 1536,
}  # fmt: skip
#: CUDA cores (FP32 lanes) per SM by compute capability (CUDA C++ Programming Guide, "Arithmetic
#: Instructions" throughput table), to turn NVML's core count into SMs.
_CORES_PER_SM = {
    "5": 128, "6.0": 64, "6.1": 128, "6.2": 128, "7": 64, "8.0": 64, "8.6": 128, "8.7": 128,
    "8.9": 128, "9.0": 128, "10": 128, "11": 128, "12": 128,
}  # fmt: skip
#: SMs assumed when the device does not say (the H200's; the largest measured).
_DEFAULT_SM_COUNT = 132


def _lookup(table: dict[str, int], capability: str | None, default: int) -> int:
    if not capability:
        return default
    major = capability.split(".")[0]
    return table.get(capability, table.get(major, default))


def max_threads_per_sm(device: Device) -> int:
    """Resident threads per SM of ``device`` (2048 when its compute capability is unknown)."""
    return _lookup(_THREADS_PER_SM, device.compute_capability, 2048)


def sm_count(device: Device) -> int | None:
    """SMs of ``device``: ``extra["sm_count"]``, else NVML's core count / cores per SM; None if unknown."""
    if device.extra.get("sm_count", "").isdigit():
        return int(device.extra["sm_count"])
    per_sm = _lookup(_CORES_PER_SM, device.compute_capability, 0)
    if device.core_count and per_sm:
        return device.core_count // per_sm
    return None


def _capability_at_least(device: Device, major: int, minor: int) -> bool:
    try:
        got = tuple(int(x) for x in (device.compute_capability or "").split(".")[:2])
    except ValueError:
        return True
    return got >= (major, minor) if got else True


def cuda_runtime_overhead(device: Device, workload: RuntimeWorkload) -> RuntimeOverhead:
    """The CUDA context for every engine; ggml-cuda's kernels, pool and cuBLAS for llama.cpp."""
    from gpustack_core.types import MemoryItem, RuntimeOverhead

    sms = sm_count(device)
    threads = max_threads_per_sm(device)
    sm_text = f"{sms} SMs" if sms is not None else f"{_DEFAULT_SM_COUNT} SMs assumed (count unknown)"
    stack = STACK_BYTES_PER_THREAD * (sms or _DEFAULT_SM_COUNT) * threads
    items = [
        MemoryItem(
            label=f"CUDA context: 254 MiB (H200) + stack 1 KiB x {sm_text} x {threads} threads ({_SOURCE})",
            bytes=CONTEXT_BASE_BYTES + stack,
        )
    ]
    host: list[MemoryItem] = []
    if workload.engine != "llama.cpp":
        if workload.dense_blas:
            items.append(
                MemoryItem(label=f"cuBLAS handle (H200: 68 MiB, {_SOURCE})", bytes=CUBLAS_INIT_BYTES)
            )
        return RuntimeOverhead(
            device_items=tuple(items), allocation_granularity_bytes=PAGE_BYTES, sources=(_SOURCE,)
        )
    per_512 = (
        _LLAMACPP_POOL_PEAK_PER_512_BYTES
        if workload.flash_attention
        else _LLAMACPP_POOL_PEAK_NO_FA_PER_512_BYTES
    )
    peak = max(_LLAMACPP_POOL_LOAD_BYTES, -(-workload.micro_batch_tokens // 512) * per_512)
    items += [
        MemoryItem(
            label=f"ggml-cuda kernel images, loaded by the first graph (H200: 66 MiB, {_SOURCE})",
            bytes=_LLAMACPP_KERNELS_BYTES,
        ),
        MemoryItem(
            label=f"ggml-cuda VMM pool, first page (H200: 2 MiB, {_SOURCE})", bytes=_LLAMACPP_POOL_LOAD_BYTES
        ),
        MemoryItem(
            label=f"ggml-cuda VMM pool, peak at ubatch {workload.micro_batch_tokens} (H200, {_SOURCE})",
            bytes=peak - _LLAMACPP_POOL_LOAD_BYTES,
            first_request=True,
        ),
    ]
    blas = workload.dense_blas
    if not workload.flash_attention:
        growth, growth_text = _LLAMACPP_HOST_NO_FA_REQUEST_BYTES, "228 with flash attention off"
    elif blas:
        growth, growth_text = _LLAMACPP_HOST_BLAS_REQUEST_BYTES, "90-165"
    else:
        growth, growth_text = _LLAMACPP_HOST_REQUEST_BYTES, "17-27"
    host = [
        MemoryItem(
            label=f"CUDA runtime, driver and library pages in host memory (H200: 312-326 MiB, {_SOURCE})",
            bytes=_LLAMACPP_HOST_LOAD_BYTES,
        ),
        MemoryItem(
            label=f"host state grown at the first request{' (cuBLAS)' if blas else ''} "
            f"(H200: {growth_text} MiB, {_SOURCE})",
            bytes=growth,
            first_request=True,
        ),
    ]
    if blas:
        big = _capability_at_least(device, 9, 0)
        workspace = _LLAMACPP_CUBLAS_WORKSPACE_SM90_BYTES if big else _LLAMACPP_CUBLAS_WORKSPACE_BYTES
        items.append(
            MemoryItem(
                label=f"cuBLAS handle 68 MiB (H200) + llama.cpp workspace {workspace // _MIB} MiB "
                f"(ggml-cuda common.cuh; {_SOURCE})",
                bytes=CUBLAS_INIT_BYTES + workspace,
                first_request=True,
            )
        )
    else:
        items.append(
            MemoryItem(
                label=f"kernels loaded at the first request (H200: 2 MiB, {_SOURCE})",
                bytes=_LLAMACPP_LAZY_KERNELS_BYTES,
                first_request=True,
            )
        )
    return RuntimeOverhead(
        device_items=tuple(items),
        host_items=tuple(host),
        allocation_granularity_bytes=PAGE_BYTES,
        sources=(_SOURCE,),
    )
