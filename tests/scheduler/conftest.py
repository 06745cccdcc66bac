"""Builders for scheduler tests: workers, devices, claims (sizes in GiB for readability)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from gpustack_core.types import (
    Deployment,
    Device,
    DeviceClaim,
    DeviceRef,
    ModelRef,
    Placement,
    ResourceClaim,
    ResourceEstimate,
    WorkerInfo,
)

GIB = 2**30


def make_device(
    index: int,
    total_gib: float,
    used_gib: float | None = 0,
    *,
    accelerator: str = "cuda",
    vendor: str = "nvidia",
) -> Device:
    """A device of ``total_gib`` with ``used_gib`` reported in use (``None``: unknown)."""
    return Device(
        accelerator=accelerator,
        vendor=vendor,
        index=index,
        uuid=f"uuid-{accelerator}-{index}-{total_gib}-{used_gib}",
        name=f"{vendor} test GPU",
        memory_total_bytes=int(total_gib * GIB),
        memory_used_bytes=None if used_gib is None else int(used_gib * GIB),
    )


def make_worker(name: str, *devices: Device, **fields: Any) -> WorkerInfo:
    """A ready worker with 256 GiB host memory (override any field)."""
    data: dict[str, Any] = {
        "name": name,
        "devices": devices,
        "memory_total_bytes": 256 * GIB,
        "memory_used_bytes": 16 * GIB,
    }
    data.update(fields)
    return WorkerInfo.model_validate(data)


def one_gpu(gib: float, host_gib: float = 0) -> ResourceClaim:
    """A one-GPU claim."""
    return ResourceClaim(
        strategy="single_device",
        devices=(DeviceClaim(memory_bytes=int(gib * GIB)),),
        host_memory_bytes=int(host_gib * GIB),
    )


def multi_gpu(
    gib_each: float, count: int, strategy: str = "multi_device", host_gib: float = 0
) -> ResourceClaim:
    """A claim of ``count`` devices of ``gib_each``."""
    return ResourceClaim.model_validate(
        {
            "strategy": strategy,
            "devices": [{"memory_bytes": int(gib_each * GIB)} for _ in range(count)],
            "tensor_parallel_size": count if strategy == "multi_device" else 1,
            "host_memory_bytes": int(host_gib * GIB),
        }
    )


def estimate(*claims: ResourceClaim) -> ResourceEstimate:
    """An estimate with ``claims`` in that order."""
    return ResourceEstimate(model="test", claims=claims)


def deployment(name: str = "app", **fields: Any) -> Deployment:
    """A deployment of a test model on llama.cpp."""
    data: dict[str, Any] = {
        "name": name,
        "model": ModelRef(source="local", id="/models/m.gguf"),
        "engine": "llama.cpp",
    }
    data.update(fields)
    return Deployment.model_validate(data)


def placement(
    dep: str, replica: int, worker: str, index: int, gib: float, accelerator: str = "cuda"
) -> Placement:
    """An existing one-GPU placement claiming ``gib`` on ``worker:accelerator:index``."""
    ref = DeviceRef(worker=worker, accelerator=accelerator, index=index)
    return Placement(
        deployment=dep,
        replica=replica,
        worker=worker,
        devices=(ref,),
        claim=one_gpu(gib),
        claimed_device_memory_bytes={str(ref): int(gib * GIB)},
    )


@pytest.fixture(scope="session")
def b() -> SimpleNamespace:
    """The builders (session scope, so hypothesis tests may use them too)."""
    return SimpleNamespace(
        GIB=GIB,
        device=make_device,
        worker=make_worker,
        one_gpu=one_gpu,
        multi_gpu=multi_gpu,
        estimate=estimate,
        deployment=deployment,
        placement=placement,
    )
