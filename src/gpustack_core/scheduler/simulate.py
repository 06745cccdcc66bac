"""Simulated clusters for benchmarks, tests and examples (seeded, so reproducible)."""

from __future__ import annotations

import random

from gpustack_core.types import (
    Deployment,
    Device,
    DeviceClaim,
    ModelRef,
    Placement,
    ResourceClaim,
    ResourceEstimate,
    WorkerInfo,
    WorkerState,
)

__all__ = ["GIB", "simple_deployment", "simple_estimate", "simulate_cluster"]

GIB = 2**30

#: (accelerator, vendor, device name, memory GiB) of the simulated device kinds.
_KINDS: tuple[tuple[str, str, str, int], ...] = (
    ("cuda", "nvidia", "NVIDIA H200", 141),
    ("cuda", "nvidia", "NVIDIA A100-SXM4-80GB", 80),
    ("cuda", "nvidia", "NVIDIA L40S", 48),
    ("rocm", "amd", "AMD Instinct MI300X", 192),
    ("cann", "ascend", "Ascend 910B", 64),
)


def simulate_cluster(
    workers: int,
    gpus_per_worker: int = 8,
    *,
    seed: int = 0,
    occupied: float = 0.5,
    not_ready: float = 0.02,
    foreign_use: float = 0.1,
) -> tuple[list[WorkerInfo], list[Placement]]:
    """``workers`` workers of ``gpus_per_worker`` devices of mixed vendors, partly occupied.

    Parameters:
        workers: number of workers.
        gpus_per_worker: devices per worker (one kind per worker).
        seed: random seed; the same arguments give the same cluster.
        occupied: fraction of devices holding a placement of an existing deployment.
        not_ready: fraction of workers in state ``not_ready``.
        foreign_use: fraction of devices with memory used by processes we do not manage.

    Returns:
        The workers and the existing placements (deployments ``existing-N``).
    """
    rng = random.Random(seed)
    result: list[WorkerInfo] = []
    placements: list[Placement] = []
    for w in range(workers):
        accelerator, vendor, name, gib = _KINDS[rng.randrange(len(_KINDS))]
        worker_name = f"worker-{w:05d}"
        devices = []
        for i in range(gpus_per_worker):
            total = gib * GIB
            used = 0
            claim_bytes = 0
            if rng.random() < occupied:
                claim_bytes = rng.randrange(total // 8, total * 7 // 8)
                used = claim_bytes
            if rng.random() < foreign_use:
                used = min(total, used + rng.randrange(1, total // 4))
            devices.append(
                Device(
                    accelerator=accelerator,
                    vendor=vendor,
                    index=i,
                    uuid=f"{worker_name}-{accelerator}-{i}",
                    name=name,
                    memory_total_bytes=total,
                    memory_used_bytes=used,
                )
            )
            if claim_bytes:
                ref = f"{worker_name}:{accelerator}:{i}"
                placements.append(
                    Placement(
                        deployment=f"existing-{w}-{i}",
                        replica=0,
                        worker=worker_name,
                        devices=(devices[-1].ref(worker_name),),
                        claim=ResourceClaim(
                            strategy="single_device", devices=(DeviceClaim(memory_bytes=claim_bytes),)
                        ),
                        claimed_device_memory_bytes={ref: claim_bytes},
                    )
                )
        result.append(
            WorkerInfo(
                name=worker_name,
                state=WorkerState.NOT_READY if rng.random() < not_ready else WorkerState.READY,
                labels={"zone": f"zone-{w % 4}", "vendor": vendor},
                devices=tuple(devices),
                cpu_count=64,
                memory_total_bytes=1024 * GIB,
                memory_used_bytes=rng.randrange(16 * GIB, 256 * GIB),
                reserved_memory_bytes=8 * GIB,
                reserved_device_memory_bytes=1 * GIB,
            )
        )
    return result, placements


def simple_deployment(name: str = "llm", **fields: object) -> Deployment:
    """A deployment of a small GGUF model on llama.cpp; ``fields`` override any field."""
    data: dict[str, object] = {
        "name": name,
        "model": ModelRef(source="huggingface", id="Qwen/Qwen2.5-7B-Instruct-GGUF", selector="Q4_K_M"),
        "engine": "llama.cpp",
    }
    data.update(fields)
    return Deployment.model_validate(data)


def simple_estimate(
    gib_per_gpu: float, *, tp_sizes: tuple[int, ...] = (), host_gib: float = 0.0
) -> ResourceEstimate:
    """A one-GPU claim of ``gib_per_gpu`` plus a multi-GPU claim per tensor-parallel size."""
    per = int(gib_per_gpu * GIB)
    claims = [
        ResourceClaim(
            strategy="single_device",
            devices=(DeviceClaim(memory_bytes=per),),
            host_memory_bytes=int(host_gib * GIB),
        )
    ]
    for tp in tp_sizes:
        claims.append(
            ResourceClaim(
                strategy="multi_device",
                devices=tuple(DeviceClaim(memory_bytes=per // tp + GIB) for _ in range(tp)),
                tensor_parallel_size=tp,
                host_memory_bytes=int(host_gib * GIB),
            )
        )
    return ResourceEstimate(model="simulated", claims=tuple(claims))
