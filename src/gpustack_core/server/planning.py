"""Model metadata and resource estimates for scheduling, resolved on the server through plugins.

The estimate comes from :func:`gpustack_core.estimate.estimate_model` (GGUF headers read from the
file for local models, from the source's metadata otherwise), with the per-process runtime overhead
that the accelerator plugins of the cluster's devices report (the largest, so that a replica fits
on any of them). :func:`fallback_estimate` is a
file-size claim for callers that want one when the estimator cannot read a model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from gpustack_core.contracts import Accelerator
from gpustack_core.errors import EstimationError, GPUStackError
from gpustack_core.estimate import (
    EstimateOptions,
    estimate_gguf,
    estimate_model,
    estimate_over_worker_hosts,
    read_gguf_file,
    runtime_overhead_for,
    with_preset,
)
from gpustack_core.estimate.llamacpp import RuntimeOverheadFn
from gpustack_core.models.category import detect_category
from gpustack_core.plugins import PluginHost
from gpustack_core.types import (
    Deployment,
    Device,
    ModelCategory,
    ModelMetadata,
    ResourceClaim,
    ResourceEstimate,
    SourceOptions,
)

__all__ = [
    "MULTI_WORKER_SPANS",
    "EstimateCache",
    "detect_deployment_category",
    "fallback_estimate",
    "with_multi_worker_claims",
]

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

    def estimate(self, deployment: Deployment, devices: Sequence[Device] = ()) -> ResourceEstimate:
        """The estimate for a deployment (blocking: resolves metadata through the source plugin).

        ``devices`` are the cluster's devices the replica may land on; each one's accelerator
        plugin is asked for its per-process overhead and the largest is added to GPU claims.

        Raises:
            GPUStackError: the model cannot be resolved or estimated (the message says why).
        """
        targets = self._targets(devices)
        profiles = sorted(
            {
                f"{d.accelerator}/{d.compute_capability}/{d.core_count}/{d.extra.get('sm_count', '')}"
                for _, d in targets
            }
        )
        preset = deployment.performance.model_dump_json() if deployment.performance else ""
        key = "|".join(
            (
                str(deployment.model),
                str(deployment.context_length),
                deployment.engine,
                ",".join(profiles),
                preset,
            )
        )
        if key in self._cache:
            return self._cache[key]
        source = self._host.model_source(deployment.model.source)
        options = SourceOptions(cache_dir=str(self._cache_dir))
        with self._host.guard("sources", source.name, "resolve()"):
            metadata = source.resolve(deployment.model, options)
        runtime = runtime_overhead_for(targets) if targets else None
        estimate = self._estimate(metadata, deployment, runtime)
        self._cache[key] = estimate
        return estimate

    def forget(self) -> None:
        """Drop cached estimates (after a model changed on disk)."""
        self._cache.clear()

    def _targets(self, devices: Sequence[Device]) -> list[tuple[Accelerator, Device]]:
        """One (plugin, device) per distinct device profile; devices of missing plugins are skipped."""
        seen: dict[tuple[str, str | None, int | None, str], tuple[Accelerator, Device]] = {}
        for d in devices:
            profile = (d.accelerator, d.compute_capability, d.core_count, d.extra.get("sm_count", ""))
            if d.device_type == "cpu" or profile in seen:
                continue
            try:
                seen[profile] = (self._host.accelerator(d.accelerator), d)
            except GPUStackError:
                logger.debug(
                    "no accelerator plugin %r here: no runtime overhead for its devices", d.accelerator
                )
        return list(seen.values())

    def _estimate(
        self, metadata: ModelMetadata, deployment: Deployment, runtime: RuntimeOverheadFn | None = None
    ) -> ResourceEstimate:
        local_path: str | None = None
        if deployment.model.source == "local" and Path(deployment.model.id).exists():
            local_path = deployment.model.id
        options = EstimateOptions(
            ctx_size=deployment.context_length,
            # the vLLM/SGLang plugins pass context_length as --max-model-len / --context-length
            max_model_len=deployment.context_length,
            engine="sglang" if deployment.engine == "sglang" else "vllm",
        )
        estimate = estimate_model(metadata, options, local_path=local_path, runtime=runtime)
        estimate = with_preset(estimate, deployment.performance, self._draft(deployment, options))
        if not deployment.allow_multi_worker:
            return estimate
        return with_multi_worker_claims(
            estimate, metadata, options, local_path, deployment.gpus_per_replica, runtime
        )

    @staticmethod
    def _draft(deployment: Deployment, options: EstimateOptions) -> ResourceEstimate | None:
        """The estimate of a local GGUF draft model (llama.cpp runs it in the same process).

        Other engines' drafts (vLLM, SGLang) live inside their ``gpu_memory_utilization`` /
        ``mem_fraction_static`` share of the device, which the estimate already reserves.
        """
        spec = deployment.performance.speculative if deployment.performance else None
        if spec is None or spec.draft_model is None or not spec.draft_model.endswith(".gguf"):
            return None
        path = Path(spec.draft_model)
        if not path.is_file():
            raise EstimationError(f"draft model {path} is not a local GGUF file: copy it to the server too")
        return estimate_gguf(read_gguf_file(path), options, str(path))


#: Devices a multi-worker claim may span when the deployment does not say (``gpus_per_replica``).
MULTI_WORKER_SPANS = (2, 3, 4)


def with_multi_worker_claims(
    estimate: ResourceEstimate,
    metadata: ModelMetadata,
    options: EstimateOptions,
    local_path: str | None,
    gpus: int | None = None,
    runtime: RuntimeOverheadFn | None = None,
) -> ResourceEstimate:
    """``estimate`` plus the split of the model over 2, 3 and 4 devices (or ``gpus``) as
    ``multi_worker`` claims: the scheduler spreads those devices over several workers (the head
    and its subordinates) when no single worker has them.

    The claims keep ``tensor_parallel_size`` 1: the scheduler then takes devices from as many
    workers as it needs (a claim's tensor-parallel size is a per-worker device count there), and
    an engine splits across workers its own way (llama.cpp layers over RPC; vLLM tensor parallel
    over each worker's devices and pipeline parallel across workers).

    When ``estimate`` has a ``cpu_only`` claim (a GGUF model), the same spans are added as
    ``multi_worker`` claims on the CPUs of as many workers (see
    :func:`~gpustack_core.estimate.estimate_over_worker_hosts`): the model then spreads over
    workers whose host memory is each too small for all of it."""
    spans = (gpus,) if gpus and gpus > 1 else MULTI_WORKER_SPANS
    extra: list[ResourceClaim] = []
    for span in spans:
        wider = options.model_copy(update={"gpus": span})
        split = estimate_model(metadata, wider, local_path=local_path, runtime=runtime)
        extra.extend(
            c.model_copy(update={"strategy": "multi_worker", "tensor_parallel_size": 1})
            for c in split.claims
            if c.strategy == "multi_device" and c.device_count == span
        )
    if any(c.strategy == "cpu_only" for c in estimate.claims):
        for span in spans:
            on_hosts = estimate_over_worker_hosts(metadata, options, span, local_path)
            if on_hosts is not None:
                extra.append(on_hosts)
    if not extra:
        return estimate
    return estimate.model_copy(update={"claims": (*estimate.claims, *extra)})
