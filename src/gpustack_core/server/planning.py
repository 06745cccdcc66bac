"""Model metadata and resource estimates for scheduling, resolved on the server through plugins.

The estimate comes from :func:`gpustack_core.estimate.estimate_model` (GGUF headers read from the
file for local models, from the source's metadata otherwise). :func:`fallback_estimate` is a
file-size claim for callers that want one when the estimator cannot read a model.
"""

from __future__ import annotations

import logging
from pathlib import Path

from gpustack_core.errors import GPUStackError
from gpustack_core.estimate import EstimateOptions, estimate_model
from gpustack_core.models.category import detect_category
from gpustack_core.plugins import PluginHost
from gpustack_core.types import (
    Deployment,
    ModelCategory,
    ModelMetadata,
    ResourceClaim,
    ResourceEstimate,
    SourceOptions,
)

__all__ = ["EstimateCache", "detect_deployment_category", "fallback_estimate"]

logger = logging.getLogger(__name__)


def fallback_estimate(metadata: ModelMetadata) -> ResourceEstimate:
    """A conservative CPU-only claim from file sizes, used when no estimator is installed."""
    size = metadata.total_size_bytes
    return ResourceEstimate(
        model=str(metadata.ref),
        claims=(ResourceClaim(strategy="cpu_only", host_memory_bytes=int(size * 1.2) + 256 * 2**20),),
        notes=("fallback estimate: CPU-only claim of file size + 20 % + 256 MiB",),
    )


def detect_deployment_category(
    host: PluginHost, deployment: Deployment, cache_dir: Path
) -> ModelCategory | None:
    """The category of a deployment's model, from its metadata (GGUF header, ``config.json``),
    resolved through the source plugin (blocking); ``None`` when it cannot be resolved or says nothing."""
    try:
        source = host.model_source(deployment.model.source)
        with host.guard("sources", source.name, "resolve()"):
            metadata = source.resolve(deployment.model, SourceOptions(cache_dir=str(cache_dir)))
    except GPUStackError as exc:
        logger.info("cannot detect the category of %s: %s", deployment.model, exc)
        return None
    return detect_category(metadata)


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
        local_path: str | None = None
        if deployment.model.source == "local" and Path(deployment.model.id).exists():
            local_path = deployment.model.id
        options = EstimateOptions(ctx_size=deployment.context_length)
        return estimate_model(metadata, options, local_path=local_path)
