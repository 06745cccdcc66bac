"""Resource claims: what a model needs, per device, as the estimator computes it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import Bytes, ValueModel

__all__ = [
    "ClaimStrategy",
    "DeviceClaim",
    "MemoryItem",
    "ResourceClaim",
    "ResourceEstimate",
    "RuntimeOverhead",
    "RuntimeWorkload",
]

ClaimStrategy = Literal["single_device", "multi_device", "multi_worker", "partial_offload", "cpu_only"]


class MemoryItem(ValueModel):
    """One line of an estimate's breakdown: what it is for and how many bytes."""

    label: str = Field(description="e.g. 'weights (Q4_K)', 'KV cache f16 x 4096 tokens', 'compute buffer'")
    bytes: Bytes
    first_request: bool = Field(
        default=False,
        description="held only from the first request on (library workspaces, scratch pools), "
        "not yet when the model has loaded",
    )


class DeviceClaim(ValueModel):
    """Memory one device must have free for its share of a model."""

    memory_bytes: Bytes
    items: tuple[MemoryItem, ...] = ()

    @property
    def after_load_bytes(self) -> int:
        """``memory_bytes`` less the items that appear only at the first request."""
        return self.memory_bytes - sum(i.bytes for i in self.items if i.first_request)


class ResourceClaim(ValueModel):
    """What one placement of a model needs: a claim per device plus host memory.

    ``devices`` empty means CPU-only. For ``partial_offload`` claims, ``offloaded_layers`` of
    ``total_layers`` live on the devices and the rest in host memory. A ``multi_worker`` claim with
    ``worker_host_memory_bytes`` and no devices spreads the model over the host memory of several
    workers (the CPU of each; llama.cpp's RPC servers): one share per worker, the head's first.
    """

    strategy: ClaimStrategy
    devices: tuple[DeviceClaim, ...] = ()
    host_memory_bytes: Bytes = 0
    host_items: tuple[MemoryItem, ...] = ()
    offloaded_layers: int | None = Field(default=None, ge=0)
    total_layers: int | None = Field(default=None, ge=0)
    tensor_parallel_size: int = Field(default=1, ge=1)
    worker_host_memory_bytes: tuple[Bytes, ...] = Field(
        default=(),
        description="a multi_worker claim on the CPU: the host memory each worker of the group needs, "
        "the head's first (its length is the number of workers); empty for every other claim",
    )
    notes: tuple[str, ...] = ()

    @property
    def spans_worker_hosts(self) -> bool:
        """A ``multi_worker`` claim over several workers' CPUs (no devices; one host share per worker)."""
        return self.strategy == "multi_worker" and not self.devices and len(self.worker_host_memory_bytes) > 1

    @property
    def device_count(self) -> int:
        """Number of devices the claim spans."""
        return len(self.devices)

    @property
    def total_device_memory_bytes(self) -> int:
        """Sum over devices."""
        return sum(d.memory_bytes for d in self.devices)


class ResourceEstimate(ValueModel):
    """The estimator's answer for one model: alternative claims in order of preference."""

    model: str = Field(description="model reference or path the estimate is for")
    claims: tuple[ResourceClaim, ...]
    notes: tuple[str, ...] = ()


class RuntimeWorkload(ValueModel):
    """What an engine process does on a device, as far as the vendor runtime's own costs depend on it.

    The estimator describes the process; :meth:`gpustack_core.contracts.Accelerator.runtime_overhead`
    answers with what the vendor's runtime adds (context, libraries, allocation granularity).
    """

    engine: str = Field(description="engine family, e.g. 'llama.cpp', 'vllm', 'sglang'")
    weight_types: tuple[str, ...] = Field(
        default=(), description="types of the matrices on the device, e.g. ('Q8_0', 'F32') or ('bfloat16',)"
    )
    dense_blas: bool = Field(
        default=False,
        description="the process multiplies matrices through the vendor's BLAS library (cuBLAS, hipBLAS...)",
    )
    micro_batch_tokens: int = Field(
        default=512, ge=1, description="tokens per forward pass (llama.cpp ubatch)"
    )
    flash_attention: bool = True


class RuntimeOverhead(ValueModel):
    """What the vendor runtime adds to one process on one device, beyond the engine's own buffers.

    ``device_items`` are added to every device the process uses, ``host_items`` once to the process's
    host memory; items with ``first_request`` set appear only once the process has served a request.
    Every device buffer the estimator lists is rounded up to ``allocation_granularity_bytes``.
    ``sources`` cites where the numbers come from (a measurement in docs/benchmarks, vendor docs).
    """

    device_items: tuple[MemoryItem, ...] = ()
    host_items: tuple[MemoryItem, ...] = ()
    allocation_granularity_bytes: int = Field(default=1, ge=1)
    sources: tuple[str, ...] = ()
