"""Exceptions raised by gpustack-core and by plugins that follow its contract.

The hierarchy::

    GPUStackError                       base of everything this library raises on purpose
    ├── PluginError                     a plugin could not be loaded or misbehaved
    │   ├── PluginLoadError             import failed, hook raised, wrong type, missing name
    │   └── DuplicatePluginError        two distributions registered the same name in one area
    ├── PluginNotFoundError             no enabled plugin has that name
    ├── AcceleratorError                raised by accelerator plugins
    │   ├── AcceleratorNotPresent       the vendor's devices/tools are absent: zero devices, not a failure
    │   ├── AcceleratorToolTimeout      a vendor tool hung and was killed
    │   └── AcceleratorOutputError      a vendor tool printed something the plugin cannot parse
    ├── ModelSourceError                raised by model-source plugins
    │   ├── ModelNotFoundError
    │   ├── ModelAccessDeniedError      gated or unauthorized: supply a token
    │   ├── OfflineModeError            offline mode and the file is not in the cache
    │   ├── DownloadError               network failure, disk full, verification failed
    │   └── InvalidModelReferenceError  a reference string that cannot be parsed
    ├── EngineError                     raised by engine plugins and the supervisor
    │   ├── EngineNotInstalledError
    │   ├── EngineArgumentError         a user-supplied flag the plugin owns, or a malformed one
    │   └── EngineLaunchError
    ├── EstimationError                 a model's metadata does not allow an estimate
    └── SchedulingError                 invalid scheduler input (unplaceable is a result, not an error)

Every message says what was wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AcceleratorError",
    "AcceleratorNotPresent",
    "AcceleratorOutputError",
    "AcceleratorToolTimeout",
    "DownloadError",
    "DuplicatePluginError",
    "EngineArgumentError",
    "EngineError",
    "EngineLaunchError",
    "EngineNotInstalledError",
    "EstimationError",
    "GPUStackError",
    "InvalidModelReferenceError",
    "ModelAccessDeniedError",
    "ModelNotFoundError",
    "ModelSourceError",
    "OfflineModeError",
    "PluginError",
    "PluginLoadError",
    "PluginNotFoundError",
    "SchedulingError",
]


class GPUStackError(Exception):
    """Base class of every exception gpustack-core raises on purpose."""


class PluginError(GPUStackError):
    """A plugin could not be loaded, or broke its contract while running."""


class PluginLoadError(PluginError):
    """A plugin failed while being loaded or registered (import error, hook raised, bad registration)."""


class DuplicatePluginError(PluginError):
    """Two distributions provide a plugin of the same name in the same area."""


class PluginNotFoundError(GPUStackError):
    """No enabled plugin of that name exists in the area asked for."""


class AcceleratorError(GPUStackError):
    """Raised by accelerator plugins."""


class AcceleratorNotPresent(AcceleratorError):
    """The vendor's devices, driver or tools are not on this machine.

    This is the normal outcome on a machine without that vendor's hardware: the host reports zero
    devices and the message as a single diagnostic line. Never a failure.
    """


class AcceleratorToolTimeout(AcceleratorError):
    """A vendor tool did not finish within the configured time and was killed."""


class AcceleratorOutputError(AcceleratorError):
    """A vendor tool's output could not be parsed. The message names the tool and what failed."""


class ModelSourceError(GPUStackError):
    """Raised by model-source plugins."""


class ModelNotFoundError(ModelSourceError):
    """The model, revision or file does not exist at the source."""


class ModelAccessDeniedError(ModelSourceError):
    """The model is gated or private: the source refused access. Supply a token."""


class OfflineModeError(ModelSourceError):
    """Offline mode is on and what was asked for is not in the local cache."""


class DownloadError(ModelSourceError):
    """A download failed: network, disk full, or size/hash verification."""


class InvalidModelReferenceError(ModelSourceError, ValueError):
    """A model reference string could not be parsed."""


class EngineError(GPUStackError):
    """Raised by engine plugins and the process supervisor."""


class EngineNotInstalledError(EngineError):
    """The requested engine version is not installed and could not be located."""


class EngineArgumentError(EngineError, ValueError):
    """A user-supplied engine argument is owned by the plugin or malformed."""


class EngineLaunchError(EngineError):
    """An engine process failed to start or never became ready."""


class EstimationError(GPUStackError):
    """The model's metadata does not allow a resource estimate."""


class SchedulingError(GPUStackError):
    """The scheduler's input is invalid. An unplaceable deployment is a result, not this error."""
