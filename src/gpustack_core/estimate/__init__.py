"""Resource estimation: how much memory a model needs, per device, for an engine.

GGUF models are sized as llama.cpp allocates them (:class:`GGUFEstimator`: weights per
block, KV cache, compute buffers; full/partial offload, CPU-only, layer split over GPUs and
RPC servers). safetensors models are sized with vLLM semantics (:class:`VllmEstimator`:
weights by dtype, activation peak, KV cache at a memory-utilization fraction, valid TP sizes).
:func:`estimate_model` picks the right one and returns a typed
:class:`~gpustack_core.types.ResourceEstimate`.
"""

from .api import estimate_gguf, estimate_model, estimate_over_worker_hosts, estimate_safetensors
from .gguf_info import (
    GGUFModelInfo,
    TensorInfo,
    info_from_metadata,
    info_from_model_metadata,
    read_gguf_file,
)
from .llamacpp import GGUFEstimator, LlamaHParams, RuntimeOverheadFn
from .options import CACHE_TYPES, EstimateOptions, RemoteDevice
from .presets import with_preset
from .runtime import largest_overhead, runtime_overhead_for
from .vllm import KvCapacity, TransformerConfig, VllmEstimator, valid_tp_sizes

__all__ = [
    "CACHE_TYPES",
    "EstimateOptions",
    "GGUFEstimator",
    "GGUFModelInfo",
    "KvCapacity",
    "LlamaHParams",
    "RemoteDevice",
    "RuntimeOverheadFn",
    "TensorInfo",
    "TransformerConfig",
    "VllmEstimator",
    "estimate_gguf",
    "estimate_model",
    "estimate_over_worker_hosts",
    "estimate_safetensors",
    "info_from_metadata",
    "info_from_model_metadata",
    "largest_overhead",
    "read_gguf_file",
    "runtime_overhead_for",
    "valid_tp_sizes",
    "with_preset",
]
