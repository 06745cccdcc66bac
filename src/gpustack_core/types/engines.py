"""Engines: what they serve, where they are installed, and how to launch them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import ValueModel
from .deployments import Deployment, Placement
from .devices import Device
from .models import ModelCategory, ModelFormat

__all__ = [
    "EngineCapabilities",
    "EngineInstallation",
    "EngineOptions",
    "GroupMember",
    "HttpProbe",
    "LaunchRequest",
    "LaunchSpec",
]


class EngineCapabilities(ValueModel):
    """What an engine serves and how it can be spread."""

    formats: tuple[ModelFormat, ...]
    categories: tuple[ModelCategory, ...]
    vendors: tuple[str, ...] = Field(description="device vendors it runs on; 'cpu' for CPU-only")
    tensor_parallel: bool = False
    pipeline_parallel: bool = False
    multi_worker: bool = False
    cpu_offload: bool = False
    multi_worker_order: Literal["subordinates_first", "head_first"] = Field(
        default="subordinates_first",
        description="multi-worker start order: 'subordinates_first' starts ranks 1.. and the head once "
        "they are ready, with their addresses in `rpc_servers` (llama.cpp RPC); 'head_first' starts the "
        "head at once and the other ranks join its `head_address` (Ray, torch distributed)",
    )
    subordinates_need_weights: bool = Field(
        default=True,
        description="whether ranks 1.. read the model files (False: they are not downloaded there, "
        "e.g. llama.cpp's rpc-server receives tensors from the head)",
    )
    openai_endpoints: tuple[str, ...] = Field(
        default=(), description="OpenAI paths it serves, e.g. '/v1/chat/completions'"
    )
    performance_modes: tuple[str, ...] = Field(
        default=(),
        description="modes besides 'balanced' it maps to flags: 'latency', 'throughput'",
    )
    speculative_methods: tuple[str, ...] = Field(
        default=(), description="speculative decoding methods: 'eagle3', 'mtp', 'ngram', 'draft_model'"
    )
    kv_cache_extensions: tuple[str, ...] = Field(
        default=(), description="KV-cache extensions: 'lmcache', 'hicache'"
    )


class EngineInstallation(ValueModel):
    """One installed version of an engine."""

    engine: str
    version: str
    executable: str = Field(description="absolute path of the program to run")
    prefix: str | None = Field(default=None, description="environment or directory the version lives in")
    origin: Literal["installed", "located", "built"] = "installed"


class HttpProbe(ValueModel):
    """An HTTP GET against the engine that succeeds with ``expect_status``."""

    path: str = "/health"
    expect_status: int = 200
    timeout_s: float = Field(default=2.0, gt=0)


class GroupMember(ValueModel):
    """One worker of a multi-worker placement as every rank of the group sees it: its rank, its
    address and the facts of its devices in the placement. Engines that need the whole group's
    topology before any process starts (MindIE's rank table) read it from ``LaunchRequest.group``."""

    rank: int = Field(ge=0, description="0: the head; 1..: the subordinates in placement order")
    worker: str
    address: str = Field(description="host or IP the other workers reach this worker at")
    devices: tuple[Device, ...] = Field(default=(), description="this worker's devices in the placement")


class LaunchRequest(ValueModel):
    """Everything an engine plugin needs to build a launch spec for one replica on one worker."""

    deployment: Deployment
    placement: Placement
    installation: EngineInstallation
    model_paths: tuple[str, ...] = Field(description="local paths of the model's selected files")
    devices: tuple[Device, ...] = Field(default=(), description="devices of this worker in the placement")
    visibility_env: dict[str, str] = Field(
        default_factory=dict, description="from the accelerator plugin: makes only `devices` visible"
    )
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    rpc_servers: tuple[str, ...] = Field(default=(), description="host:port of subordinate RPC servers")
    node_rank: int = Field(default=0, ge=0)
    node_count: int = Field(default=1, ge=1)
    head_address: str | None = Field(default=None, description="multi-node: host:port of the head")
    group: tuple[GroupMember, ...] = Field(
        default=(),
        description="multi-node: every worker of the group in rank order, with its address and its "
        "devices in the placement (empty for a single-worker instance, or when the server could not "
        "resolve a worker)",
    )
    work_dir: str | None = Field(
        default=None,
        description="a directory of this instance's own that the engine may write to (generated "
        "configs, caches); created by the worker. None: the engine needs none",
    )


class LaunchSpec(ValueModel):
    """A process to start: argv, environment, and how to tell it is ready and healthy."""

    argv: tuple[str, ...] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict, description="added to the worker's environment")
    cwd: str | None = None
    port: int = Field(ge=1, le=65535)
    served_model_name: str
    readiness: HttpProbe = HttpProbe()
    health: HttpProbe = HttpProbe()
    ready_timeout_s: float = Field(default=600.0, gt=0)
    readiness_mode: Literal["http", "tcp", "process"] = Field(
        default="http",
        description="how readiness and health are checked: 'http' GETs the probes' paths; 'tcp' waits "
        "for the port to accept connections (e.g. an RPC server); 'process' only needs it alive "
        "(e.g. a Ray worker node)",
    )
    probe_host: str = Field(
        default="127.0.0.1",
        description="address the supervisor probes readiness and health on (the engine's listen "
        "address when it is not a wildcard)",
    )
    files: dict[str, str] = Field(
        default_factory=dict,
        description="text files to write before starting (path, absolute or relative to cwd -> "
        "content), e.g. a generated engine config",
    )


class EngineOptions(ValueModel):
    """Where engine versions live and how to install them."""

    engines_dir: str = Field(description="root under which each engine version gets its own environment")
    wheelhouse: str | None = Field(default=None, description="offline wheel directory for installs")
    offline: bool = False
