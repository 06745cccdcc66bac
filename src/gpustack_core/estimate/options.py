"""Options of an estimate: the engine flags that change how much memory a model needs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gpustack_core.types._base import Bytes, ValueModel

__all__ = ["CACHE_TYPES", "EstimateOptions", "RemoteDevice"]

#: KV cache types llama.cpp accepts for ``--cache-type-k/-v`` that this estimator sizes.
CACHE_TYPES: tuple[str, ...] = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl")


class RemoteDevice(ValueModel):
    """A llama.cpp RPC server (``--rpc HOST:PORT``) used as one more split target."""

    endpoint: str = Field(min_length=1, description="host:port of the rpc-server")
    memory_bytes: Bytes = Field(description="free memory the remote device reports")


class EstimateOptions(ValueModel):
    """How the model will be run. Defaults follow llama-server and vLLM defaults.

    GGUF (llama.cpp) fields: ``ctx_size`` (None: the model's training context), ``batch_size``
    and ``ubatch_size`` (``-b``/``-ub``), ``cache_type_k/v``, ``flash_attention`` (None: auto,
    which llama.cpp turns on wherever the backend supports it), ``parallel`` (``-np``),
    ``max_outputs`` (logit rows the compute graph reserves; None: llama-server's one per
    sequence), ``gpu_layers`` (``-ngl``; None: as many as fit), ``tensor_split`` (``-ts``; empty: by free
    memory), ``rpc_devices``, ``mmap`` (``--no-mmap``), ``cpu_repack`` (``--no-repack``).

    safetensors (vLLM/SGLang) fields: ``engine`` (whose memory semantics: ``vllm`` or
    ``sglang``), ``gpu_memory_utilization``, ``mem_fraction_static`` (SGLang; None: the
    ``gpu_memory_utilization`` value), ``max_model_len`` (None: the model's
    ``max_position_embeddings``), ``tensor_parallel_size`` (None: smallest that fits),
    ``kv_cache_dtype``, ``max_num_batched_tokens``, ``max_num_seqs``.

    Shared: ``device_memory`` lists the free bytes of each device the model may use (empty:
    report requirements only, no fitting); ``gpus`` limits how many devices a claim may span.
    """

    ctx_size: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=2048, ge=1)
    ubatch_size: int = Field(default=512, ge=1)
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    flash_attention: bool | None = None
    parallel: int = Field(default=1, ge=1)
    max_outputs: int | None = Field(default=None, ge=1)
    gpu_layers: int | None = Field(default=None, ge=0)
    tensor_split: tuple[float, ...] = ()
    rpc_devices: tuple[RemoteDevice, ...] = ()
    mmap: bool = True
    cpu_repack: bool = True

    engine: Literal["vllm", "sglang"] = "vllm"
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    mem_fraction_static: float | None = Field(default=None, gt=0, le=1)
    max_model_len: int | None = Field(default=None, ge=1)
    tensor_parallel_size: int | None = Field(default=None, ge=1)
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16"] = "auto"
    max_num_batched_tokens: int | None = Field(default=None, ge=1)
    max_num_seqs: int = Field(default=256, ge=1)

    device_memory: tuple[Bytes, ...] = ()
    gpus: int | None = Field(default=None, ge=0)

    @property
    def sglang_mem_fraction(self) -> float:
        """SGLang's ``--mem-fraction-static`` (``gpu_memory_utilization`` when not given)."""
        if self.mem_fraction_static is not None:
            return self.mem_fraction_static
        return self.gpu_memory_utilization

    @model_validator(mode="after")
    def _check(self) -> EstimateOptions:
        for name in ("cache_type_k", "cache_type_v"):
            value = getattr(self, name)
            if value not in CACHE_TYPES:
                raise ValueError(
                    f"{name}={value!r} is not a KV cache type; use one of {', '.join(CACHE_TYPES)}"
                )
        if self.tensor_split and any(x < 0 for x in self.tensor_split):
            raise ValueError("tensor_split values must be >= 0 (proportions, e.g. 3,1)")
        return self
