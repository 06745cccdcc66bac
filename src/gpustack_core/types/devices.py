"""Devices as accelerator plugins report them."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from ._base import Bytes, ValueModel

__all__ = ["DetectOptions", "Device", "DeviceHealth", "DeviceRef"]

_DEVICE_REF = re.compile(r"^(?P<worker>[^:\s]+):(?P<accelerator>[a-z0-9_.-]+):(?P<index>\d+)$")


class Device(ValueModel):
    """One device (GPU, NPU, or the host CPU) found by an accelerator plugin.

    ``vendor`` is an open string (``"nvidia"``, ``"amd"``, ``"ascend"``, ``"apple"``, ``"cpu"``...):
    a new vendor never needs a change in the core. Memory is in bytes; ``memory_used_bytes`` is what
    the vendor's source reports as in use, including memory held by processes gpustack-core does not
    manage, and ``None`` where the source cannot tell.
    """

    accelerator: str = Field(description="name of the accelerator plugin that found the device, e.g. 'cuda'")
    vendor: str = Field(description="vendor, lower case, e.g. 'nvidia'")
    device_type: Literal["gpu", "npu", "cpu", "other"] = "gpu"
    index: int = Field(ge=0, description="index as the vendor's runtime numbers it (before visibility masks)")
    uuid: str = Field(min_length=1, description="stable identifier: vendor UUID or serial number")
    name: str
    architecture: str | None = Field(default=None, description="e.g. 'hopper', 'gfx942', 'Ascend910B'")
    compute_capability: str | None = Field(default=None, description="e.g. '9.0' for NVIDIA")
    memory_total_bytes: Bytes
    memory_used_bytes: Bytes | None = None
    memory_is_unified: bool = Field(default=False, description="memory is shared with the host (Apple, CPU)")
    core_count: int | None = Field(default=None, ge=0)
    utilization_percent: float | None = Field(default=None, ge=0, le=100)
    temperature_celsius: float | None = None
    driver_version: str | None = None
    runtime_version: str | None = None
    pci_bus_id: str | None = None
    numa_node: int | None = None
    parent_uuid: str | None = Field(default=None, description="for a partition (MIG): the physical device")
    extra: dict[str, str] = Field(default_factory=dict, description="vendor-specific facts, as strings")

    @model_validator(mode="after")
    def _used_not_above_total(self) -> Device:
        if self.memory_used_bytes is not None and self.memory_used_bytes > self.memory_total_bytes:
            raise ValueError(
                f"memory_used_bytes ({self.memory_used_bytes}) exceeds memory_total_bytes "
                f"({self.memory_total_bytes}) for {self.accelerator}:{self.index}"
            )
        return self

    @property
    def memory_free_bytes(self) -> int | None:
        """Total minus used, or ``None`` when used memory is unknown."""
        if self.memory_used_bytes is None:
            return None
        return self.memory_total_bytes - self.memory_used_bytes

    def ref(self, worker: str) -> DeviceRef:
        """The cluster-wide reference of this device on ``worker``."""
        return DeviceRef(worker=worker, accelerator=self.accelerator, index=self.index)


class DeviceRef(ValueModel):
    """A device in the cluster, written ``worker:accelerator:index`` (``worker-a:cuda:0``)."""

    worker: str
    accelerator: str
    index: int = Field(ge=0)

    @classmethod
    def parse(cls, text: str) -> DeviceRef:
        """Parse ``worker:accelerator:index``; raises ``ValueError`` naming the expected form."""
        match = _DEVICE_REF.match(text.strip())
        if match is None:
            raise ValueError(f"invalid device reference {text!r}: expected 'worker:accelerator:index'")
        return cls(worker=match["worker"], accelerator=match["accelerator"], index=int(match["index"]))

    def __str__(self) -> str:
        return f"{self.worker}:{self.accelerator}:{self.index}"


class DetectOptions(ValueModel):
    """Options every accelerator plugin honours while detecting."""

    tool_timeout_s: float = Field(default=5.0, gt=0, description="kill a vendor tool after this many seconds")
    env: dict[str, str] | None = Field(
        default=None, description="environment for vendor tools; None means the current process environment"
    )


class DeviceHealth(ValueModel):
    """Result of an accelerator plugin's health check for one device."""

    uuid: str
    healthy: bool
    message: str = ""
