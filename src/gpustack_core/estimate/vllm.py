"""Memory of a safetensors model in vLLM/SGLang-style engines, from config.json and headers.

vLLM semantics: each device of a tensor-parallel group gives the engine
``gpu_memory_utilization x total memory``; weights (split over TP ranks), the activation peak of
a profiling forward pass and non-torch memory (CUDA context, NCCL, CUDA graphs) come out of
that budget, and the rest becomes KV cache. The model fits when that KV cache holds at least
``max_model_len`` tokens. SGLang semantics (``engine="sglang"``): ``mem_fraction_static x total``
holds weights, the memory used before loading and the KV pool; activations live in the rest.
See docs/estimation.md for every assumption and docs/benchmarks/estimation-engines.md for the
comparison with published engine logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpustack_core.errors import EstimationError
from gpustack_core.types import DeviceClaim, MemoryItem, ModelCategory, ResourceClaim

from .options import EstimateOptions

__all__ = [
    "SAFETENSORS_DTYPE_BYTES",
    "KvCapacity",
    "TransformerConfig",
    "VllmEstimator",
    "valid_tp_sizes",
]

#: Bytes per element of safetensors dtypes.
SAFETENSORS_DTYPE_BYTES: dict[str, float] = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
    "U16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1, "F4": 0.5,
}  # fmt: skip
_TORCH_DTYPE_BYTES: dict[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2, "float": 4, "half": 2}
_GIB = 2**30
#: Memory outside PyTorch's allocator per device (CUDA context, cuBLAS workspaces) that vLLM's
#: profiler subtracts from the budget: published logs show 0.11-0.35 GiB on one device (and one
#: outlier of 1.79 GiB on an H100); see docs/benchmarks/estimation-engines.md.
NON_TORCH_BYTES = _GIB // 2
#: Extra non-torch memory per device when TP > 1 (NCCL buffers, custom all-reduce): the published
#: logs show 0.25 GiB in all on two PCIe RTX 4090s and 1.79 GiB more than TP 1 on NVLink H100s;
#: the estimator cannot tell the interconnect, so it takes a value between.
NON_TORCH_TP_BYTES = _GIB
#: Tokens per vLLM KV-cache block (``--block-size`` default); the cache holds whole blocks.
VLLM_BLOCK_SIZE = 16
#: float32 copies of the logits the sampler of vLLM's profiling run holds at once (logits,
#: probabilities, log-probabilities).
SAMPLER_LOGIT_COPIES = 3
_ENCODER_ARCH_HINTS = ("Bert", "Roberta", "XLMRoberta", "Electra", "DistilBert", "ModernBert")


def _gib(n: float) -> str:
    return f"{n / _GIB:.2f} GiB"


@dataclass(frozen=True)
class KvCapacity:
    """The KV cache an engine allocates on one device of a given total memory.

    ``budget_bytes`` is the engine's share of the device (``gpu_memory_utilization`` or
    ``mem_fraction_static`` x total), ``kv_bytes`` what is left of it for the KV cache after
    weights, activations (vLLM only) and non-torch memory, ``tokens`` how many tokens that holds
    (vLLM: whole blocks of :data:`VLLM_BLOCK_SIZE`; SGLang: single tokens).
    """

    engine: str
    budget_bytes: int
    kv_bytes: int
    bytes_per_token: int
    tokens: int


@dataclass(frozen=True)
class TransformerConfig:
    """The config.json fields memory depends on (``text_config`` for multimodal models)."""

    architectures: tuple[str, ...]
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    dtype_bytes: int
    tie_word_embeddings: bool
    num_experts: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    quantization: Mapping[str, Any] | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TransformerConfig:
        """Read config.json.

        Raises:
            EstimationError: a required field is missing (names it).
        """
        text = config.get("text_config") if isinstance(config.get("text_config"), Mapping) else None
        c: Mapping[str, Any] = {**config, **text} if text else config

        def need(*names: str) -> int:
            for n in names:
                if c.get(n) is not None:
                    return int(c[n])
            raise EstimationError(f"config.json has no {' / '.join(names)}: cannot estimate this model")

        hidden = need("hidden_size", "d_model", "n_embd")
        heads = need("num_attention_heads", "n_head", "num_heads")
        kv_heads = int(c.get("num_key_value_heads") or c.get("num_kv_heads") or heads)
        head_dim = int(c.get("head_dim") or hidden // heads)
        dtype = str(c.get("torch_dtype") or c.get("dtype") or config.get("torch_dtype") or "bfloat16")
        experts = int(c.get("num_local_experts") or c.get("num_experts") or c.get("n_routed_experts") or 0)
        return cls(
            architectures=tuple(config.get("architectures") or ()),
            hidden_size=hidden,
            num_layers=need("num_hidden_layers", "n_layer", "num_layers"),
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            intermediate_size=int(c.get("intermediate_size") or c.get("n_inner") or 4 * hidden),
            vocab_size=need("vocab_size"),
            max_position_embeddings=int(c.get("max_position_embeddings") or c.get("n_positions") or 2048),
            dtype_bytes=_TORCH_DTYPE_BYTES.get(dtype.replace("torch.", ""), 2),
            tie_word_embeddings=bool(c.get("tie_word_embeddings", False)),
            num_experts=experts,
            moe_intermediate_size=int(c.get("moe_intermediate_size") or c.get("intermediate_size") or 0),
            num_shared_experts=int(c.get("n_shared_experts") or 0),
            kv_lora_rank=int(c.get("kv_lora_rank") or 0),
            qk_rope_head_dim=int(c.get("qk_rope_head_dim") or 0),
            quantization=config.get("quantization_config"),
        )

    @property
    def param_count(self) -> int:
        """Parameters implied by the config (dense or MoE decoder)."""
        h, layers = self.hidden_size, self.num_layers
        attn = h * self.num_heads * self.head_dim * 2 + h * self.num_kv_heads * self.head_dim * 2
        if self.num_experts:
            ffn = 3 * h * self.moe_intermediate_size * (self.num_experts + self.num_shared_experts)
            ffn += h * self.num_experts  # router
        else:
            ffn = 3 * h * self.intermediate_size
        emb = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return layers * (attn + ffn + 2 * h) + emb + h

    @property
    def is_encoder(self) -> bool:
        """Encoder-only (BERT-like) architecture: no KV cache."""
        return any(a.startswith(_ENCODER_ARCH_HINTS) for a in self.architectures)


def valid_tp_sizes(cfg: TransformerConfig, max_size: int = 64) -> list[int]:
    """Tensor-parallel sizes vLLM accepts for this model, powers of two up to ``max_size``.

    vLLM requires ``num_attention_heads % tp == 0``; KV heads are split when
    ``num_kv_heads >= tp`` (then ``num_kv_heads % tp == 0``) and replicated otherwise (then
    ``tp % num_kv_heads == 0``). See vllm/model_executor/layers/linear.py ``QKVParallelLinear``.
    """
    out = []
    tp = 1
    while tp <= max_size:
        heads_ok = cfg.num_heads % tp == 0
        kv = cfg.num_kv_heads
        kv_ok = kv % tp == 0 if kv >= tp else tp % kv == 0
        if heads_ok and kv_ok:
            out.append(tp)
        tp *= 2
    return out


class VllmEstimator:
    """Estimate vLLM memory for one safetensors model and one set of options."""

    def __init__(
        self,
        config: Mapping[str, Any],
        options: EstimateOptions,
        safetensors_headers: Mapping[str, Any] | None = None,
        category: ModelCategory | None = None,
    ) -> None:
        """Read ``config`` and, when given, the safetensors headers (file -> header dict)."""
        self.cfg = TransformerConfig.from_config(config)
        self.options = options
        self.headers = safetensors_headers or {}
        self.embedding = category in (ModelCategory.EMBEDDING, ModelCategory.RERANK) or self.cfg.is_encoder
        self.max_model_len = options.max_model_len or self.cfg.max_position_embeddings
        self.weights_by_dtype, self.weights_source = self._weights()

    # ---- sizes ---------------------------------------------------------------------------

    def _weights(self) -> tuple[dict[str, int], str]:
        by_dtype: dict[str, int] = {}
        for name, header in self.headers.items():
            if not isinstance(header, Mapping):
                raise EstimationError(f"safetensors header of {name} is not a JSON object")
            for tname, t in header.items():
                if tname == "__metadata__" or not isinstance(t, Mapping):
                    continue
                start, end = t["data_offsets"]
                by_dtype[str(t["dtype"])] = by_dtype.get(str(t["dtype"]), 0) + int(end) - int(start)
        if by_dtype:
            return by_dtype, "safetensors headers"
        n = self.cfg.param_count
        q = self.cfg.quantization or {}
        method = str(q.get("quant_method", "")).lower()
        if method in ("awq", "gptq", "awq_marlin", "gptq_marlin") or q.get("bits"):
            bits = int(q.get("bits") or q.get("w_bit") or 4)
            group = int(q.get("group_size") or q.get("q_group_size") or 128)
            emb = self.cfg.vocab_size * self.cfg.hidden_size * (1 if self.cfg.tie_word_embeddings else 2)
            linear = n - emb
            # packed weights + fp16 scales and packed zeros per group
            packed = linear * bits // 8 + (linear // max(group, 1)) * (2 + bits / 8)
            return {
                f"int{bits} ({method or 'quantized'})": int(packed),
                "BF16 (embeddings)": emb * 2,
            }, "config.json"
        if method in ("fp8", "fbgemm_fp8", "compressed-tensors", "modelopt"):
            emb = self.cfg.vocab_size * self.cfg.hidden_size * (1 if self.cfg.tie_word_embeddings else 2)
            return {"F8 (linear)": n - emb, "BF16 (embeddings)": emb * 2}, "config.json"
        return {f"{self.cfg.dtype_bytes * 8}-bit": n * self.cfg.dtype_bytes}, "config.json"

    @property
    def weight_bytes(self) -> int:
        """All weights."""
        return sum(self.weights_by_dtype.values())

    def kv_bytes_per_token(self, tp: int) -> int:
        """KV cache bytes per token on one device of a TP group (0 for encoder/embedding models)."""
        if self.embedding:
            return 0
        cfg = self.cfg
        dtype = 1 if self.options.kv_cache_dtype.startswith("fp8") else cfg.dtype_bytes
        if self.options.kv_cache_dtype in ("bfloat16", "float16"):
            dtype = 2
        if cfg.kv_lora_rank:  # MLA: one latent vector per token, replicated on every rank
            return cfg.num_layers * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * dtype
        kv_heads = max(1, cfg.num_kv_heads // tp)
        return 2 * cfg.num_layers * kv_heads * cfg.head_dim * dtype

    def activation_bytes(self, tp: int) -> int:
        """Activation peak of vLLM's profiling pass on one device.

        The profiling run is a forward pass over ``max_num_batched_tokens`` tokens (default
        ``min(max(max_model_len, 2048), 8192)``), which keeps the residual stream, the hidden
        state and its normalised copy (3 x hidden) plus the larger of the QKV projection and the
        gate/up projection with its activation (3 x intermediate / tp) live, followed by the
        sampler, which holds float32 logits, probabilities and log-probabilities for
        ``max_num_seqs`` positions once the forward pass's activations are freed. The peak is the
        larger of the two phases: the published logs match that (docs/benchmarks/
        estimation-engines.md), not their sum.
        """
        cfg = self.cfg
        tokens = self.options.max_num_batched_tokens or min(max(self.max_model_len, 2048), 8192)
        if self.embedding:
            tokens = max(tokens, self.max_model_len)
        d = cfg.dtype_bytes
        qkv = (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim // tp
        ff = (cfg.moe_intermediate_size if cfg.num_experts else cfg.intermediate_size) // tp
        per_token = (3 * cfg.hidden_size + max(qkv, 3 * ff)) * d
        rows = min(self.options.max_num_seqs, tokens)
        sampler = 0 if self.embedding else rows * cfg.vocab_size * 4 * SAMPLER_LOGIT_COPIES
        return max(tokens * per_token, sampler)

    def non_torch_bytes(self, tp: int) -> int:
        """CUDA context, library workspaces and communication buffers on one device."""
        return NON_TORCH_BYTES + (NON_TORCH_TP_BYTES if tp > 1 else 0)

    def kv_capacity(self, tp: int, device_total_bytes: int) -> KvCapacity:
        """The KV cache the engine (``options.engine``) allocates on a device of that total memory.

        vLLM: ``gpu_memory_utilization x total - weights/tp - activation peak - non-torch``,
        rounded down to whole blocks of 16 tokens. SGLang: ``mem_fraction_static x total -
        weights/tp - non-torch`` (SGLang sizes the pool from the memory free after loading minus
        ``(1 - mem_fraction_static) x total``, which is the same), in single tokens.

        Raises:
            EstimationError: the model has no KV cache (embedding/encoder model).
        """
        per_token = self.kv_bytes_per_token(tp)
        if not per_token:
            raise EstimationError("this model has no KV cache (embedding/encoder model)")
        weights = -(-self.weight_bytes // tp)
        engine = self.options.engine
        if engine == "sglang":
            budget = int(device_total_bytes * self.options.sglang_mem_fraction)
            kv = max(budget - weights - self.non_torch_bytes(tp), 0)
            tokens = kv // per_token
        else:
            budget = int(device_total_bytes * self.options.gpu_memory_utilization)
            kv = max(budget - weights - self.activation_bytes(tp) - self.non_torch_bytes(tp), 0)
            tokens = kv // (per_token * VLLM_BLOCK_SIZE) * VLLM_BLOCK_SIZE
        return KvCapacity(
            engine=engine, budget_bytes=budget, kv_bytes=kv, bytes_per_token=per_token, tokens=tokens
        )

    # ---- claims --------------------------------------------------------------------------

    def claim(self, tp: int) -> ResourceClaim:
        """The claim for tensor-parallel size ``tp``: per-device need and KV capacity.

        vLLM: ``(weights/tp + activation + non-torch + KV(max_model_len)) /
        gpu_memory_utilization``. SGLang: ``(weights/tp + non-torch + KV(max_model_len)) /
        mem_fraction_static``; its activations and CUDA graphs live in the ``1 -
        mem_fraction_static`` it leaves free, so they are no item of their own.
        """
        cfg = self.cfg
        sglang = self.options.engine == "sglang"
        fraction = self.options.sglang_mem_fraction if sglang else self.options.gpu_memory_utilization
        weights = -(-self.weight_bytes // tp)
        kv_tok = self.kv_bytes_per_token(tp)
        kv_need = kv_tok * self.max_model_len
        by_dtype = ", ".join(f"{k} {_gib(v)}" for k, v in self.weights_by_dtype.items())
        items = [
            MemoryItem(
                label=f"weights 1/{tp} ({by_dtype}; from {self.weights_source})",
                bytes=weights,
            ),
        ]
        if not sglang:
            activation = self.activation_bytes(tp)
            items.append(MemoryItem(label=f"activation peak (profiling pass, TP {tp})", bytes=activation))
        non_torch = self.non_torch_bytes(tp)
        items.append(MemoryItem(label="non-torch memory (CUDA context, workspaces, NCCL)", bytes=non_torch))
        if kv_tok:
            items.append(
                MemoryItem(
                    label=f"KV cache {self.max_model_len} tokens x {kv_tok} B/token "
                    f"({self.options.kv_cache_dtype})",
                    bytes=kv_need,
                )
            )
        used = sum(i.bytes for i in items)
        need = -(-used * 1000 // round(fraction * 1000))
        share = f"mem_fraction_static={fraction}" if sglang else f"gpu_memory_utilization={fraction}"
        notes = [
            f"{'SGLang' if sglang else 'vLLM'} takes {share} of each device: "
            f"a device needs {_gib(need)} total for {_gib(used)} used",
        ]
        if self.options.device_memory and kv_tok:
            cap = self.kv_capacity(tp, min(self.options.device_memory[:tp]))
            notes.append(
                f"KV cache on the given devices: {_gib(cap.kv_bytes)} = {cap.tokens} tokens "
                f"({cap.tokens / self.max_model_len:.2f}x max_model_len {self.max_model_len})"
            )
        if self.embedding:
            notes.append(
                "embedding/rerank model: no KV cache growth; activation sized for max_model_len tokens"
            )
        devices = tuple(DeviceClaim(memory_bytes=need, items=tuple(items)) for _ in range(tp))
        return ResourceClaim(
            strategy="single_device" if tp == 1 else "multi_device",
            devices=devices,
            tensor_parallel_size=tp,
            total_layers=cfg.num_layers,
            notes=tuple(notes),
        )

    def fits(self, claim: ResourceClaim) -> bool:
        """Whether every device of ``claim`` fits the first TP devices of ``options.device_memory``."""
        mem = self.options.device_memory
        tp = claim.tensor_parallel_size
        return len(mem) >= tp and all(
            d.memory_bytes <= m for d, m in zip(claim.devices, sorted(mem, reverse=True)[:tp], strict=True)
        )
