"""Resource claims: what a model needs, per device, as the estimator computes it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import Bytes, ValueModel

__all__ = ["ClaimStrategy", "DeviceClaim", "MemoryItem", "ResourceClaim", "ResourceEstimate"]

ClaimStrategy = Literal["single_device", "multi_device", "multi_worker", "partial_offload", "cpu_only"]


class MemoryItem(ValueModel):
    """One line of an estimate's breakdown: what it is for and how many bytes."""

    label: str = Field(description="e.g. 'weights (Q4_K)', 'KV cache f16 x 4096 tokens', 'compute buffer'")
    bytes: Bytes


class DeviceClaim(ValueModel):
    """Memory one device must have free for its share of a model."""

    memory_bytes: Bytes
    items: tuple[MemoryItem, ...] = ()


class ResourceClaim(ValueModel):
    """What one placement of a model needs: a claim per device plus host memory.

    ``devices`` empty means CPU-only. For ``partial_offload`` claims, ``offloaded_layers`` of
    ``total_layers`` live on the devices and the rest in host memory.
    """

    strategy: ClaimStrategy
    devices: tuple[DeviceClaim, ...] = ()
    host_memory_bytes: Bytes = 0
    host_items: tuple[MemoryItem, ...] = ()
    offloaded_layers: int | None = Field(default=None, ge=0)
    total_layers: int | None = Field(default=None, ge=0)
    tensor_parallel_size: int = Field(default=1, ge=1)
    notes: tuple[str, ...] = ()

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
