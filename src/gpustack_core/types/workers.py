"""Workers: machines that run engines, as the scheduler and the server see them."""

from __future__ import annotations

from pydantic import Field

from ._base import Bytes, ValueModel
from ._enums import WorkerState
from .devices import Device

__all__ = ["WorkerInfo", "WorkerState"]


class WorkerInfo(ValueModel):
    """A worker and its resources: devices, host memory and CPU, labels and state."""

    name: str = Field(min_length=1)
    address: str = Field(default="127.0.0.1", description="host or IP other workers and the server reach")
    api_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="port of the worker's own HTTP API at address, if it serves one",
    )
    state: WorkerState = WorkerState.READY
    labels: dict[str, str] = Field(default_factory=dict)
    devices: tuple[Device, ...] = ()
    cpu_count: int = Field(default=1, ge=0)
    memory_total_bytes: Bytes = 0
    memory_used_bytes: Bytes = 0
    reserved_memory_bytes: Bytes = Field(default=0, description="host memory kept back from placements")
    reserved_device_memory_bytes: Bytes = Field(default=0, description="per-device memory kept back")
    engines: tuple[str, ...] = Field(default=(), description="engine plugin names this worker can run")
    cached_models: tuple[str, ...] = Field(default=(), description="model keys already in the worker's cache")
    managed_device_memory_used_bytes: dict[str, Bytes] = Field(
        default_factory=dict,
        description=(
            "device ref text ('worker-a:cuda:0') -> memory in use by processes gpustack-core manages, "
            "where the worker can tell (per-process accounting); lets the scheduler separate foreign use"
        ),
    )
