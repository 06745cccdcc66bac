"""Deployments (what the user asks for) and placements (where the scheduler put it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import Bytes, ValueModel
from .devices import DeviceRef
from .models import ModelCategory, ModelRef
from .performance import PerformancePreset
from .resources import ResourceClaim

__all__ = ["Deployment", "LabelRequirement", "Placement", "PlacementStrategy"]

PlacementStrategy = Literal["spread", "binpack"]


class LabelRequirement(ValueModel):
    """One term of a label selector, as in Kubernetes.

    ``equals``/``not_equals`` compare ``values[0]``; ``in`` matches any of ``values``; ``exists``
    needs the key and ignores ``values``.
    """

    key: str
    operator: Literal["equals", "not_equals", "in", "exists"]
    values: tuple[str, ...] = ()


class Deployment(ValueModel):
    """A model the user wants served: model, engine, replicas and constraints."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: ModelRef
    engine: str = Field(description="engine plugin name, e.g. 'llama.cpp'")
    engine_version: str | None = Field(default=None, description="pinned engine version; None: default")
    category: ModelCategory = ModelCategory.LLM
    replicas: int = Field(default=1, ge=0)
    label_selector: tuple[LabelRequirement, ...] = ()
    gpu_selector: tuple[DeviceRef, ...] = Field(default=(), description="explicit devices allowed")
    gpus_per_replica: int | None = Field(default=None, ge=0, description="None: as the estimate needs")
    placement_strategy: PlacementStrategy = "spread"
    allow_cpu_offload: bool = True
    allow_multi_worker: bool = False
    extra_args: tuple[str, ...] = Field(default=(), description="user-supplied engine arguments")
    env: dict[str, str] = Field(default_factory=dict)
    served_model_name: str | None = None
    context_length: int | None = Field(default=None, ge=1)
    performance: PerformancePreset | None = Field(
        default=None, description="latency/throughput mode, speculative decoding, KV-cache extension"
    )


class Placement(ValueModel):
    """Where one replica of a deployment runs and what it claimed.

    ``devices`` are on ``worker`` except in a multi-worker placement, where ``subordinate_workers``
    run the extra shards (engine RPC servers or Ray nodes).
    """

    deployment: str
    replica: int = Field(ge=0)
    worker: str
    devices: tuple[DeviceRef, ...] = ()
    claim: ResourceClaim
    subordinate_workers: tuple[str, ...] = ()
    claimed_device_memory_bytes: dict[str, Bytes] = Field(
        default_factory=dict, description="device ref text -> bytes claimed on it"
    )
    claimed_host_memory_bytes: dict[str, Bytes] = Field(
        default_factory=dict, description="worker name -> host bytes claimed on it"
    )
