"""gpustack-core: a plugin-based GPU cluster manager for serving AI models, as a library.

Embedding in another Python service takes a :class:`PluginHost` and plain function calls; no
server, database or network is involved::

    from gpustack_core import PluginHost, ModelRef, SourceOptions, detect_devices

    host = PluginHost()
    for device in detect_devices(host).devices:
        print(device.accelerator, device.index, device.name, device.memory_total_bytes)

    source = host.model_source("local")
    meta = source.resolve(ModelRef.parse("local:/models/tiny.gguf"), SourceOptions(cache_dir="/tmp/c"))
    print(meta.format, meta.total_size_bytes)
"""

from typing import TYPE_CHECKING

from .__about__ import __version__
from ._lazy import lazy_exports

if TYPE_CHECKING:
    from .accelerators.detection import AcceleratorReport, DeviceInventory, detect_devices
    from .contracts import Accelerator, Engine, ModelSource, SchedulerPolicy
    from .errors import GPUStackError, PluginError, PluginNotFoundError
    from .hookspecs import hookimpl
    from .plugins import PluginHost, PluginRecord
    from .types import (
        Deployment,
        DetectOptions,
        Device,
        DeviceRef,
        LaunchSpec,
        ModelFormat,
        ModelMetadata,
        ModelRef,
        Placement,
        ResourceClaim,
        SourceOptions,
        WorkerInfo,
    )

# The public names are imported on first use (PEP 562), so ``import gpustack_core`` (and every
# ``gpustack_core.x`` import, which runs this file first) stays cheap: the CLI's ``--version``
# must not load pydantic, and a command loads only what it uses.
_LAZY = {
    "AcceleratorReport": ".accelerators.detection",
    "DeviceInventory": ".accelerators.detection",
    "detect_devices": ".accelerators.detection",
    "Accelerator": ".contracts",
    "Engine": ".contracts",
    "ModelSource": ".contracts",
    "SchedulerPolicy": ".contracts",
    "GPUStackError": ".errors",
    "PluginError": ".errors",
    "PluginNotFoundError": ".errors",
    "hookimpl": ".hookspecs",
    "PluginHost": ".plugins",
    "PluginRecord": ".plugins",
    "Deployment": ".types",
    "DetectOptions": ".types",
    "Device": ".types",
    "DeviceRef": ".types",
    "LaunchSpec": ".types",
    "ModelFormat": ".types",
    "ModelMetadata": ".types",
    "ModelRef": ".types",
    "Placement": ".types",
    "ResourceClaim": ".types",
    "SourceOptions": ".types",
    "WorkerInfo": ".types",
}

__all__ = [
    "Accelerator",
    "AcceleratorReport",
    "Deployment",
    "DetectOptions",
    "Device",
    "DeviceInventory",
    "DeviceRef",
    "Engine",
    "GPUStackError",
    "LaunchSpec",
    "ModelFormat",
    "ModelMetadata",
    "ModelRef",
    "ModelSource",
    "Placement",
    "PluginError",
    "PluginHost",
    "PluginNotFoundError",
    "PluginRecord",
    "ResourceClaim",
    "SchedulerPolicy",
    "SourceOptions",
    "WorkerInfo",
    "__version__",
    "detect_devices",
    "hookimpl",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
