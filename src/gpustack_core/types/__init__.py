"""Value types of gpustack-core (pydantic v2, frozen, JSON round-trip safe; sizes in bytes)."""

from ._base import Bytes, ValueModel
from .deployments import Deployment, LabelRequirement, Placement, PlacementStrategy
from .devices import DetectOptions, Device, DeviceHealth, DeviceRef
from .engines import (
    EngineCapabilities,
    EngineInstallation,
    EngineOptions,
    GroupMember,
    HttpProbe,
    LaunchRequest,
    LaunchSpec,
)
from .models import (
    DownloadProgress,
    DownloadResult,
    GGUFTensor,
    ModelCategory,
    ModelFile,
    ModelFormat,
    ModelMetadata,
    ModelRef,
    PeerCache,
    SourceOptions,
)
from .performance import (
    KVCacheExtension,
    PerformancePreset,
    SpeculativeDecoding,
    preset_refusal,
)
from .resources import (
    ClaimStrategy,
    DeviceClaim,
    MemoryItem,
    ResourceClaim,
    ResourceEstimate,
    RuntimeOverhead,
    RuntimeWorkload,
)
from .scheduling import Candidate, PolicyContext, Rejection
from .workers import WorkerInfo, WorkerState

__all__ = [
    "Bytes",
    "Candidate",
    "ClaimStrategy",
    "Deployment",
    "DetectOptions",
    "Device",
    "DeviceClaim",
    "DeviceHealth",
    "DeviceRef",
    "DownloadProgress",
    "DownloadResult",
    "EngineCapabilities",
    "EngineInstallation",
    "EngineOptions",
    "GGUFTensor",
    "GroupMember",
    "HttpProbe",
    "KVCacheExtension",
    "LabelRequirement",
    "LaunchRequest",
    "LaunchSpec",
    "MemoryItem",
    "ModelCategory",
    "ModelFile",
    "ModelFormat",
    "ModelMetadata",
    "ModelRef",
    "PeerCache",
    "PerformancePreset",
    "Placement",
    "PlacementStrategy",
    "PolicyContext",
    "Rejection",
    "ResourceClaim",
    "ResourceEstimate",
    "RuntimeOverhead",
    "RuntimeWorkload",
    "SourceOptions",
    "SpeculativeDecoding",
    "ValueModel",
    "WorkerInfo",
    "WorkerState",
    "preset_refusal",
]
