"""Value types of gpustack-core (pydantic v2, frozen, JSON round-trip safe; sizes in bytes)."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._base import Bytes, ValueModel
    from ._enums import ModelCategory, ModelFormat, WorkerState
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
        ModelFile,
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
    from .workers import WorkerInfo

# The names are imported on first use (PEP 562), so that ``from gpustack_core.types import
# ModelCategory`` (an enumeration, from ``_enums``) does not load pydantic: a plugin's import stays
# cheap, and ``gpustack-core plugins`` lists plugins without building the models.
_LAZY = {
    "Bytes": "._base",
    "Candidate": ".scheduling",
    "ClaimStrategy": ".resources",
    "Deployment": ".deployments",
    "DetectOptions": ".devices",
    "Device": ".devices",
    "DeviceClaim": ".resources",
    "DeviceHealth": ".devices",
    "DeviceRef": ".devices",
    "DownloadProgress": ".models",
    "DownloadResult": ".models",
    "EngineCapabilities": ".engines",
    "EngineInstallation": ".engines",
    "EngineOptions": ".engines",
    "GGUFTensor": ".models",
    "GroupMember": ".engines",
    "HttpProbe": ".engines",
    "KVCacheExtension": ".performance",
    "LabelRequirement": ".deployments",
    "LaunchRequest": ".engines",
    "LaunchSpec": ".engines",
    "MemoryItem": ".resources",
    "ModelCategory": "._enums",
    "ModelFile": ".models",
    "ModelFormat": "._enums",
    "ModelMetadata": ".models",
    "ModelRef": ".models",
    "PeerCache": ".models",
    "PerformancePreset": ".performance",
    "Placement": ".deployments",
    "PlacementStrategy": ".deployments",
    "PolicyContext": ".scheduling",
    "Rejection": ".scheduling",
    "ResourceClaim": ".resources",
    "ResourceEstimate": ".resources",
    "RuntimeOverhead": ".resources",
    "RuntimeWorkload": ".resources",
    "SourceOptions": ".models",
    "SpeculativeDecoding": ".performance",
    "ValueModel": "._base",
    "WorkerInfo": ".workers",
    "WorkerState": "._enums",
    "preset_refusal": ".performance",
}

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

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
