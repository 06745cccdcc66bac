"""Value types of gpustack-core (pydantic v2, frozen, JSON round-trip safe; sizes in bytes)."""

from ._base import Bytes, ValueModel
from .deployments import Deployment, LabelRequirement, Placement, PlacementStrategy
from .devices import DetectOptions, Device, DeviceHealth, DeviceRef
from .engines import (
    EngineCapabilities,
    EngineInstallation,
    EngineOptions,
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
from .resources import ClaimStrategy, DeviceClaim, MemoryItem, ResourceClaim, ResourceEstimate
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
    "HttpProbe",
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
    "Placement",
    "PlacementStrategy",
    "PolicyContext",
    "Rejection",
    "ResourceClaim",
    "ResourceEstimate",
    "SourceOptions",
    "ValueModel",
    "WorkerInfo",
    "WorkerState",
]
