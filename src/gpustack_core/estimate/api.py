"""``estimate_model``: metadata (and optionally local files) -> a typed resource estimate."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpustack_core.errors import EstimationError
from gpustack_core.types import ModelFormat, ModelMetadata, ResourceClaim, ResourceEstimate

from .gguf_info import GGUFModelInfo, info_from_model_metadata, read_gguf_file
from .llamacpp import GGUFEstimator, RuntimeOverheadFn
from .options import EstimateOptions
from .vllm import VllmEstimator, valid_tp_sizes

__all__ = ["estimate_gguf", "estimate_model", "estimate_over_worker_hosts", "estimate_safetensors"]

_GIB = 2**30


def _gib(n: int) -> str:
    return f"{n / _GIB:.2f} GiB"


def _pick_gguf(path: Path) -> Path:
    if path.is_file():
        return path
    candidates = sorted(
        p
        for p in path.rglob("*.gguf")
        if "mmproj" not in p.name.lower() and ("-of-" not in p.name or "-00001-of-" in p.name)
    )
    if not candidates:
        raise EstimationError(f"no GGUF model file under {path}")
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates[:6])
        raise EstimationError(f"{path} holds several GGUF models ({names}); point at one file")
    return candidates[0]


def _gguf_info(metadata: ModelMetadata, local_path: str | None) -> GGUFModelInfo:
    if local_path is not None:
        return read_gguf_file(_pick_gguf(Path(local_path)))
    info = info_from_model_metadata(metadata)
    if info is None:
        raise EstimationError(
            f"no GGUF header for {metadata.ref}: pass the local file, or use a model source that reads "
            "GGUF headers (tensor infos) by range request"
        )
    return info


def estimate_gguf(
    info: GGUFModelInfo, options: EstimateOptions, model: str, runtime: RuntimeOverheadFn | None = None
) -> ResourceEstimate:
    """Claims for running a GGUF model in llama.cpp, in order of preference.

    With ``options.device_memory`` (and/or ``rpc_devices``): one device if a single one holds the
    whole model, else a layer split over the devices (remote RPC devices first), else the
    layers that fit (partial offload); always a CPU-only claim last. Without device memory:
    the requirement for one device, for ``options.gpus`` devices when more than one, and CPU.
    ``runtime`` adds the accelerator's per-process overhead to claims that use devices.
    """
    est = GGUFEstimator(info, options, runtime)
    hp = est.hparams
    claims: list[ResourceClaim] = []
    local = list(options.device_memory)
    if options.gpus is not None:
        local = sorted(local, reverse=True)[: options.gpus] if local else []
    remote = [d.memory_bytes for d in options.rpc_devices]
    labels = [f"rpc:{d.endpoint}" for d in options.rpc_devices] + [f"gpu:{i}" for i in range(len(local))]
    full = est.full_offload()
    notes = [
        f"{hp.architecture}: {hp.n_layer} blocks, n_embd {hp.n_embd}, n_vocab {hp.n_vocab}, "
        f"weights {_gib(info.weight_bytes)} ({info.file_size} bytes on disk)",
        f"context {est.n_ctx} (padded to 256), batch {est.n_batch}, ubatch {est.n_ubatch}, "
        f"KV cache {_gib(est.kv_total_bytes)} ({est.kv_total_bytes // max(est.n_ctx, 1)} B/token)",
    ]
    if local or remote:
        targets = remote + local
        if local and not remote and full.devices[0].memory_bytes <= max(local):
            claims.append(full.model_copy(update={"notes": (f"fits gpu:{local.index(max(local))}",)}))
        if len(targets) > 1:
            claims.append(est.split_across(targets, labels))
        if all(c.strategy == "partial_offload" for c in claims):
            n = est.fit_layers(max(targets))
            if n:
                claims.append(est.claim(n, (1.0,)))
            notes.append(f"{n} of {hp.n_layer + 1} layers (blocks + output) fit the largest device")
    else:
        claims.append(full)
        n_gpus = options.gpus or 1
        if n_gpus > 1:
            splits = list(options.tensor_split) or [1.0] * n_gpus
            claims.append(est.claim(hp.n_layer + 1, splits, [f"gpu:{i}" for i in range(n_gpus)]))
    claims = [c for c in claims if c.strategy != "cpu_only"]
    claims.append(est.cpu_only())
    return ResourceEstimate(model=model, claims=tuple(claims), notes=tuple(notes))


def estimate_safetensors(
    config: Mapping[str, Any],
    options: EstimateOptions,
    model: str,
    safetensors_headers: Mapping[str, Any] | None = None,
    category: Any = None,
) -> ResourceEstimate:
    """Claims for running a safetensors model in vLLM/SGLang, one per valid TP size.

    With ``options.device_memory``, claims that fit come first and TP sizes are limited to the
    number of devices; ``options.tensor_parallel_size`` picks one size (it must be valid).
    """
    est = VllmEstimator(config, options, safetensors_headers, category)
    limit = options.gpus or len(options.device_memory) or 8
    valid = valid_tp_sizes(est.cfg, max_size=64)
    if options.tensor_parallel_size is not None:
        if options.tensor_parallel_size not in valid:
            raise EstimationError(
                f"tensor_parallel_size {options.tensor_parallel_size} does not divide the model's "
                f"{est.cfg.num_heads} attention heads / {est.cfg.num_kv_heads} KV heads; valid sizes: "
                f"{', '.join(map(str, valid))}"
            )
        sizes = [options.tensor_parallel_size]
    else:
        sizes = [tp for tp in valid if tp <= limit] or valid[:1]
    claims = [est.claim(tp) for tp in sizes]
    notes = [
        f"weights {_gib(est.weight_bytes)} from {est.weights_source}; "
        f"KV cache {est.kv_bytes_per_token(1)} B/token at TP 1; max_model_len {est.max_model_len}",
        f"valid tensor-parallel sizes: {', '.join(map(str, valid))} "
        f"({est.cfg.num_heads} attention heads, {est.cfg.num_kv_heads} KV heads)",
    ]
    if options.device_memory:
        fitting = [c for c in claims if est.fits(c)]
        if fitting:
            claims = fitting + [c for c in claims if c not in fitting]
        else:
            notes.append("no TP size fits the given devices at this max_model_len")
    return ResourceEstimate(model=model, claims=tuple(claims), notes=tuple(notes))


def _local_config(local_path: str | None) -> dict[str, Any] | None:
    if local_path is None:
        return None
    path = Path(local_path)
    cfg = (path if path.is_dir() else path.parent) / "config.json"
    if not cfg.is_file():
        return None
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError) as exc:
        raise EstimationError(f"{cfg} is not valid JSON: {exc}") from exc
    return data if isinstance(data, dict) else None


def estimate_over_worker_hosts(
    metadata: ModelMetadata, options: EstimateOptions, workers: int, local_path: str | None = None
) -> ResourceClaim | None:
    """The ``multi_worker`` claim of a GGUF model over the CPUs of ``workers`` workers (llama.cpp's
    ``llama-server`` on the head, RPC servers on the subordinates; see
    :meth:`GGUFEstimator.split_over_hosts`), or ``None`` for another format or a model with fewer
    layers than ``workers``.

    Raises:
        EstimationError: the GGUF headers cannot be read (as :func:`estimate_model`).
    """
    if metadata.format != ModelFormat.GGUF:
        return None
    if local_path is not None and not os.path.exists(local_path):
        raise EstimationError(f"local model path {local_path} does not exist")
    est = GGUFEstimator(_gguf_info(metadata, local_path), options)
    if workers > est.hparams.n_layer + 1:
        return None
    return est.split_over_hosts(workers)


def estimate_model(
    metadata: ModelMetadata,
    options: EstimateOptions,
    local_path: str | None = None,
    runtime: RuntimeOverheadFn | None = None,
) -> ResourceEstimate:
    """Estimate the memory ``metadata``'s model needs under ``options``.

    Parameters:
        metadata: what a model source's ``resolve`` returned.
        options: engine flags and, optionally, the free memory of the devices to fit.
        local_path: a local file or directory of the model; GGUF headers are read from it
            (otherwise from ``metadata.gguf_metadata``/``gguf_tensors``).
        runtime: the accelerator's per-process overhead for a workload (see
            :func:`runtime_overhead_for` and :meth:`~gpustack_core.contracts.Accelerator.runtime_overhead`),
            added to llama.cpp claims that use devices. vLLM/SGLang estimates do not add it: their
            ``gpu_memory_utilization`` fraction bounds the whole process, context included.

    Raises:
        EstimationError: the format is not supported or the metadata lacks what is needed
            (the message says what is missing and what to do).
    """
    name = str(metadata.ref)
    if local_path is not None and not os.path.exists(local_path):
        raise EstimationError(f"local model path {local_path} does not exist")
    if metadata.format == ModelFormat.GGUF:
        return estimate_gguf(_gguf_info(metadata, local_path), options, name, runtime)
    config = metadata.config or _local_config(local_path)
    if metadata.format == ModelFormat.SAFETENSORS or config is not None:
        if config is None:
            raise EstimationError(f"{name} has no config.json: a safetensors estimate needs it")
        return estimate_safetensors(config, options, name, metadata.safetensors_headers, metadata.category)
    raise EstimationError(
        f"{name}: cannot estimate format {metadata.format.value!r} (GGUF or safetensors only)"
    )
