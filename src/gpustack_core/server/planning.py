"""Model metadata and resource estimates for scheduling, resolved on the server through plugins.

The estimate comes from :mod:`gpustack_core.estimate` when that module is installed; without it
the server claims the model's file size (plus 20 % and 256 MiB) of host memory, CPU only, and says
so in the estimate's notes.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from gpustack_core.plugins import PluginHost
from gpustack_core.types import Deployment, ModelMetadata, ResourceClaim, ResourceEstimate, SourceOptions

__all__ = ["EstimateCache", "fallback_estimate"]

logger = logging.getLogger(__name__)


def fallback_estimate(metadata: ModelMetadata) -> ResourceEstimate:
    """A conservative CPU-only claim from file sizes, used when no estimator is installed."""
    size = metadata.total_size_bytes
    return ResourceEstimate(
        model=str(metadata.ref),
        claims=(ResourceClaim(strategy="cpu_only", host_memory_bytes=int(size * 1.2) + 256 * 2**20),),
        notes=("gpustack_core.estimate is not installed: CPU-only claim of file size + 20 % + 256 MiB",),
    )


class EstimateCache:
    """Resolves and estimates each distinct (model, context length) once per server process."""

    def __init__(self, host: PluginHost, cache_dir: Path) -> None:
        self._host = host
        self._cache_dir = cache_dir
        self._cache: dict[str, ResourceEstimate] = {}

    def estimate(self, deployment: Deployment) -> ResourceEstimate:
        """The estimate for a deployment (blocking: resolves metadata through the source plugin).

        Raises:
            GPUStackError: the model cannot be resolved or estimated (the message says why).
        """
        key = f"{deployment.model}|{deployment.context_length}|{deployment.engine}"
        if key in self._cache:
            return self._cache[key]
        source = self._host.model_source(deployment.model.source)
        options = SourceOptions(cache_dir=str(self._cache_dir))
        with self._host.guard("sources", source.name, "resolve()"):
            metadata = source.resolve(deployment.model, options)
        estimate = self._estimate(metadata, deployment)
        self._cache[key] = estimate
        return estimate

    def forget(self) -> None:
        """Drop cached estimates (after a model changed on disk)."""
        self._cache.clear()

    def _estimate(self, metadata: ModelMetadata, deployment: Deployment) -> ResourceEstimate:
        try:
            module: Any = importlib.import_module("gpustack_core.estimate")
        except ImportError:
            return fallback_estimate(metadata)
        options_type = getattr(module, "EstimateOptions", None)
        kwargs: dict[str, Any] = {}
        if options_type is not None and deployment.context_length is not None:
            fields = getattr(options_type, "model_fields", {})
            if "context_length" in fields:
                kwargs["context_length"] = deployment.context_length
        options = options_type(**kwargs) if options_type is not None else None
        result: ResourceEstimate = module.estimate_model(metadata, options)
        return result
