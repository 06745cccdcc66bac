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

from .__about__ import __version__
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
