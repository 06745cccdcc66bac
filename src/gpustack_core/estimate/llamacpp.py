"""Memory of a GGUF model in llama.cpp: weights, KV cache, compute buffers, per device.

The arithmetic follows llama.cpp's own allocation (``src/llama-model.cpp`` layer placement,
``src/llama-kv-cache.cpp``, ``src/llama-context.cpp`` graph reservation); the compute-buffer
model is calibrated against llama-server's logged buffer sizes (see ``docs/estimation.md`` and
``docs/benchmarks/estimation.md``). Devices are numbered in llama.cpp's order: RPC servers
first, then local GPUs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gpustack_core.errors import EstimationError
from gpustack_core.models.ggml_types import GGMLQuantizationType
from gpustack_core.types import DeviceClaim, MemoryItem, ResourceClaim, RuntimeOverhead, RuntimeWorkload

from .gguf_info import GGUFModelInfo, TensorInfo, ggml_row_bytes
from .options import EstimateOptions

__all__ = [
    "CPU_REPACK_TYPES",
    "PROCESS_OVERHEAD_LABEL",
    "RUNTIME_OVERHEAD_BYTES",
    "GGUFEstimator",
    "LlamaHParams",
    "RuntimeOverheadFn",
]

#: Asks the accelerator of the target devices what a process costs there (see
#: :meth:`gpustack_core.contracts.Accelerator.runtime_overhead`).
RuntimeOverheadFn = Callable[[RuntimeWorkload], RuntimeOverhead]
#: Weight types llama.cpp multiplies through the vendor's BLAS library (cuBLAS, hipBLAS...) for
#: prompt batches; quantized types use its own kernels (ggml-cuda ``ggml_cuda_mul_mat``).
_BLAS_WEIGHT_TYPES = frozenset({"F16", "BF16", "F32"})

_MIB = 2**20
#: llama.cpp pads the context to a multiple of 256 cells (llama-context.cpp).
CTX_PAD = 256
#: Host memory of llama-server beyond its buffers (binary, libraries, threads, HTTP server),
#: measured on a 2-core x86-64 VM with a CPU build; see docs/benchmarks/estimation.md.
RUNTIME_OVERHEAD_BYTES = 21 * _MIB
#: The host item holding :data:`RUNTIME_OVERHEAD_BYTES` and the vocabulary's share.
PROCESS_OVERHEAD_LABEL = "runtime overhead (llama-server process, vocabulary)"
#: Host memory of an idle ``ggml-rpc-server`` process (CPU backend) before it holds any tensor
#: (5.2 MiB resident measured for llama.cpp 0c1e57098 on x86-64, rounded up).
RPC_SERVER_OVERHEAD_BYTES = 8 * _MIB
#: Per vocabulary entry: token text, id<->token maps, scores and types (cf. gguf-parser-go).
VOCAB_BYTES_PER_TOKEN = 96
#: Architectures without a KV cache (encoder-only embedding / rerank models).
#: Weight types ggml-cpu repacks into an interleaved layout for matrix multiplication on x86
#: with AVX2 (``ggml/src/ggml-cpu/repack.cpp``), when the row count is a multiple of 8.
CPU_REPACK_TYPES = frozenset(
    int(t)
    for t in (
        GGMLQuantizationType.Q4_0,
        GGMLQuantizationType.Q4_K,
        GGMLQuantizationType.IQ4_NL,
        GGMLQuantizationType.MXFP4,
    )
)
_NON_CAUSAL_ARCHS = frozenset(
    {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert"}
)


def _per_layer(value: Any, n_layer: int, default: int) -> tuple[int, ...]:
    if value is None:
        return (default,) * n_layer
    if isinstance(value, (list, tuple)):
        if len(value) != n_layer:
            raise EstimationError(f"per-layer header array has {len(value)} entries for {n_layer} layers")
        return tuple(int(v) for v in value)
    return (int(value),) * n_layer


@dataclass(frozen=True)
class LlamaHParams:
    """The hyper-parameters memory depends on, read from a GGUF header."""

    architecture: str
    n_layer: int
    n_embd: int
    n_head: tuple[int, ...]
    n_head_kv: tuple[int, ...]
    head_dim_k: int
    head_dim_v: int
    n_ff: int
    n_vocab: int
    n_ctx_train: int
    causal: bool
    n_expert: int = 0
    n_expert_used: int = 0

    @classmethod
    def from_info(cls, info: GGUFModelInfo) -> LlamaHParams:
        """Read the header of ``info``.

        Raises:
            EstimationError: a required key is missing (names the key).
        """
        n_layer = info.arch_value("block_count")
        n_embd = info.arch_value("embedding_length")
        if n_layer is None or n_embd is None:
            missing = "block_count" if n_layer is None else "embedding_length"
            raise EstimationError(f"GGUF header has no {info.architecture}.{missing}: not a model file?")
        n_layer, n_embd = int(n_layer), int(n_embd)
        n_head = _per_layer(info.arch_value("attention.head_count"), n_layer, 1)
        n_head_kv = _per_layer(info.arch_value("attention.head_count_kv"), n_layer, 0)
        n_head_kv = tuple(kv if kv else h for kv, h in zip(n_head_kv, n_head, strict=True))
        head0 = max(n_head) or 1
        head_dim_k = int(info.arch_value("attention.key_length", n_embd // head0))
        head_dim_v = int(info.arch_value("attention.value_length", n_embd // head0))
        ff = info.arch_value("feed_forward_length", 0)
        n_ff = max(int(v) for v in ff) if isinstance(ff, (list, tuple)) and ff else int(ff or 0)
        n_vocab = info.arch_value("vocab_size") or info.array_lengths.get("tokenizer.ggml.tokens")
        if not n_vocab:
            emb = info.tensor("token_embd.weight")
            n_vocab = emb.shape[1] if emb is not None and len(emb.shape) > 1 else 0
        causal = info.arch_value("attention.causal")
        if causal is None:
            causal = info.architecture not in _NON_CAUSAL_ARCHS
        return cls(
            architecture=info.architecture,
            n_layer=n_layer,
            n_embd=n_embd,
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim_k=head_dim_k,
            head_dim_v=head_dim_v,
            n_ff=n_ff,
            n_vocab=int(n_vocab),
            n_ctx_train=int(info.arch_value("context_length", 4096)),
            causal=bool(causal),
            n_expert=int(info.arch_value("expert_count", 0) or 0),
            n_expert_used=int(info.arch_value("expert_used_count", 0) or 0),
        )


def _cache_type(name: str) -> int:
    return int(GGMLQuantizationType[name.upper()])


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / _MIB:.1f} MiB"


class GGUFEstimator:
    """Estimate llama.cpp memory for one GGUF model and one set of options.

    Layer ``il`` in ``0..n_layer-1`` is a transformer block; index ``n_layer`` is the output
    layer (``output_norm`` + ``output``), which llama.cpp offloads as the last "layer".
    """

    def __init__(
        self, info: GGUFModelInfo, options: EstimateOptions, runtime: RuntimeOverheadFn | None = None
    ) -> None:
        """Prepare per-layer sizes of ``info`` for ``options``.

        ``runtime``, when given, is asked once for the accelerator's per-process overhead of this
        model's :meth:`workload`; it is added to every claim that uses devices.
        """
        self.info = info
        self.options = options
        self.hparams = hp = LlamaHParams.from_info(info)
        ctx = options.ctx_size if options.ctx_size is not None else hp.n_ctx_train
        self.n_ctx = -(-ctx // CTX_PAD) * CTX_PAD
        self.n_batch = min(options.batch_size, self.n_ctx)
        self.n_ubatch = min(options.ubatch_size, self.n_batch)
        self.flash_attention = True if options.flash_attention is None else options.flash_attention
        self.type_k = _cache_type(options.cache_type_k)
        self.type_v = _cache_type(options.cache_type_v)
        quantized_v = self.type_v not in (
            GGMLQuantizationType.F16,
            GGMLQuantizationType.F32,
            GGMLQuantizationType.BF16,
        )
        if quantized_v and not self.flash_attention:
            raise EstimationError(
                f"llama.cpp needs flash attention for a quantized V cache ({options.cache_type_v}); "
                "enable flash attention or use --cache-type-v f16"
            )
        self.layer_weights = [0] * hp.n_layer
        self.layer_types: list[dict[str, int]] = [{} for _ in range(hp.n_layer)]
        self.input_weights = 0
        self.output_weights = 0
        self.output_is_tied = info.tensor("output.weight") is None
        for t in info.tensors:
            il = t.layer
            if il is not None and il < hp.n_layer:
                self.layer_weights[il] += t.n_bytes
                types = self.layer_types[il]
                types[t.type_name] = types.get(t.type_name, 0) + t.n_bytes
            elif t.name.startswith(("token_embd", "position_embd", "token_types")):
                self.input_weights += t.n_bytes
            else:
                self.output_weights += t.n_bytes
        if self.output_is_tied:
            emb = info.tensor("token_embd.weight")
            self.tied_output_bytes = emb.n_bytes if emb is not None else 0
        else:
            self.tied_output_bytes = 0
        self.runtime_overhead = runtime(self.workload()) if runtime is not None else RuntimeOverhead()

    def workload(self) -> RuntimeWorkload:
        """What this model does on a device, for the accelerator's runtime overhead."""
        types = sorted(
            {t.type_name for t in self.info.tensors if len(t.shape) >= 2 and not t.name.startswith("token_")}
        )
        return RuntimeWorkload(
            engine="llama.cpp",
            weight_types=tuple(types),
            dense_blas=not self.flash_attention or any(t in _BLAS_WEIGHT_TYPES for t in types),
            micro_batch_tokens=self.n_ubatch,
            flash_attention=self.flash_attention,
        )

    # ---- per-part sizes ------------------------------------------------------------------

    def _is_repacked(self, t: TensorInfo) -> bool:
        return (
            self.options.cpu_repack
            and t.ggml_type in CPU_REPACK_TYPES
            and len(t.shape) >= 2
            and t.shape[1] % 8 == 0
            and (t.layer is not None or t.name == "output.weight")
        )

    def repack_duplicate_bytes(self, host_layers: set[int], output_on_host: bool) -> int:
        """Host bytes held twice when the CPU repacks weights of an mmap-ed model.

        ggml-cpu copies repackable matrices (see :data:`CPU_REPACK_TYPES`) into a ``CPU_REPACK``
        buffer; the file stays mapped from the first to the last tensor that is *not* repacked,
        so originals inside that range stay resident too (``--no-repack`` or ``--no-mmap``
        avoid it). Tensors are taken in file order.
        """
        if not self.options.mmap or not self.options.cpu_repack:
            return 0
        host: list[tuple[bool, int]] = []
        for t in self.info.tensors:
            il = t.layer
            if il is not None and il not in host_layers:
                continue
            if il is None and t.name.startswith("output") and not output_on_host:
                continue
            host.append((self._is_repacked(t), t.n_bytes))
        plain = [i for i, (rep, _) in enumerate(host) if not rep]
        if not plain:
            return 0
        lo, hi = plain[0], plain[-1]
        return sum(n for i, (rep, n) in enumerate(host) if rep and lo <= i <= hi)

    def kv_bytes(self, il: int) -> tuple[int, int]:
        """(K, V) cache bytes of block ``il`` for the padded context."""
        hp = self.hparams
        if not hp.causal:
            return 0, 0
        k = ggml_row_bytes(self.type_k, hp.head_dim_k * hp.n_head_kv[il] * self.n_ctx)
        v = ggml_row_bytes(self.type_v, hp.head_dim_v * hp.n_head_kv[il] * self.n_ctx)
        return k, v

    @property
    def kv_total_bytes(self) -> int:
        """KV cache bytes of all blocks."""
        return sum(sum(self.kv_bytes(il)) for il in range(self.hparams.n_layer))

    @property
    def n_outputs(self) -> int:
        """Outputs (logit rows) of the reserved worst-case graph.

        llama-server reserves one output per parallel sequence (``n_outputs_max``), an
        embedding server ``n_batch``; ``options.max_outputs`` overrides (older llama.cpp and
        llama-cli reserve ``n_ubatch``).
        """
        if self.options.max_outputs is not None:
            wanted = self.options.max_outputs
        elif not self.hparams.causal:
            wanted = self.n_batch
        else:
            wanted = self.options.parallel
        return max(1, min(self.n_ubatch, wanted))

    def compute_bytes(self, with_output: bool = True) -> int:
        """Compute buffer of the device that runs the blocks (and the output layer).

        llama.cpp reserves the worst-case graph: ``n_ubatch`` tokens attending to the full
        context. ggml-alloc reuses memory between layers, so the buffer is the graph inputs (KQ
        mask) plus the largest set of tensors live during one phase. In units of one f32
        activation row set (``x * n_ubatch * 4`` bytes, ``e`` for n_embd, ``f`` for n_ff, ``g``
        for n_embd_k_gqa), measured on llama-server (docs/benchmarks/estimation.md):

        - attention, flash attention: ``5e + g``; without: the KQ scores
          ``n_ctx * n_ubatch * n_head`` f32 plus ``5e + 2g``;
        - feed-forward: ``3f + 4e`` (``+e`` without flash attention) when ``f >= 3e``, else
          ``4f + e`` (``+e``): gate, up and their product live with the residual stream;
        - output: the hidden state plus ``n_vocab x n_outputs`` f32 logits.
        """
        hp = self.hparams
        t = self.n_ubatch
        n_kv = self.n_ctx if hp.causal else t
        f32 = 4
        fa = self.flash_attention
        e = hp.n_embd * t * f32
        g = max(hp.n_head_kv) * max(hp.head_dim_k, hp.head_dim_v) * t * f32
        f = hp.n_ff * max(hp.n_expert_used, 1) * t * f32
        mask = n_kv * t * (2 if fa else 4)
        inputs = t * 4 * 2 + t * 8 * 2 + self.n_outputs * 4 + mask
        kq = 0 if fa else n_kv * t * max(hp.n_head) * f32  # KQ scores; soft_max runs in place
        attn = kq + 5 * e + (g if fa else 2 * g)
        ffn = 3 * f + 4 * e if f >= 3 * e else 4 * f + e
        if not fa:
            ffn += e
        output = e + (hp.n_vocab * self.n_outputs * f32 if with_output and hp.causal else 0)
        return inputs + max(attn, ffn, output)

    def cpu_work_bytes(self) -> int:
        """Work buffer of ggml-cpu's graph plan, kept by the CPU backend between calls.

        A matrix multiplication converts its activations to the weights' dot-product type
        there. Without flash attention the largest is the soft-maxed KQ matrix converted to f16
        for ``KQ x V`` (``n_ctx x n_ubatch x n_head x 2``); otherwise a feed-forward input.
        """
        hp = self.hparams
        t = self.n_ubatch
        widest = max(hp.n_ff * max(hp.n_expert_used, 1), hp.n_embd)
        work = t * widest * 2
        if not self.flash_attention and hp.causal:
            work = max(work, self.n_ctx * t * max(hp.n_head) * 2)
        return work

    def host_compute_bytes(self) -> int:
        """Host compute buffer when every block runs on devices.

        Twice the input embedding rows (f32) plus the KQ mask (f16 with flash attention, else
        f32), the graph inputs the devices copy from host memory; matches llama.cpp's logged
        ``CUDA_Host compute buffer`` to 0.01 MiB in every run of docs/benchmarks/estimation-h200.md.
        """
        t = self.n_ubatch
        n_kv = self.n_ctx if self.hparams.causal else t
        mask = n_kv * t * (2 if self.flash_attention else 4)
        return 2 * self.hparams.n_embd * t * 4 + mask

    def output_buffer_bytes(self) -> int:
        """llama-context's host output buffer: logits for one token per sequence."""
        return self.hparams.n_vocab * self.options.parallel * 4

    # ---- placement ---------------------------------------------------------------------

    def assign_layers(self, n_gpu_layers: int, splits: Sequence[float]) -> list[int]:
        """Device index of each layer ``0..n_layer`` (last: output), ``-1`` for the CPU.

        Mirrors llama.cpp ``llama_model::load_tensors``: the last ``n_gpu_layers`` layers go to
        devices, split by the cumulative fractions of ``splits`` (one per device).
        """
        import numpy as np  # float32 arithmetic as llama.cpp does it; numpy only when placing layers

        n_all = self.hparams.n_layer
        if not splits:
            return [-1] * (n_all + 1)
        cum = np.cumsum(np.asarray(splits, dtype=np.float32))
        if float(cum[-1]) <= 0:
            raise EstimationError("tensor split proportions sum to zero")
        points = cum / cum[-1]
        start = max(n_all + 1 - n_gpu_layers, 0)
        active = min(n_gpu_layers, n_all + 1)
        out: list[int] = []
        for il in range(n_all + 1):
            if il < start or il - start >= active:
                out.append(-1)
                continue
            x = np.float32(il - start) / np.float32(active)
            out.append(min(int(np.searchsorted(points, x, side="right")), len(splits) - 1))
        return out

    def _weights_label(self, layers: Sequence[int]) -> str:
        types: dict[str, int] = {}
        for il in layers:
            for name, n in self.layer_types[il].items():
                types[name] = types.get(name, 0) + n
        main = ", ".join(f"{k} {_gib(v)}" for k, v in sorted(types.items(), key=lambda kv: -kv[1]))
        return f"weights: {len(layers)} blocks ({main})"

    def _kv_label(self, n_layers: int) -> str:
        o = self.options
        return f"KV cache {o.cache_type_k}/{o.cache_type_v} x {self.n_ctx} tokens x {n_layers} blocks"

    def _compute_label(self) -> str:
        fa = "on" if self.flash_attention else "off"
        return f"compute buffer (ubatch {self.n_ubatch}, ctx {self.n_ctx}, flash-attn {fa})"

    def claim(self, n_gpu_layers: int, splits: Sequence[float], labels: Sequence[str] = ()) -> ResourceClaim:
        """The claim for ``n_gpu_layers`` offloaded over devices with ``splits`` proportions.

        ``splits`` empty (or ``n_gpu_layers`` 0) is CPU-only. ``labels`` names the devices.
        """
        hp = self.hparams
        n_dev = len(splits)
        where = self.assign_layers(n_gpu_layers, splits) if n_dev else [-1] * (hp.n_layer + 1)
        dev_items: list[list[MemoryItem]] = [[] for _ in range(n_dev)]
        host: list[MemoryItem] = []
        cpu_blocks = [il for il in range(hp.n_layer) if where[il] == -1]
        output_on = where[hp.n_layer]
        host.append(
            MemoryItem(label="weights: token embedding (input layer, kept on CPU)", bytes=self.input_weights)
        )
        out_bytes = self.output_weights + (self.tied_output_bytes if output_on >= 0 else 0)
        out_label = "weights: output layer" + (
            " (copy of tied token embedding)" if self.output_is_tied else ""
        )
        if cpu_blocks:
            host.append(
                MemoryItem(
                    label=self._weights_label(cpu_blocks),
                    bytes=sum(self.layer_weights[i] for i in cpu_blocks),
                )
            )
            host.append(
                MemoryItem(
                    label=self._kv_label(len(cpu_blocks)),
                    bytes=sum(sum(self.kv_bytes(i)) for i in cpu_blocks),
                )
            )
        if output_on < 0:
            host.append(MemoryItem(label=out_label, bytes=self.output_weights))
        repack = self.repack_duplicate_bytes(set(cpu_blocks), output_on < 0)
        if repack:
            host.append(
                MemoryItem(label="weights: CPU repack copy (mmap keeps the originals mapped)", bytes=repack)
            )
        for d in range(n_dev):
            blocks = [il for il in range(hp.n_layer) if where[il] == d]
            items = dev_items[d]
            if blocks:
                items.append(
                    MemoryItem(
                        label=self._weights_label(blocks), bytes=sum(self.layer_weights[i] for i in blocks)
                    )
                )
                items.append(
                    MemoryItem(
                        label=self._kv_label(len(blocks)), bytes=sum(sum(self.kv_bytes(i)) for i in blocks)
                    )
                )
            if output_on == d:
                items.append(MemoryItem(label=out_label, bytes=out_bytes))
            if blocks or output_on == d:
                items.append(
                    MemoryItem(
                        label=self._compute_label(), bytes=self.compute_bytes(with_output=output_on == d)
                    )
                )
                items.extend(self._runtime_device_items(items))
        if cpu_blocks or output_on < 0:
            host.append(
                MemoryItem(label=self._compute_label(), bytes=self.compute_bytes(with_output=output_on < 0))
            )
            host.append(MemoryItem(label="CPU matmul work buffer", bytes=self.cpu_work_bytes()))
        else:
            host.append(
                MemoryItem(
                    label="compute buffer (host: input embeddings, KQ mask)", bytes=self.host_compute_bytes()
                )
            )
        host.append(
            MemoryItem(
                label=f"output buffer (logits of {self.options.parallel} seq)",
                bytes=self.output_buffer_bytes(),
            )
        )
        host.append(
            MemoryItem(
                label=PROCESS_OVERHEAD_LABEL,
                bytes=RUNTIME_OVERHEAD_BYTES + VOCAB_BYTES_PER_TOKEN * hp.n_vocab,
            )
        )
        if any(dev_items):
            host.extend(self.runtime_overhead.host_items)
        devices = tuple(
            DeviceClaim(memory_bytes=sum(i.bytes for i in items), items=tuple(items))
            for items in dev_items
            if items
        )
        offloaded = sum(1 for w in where if w >= 0)
        notes: list[str] = []
        if labels:
            used = [labels[d] for d in range(n_dev) if dev_items[d]]
            notes.append("devices: " + ", ".join(used))
        if not devices:
            strategy = "cpu_only"
        elif offloaded < hp.n_layer + 1:
            strategy = "partial_offload"
        elif len(devices) > 1:
            strategy = "multi_device"
        else:
            strategy = "single_device"
        if strategy == "cpu_only":
            devices = ()
        return ResourceClaim(
            strategy=strategy,
            devices=devices,
            host_memory_bytes=sum(i.bytes for i in host),
            host_items=tuple(host),
            offloaded_layers=offloaded if strategy != "cpu_only" else 0,
            total_layers=hp.n_layer + 1,
            notes=tuple(notes),
        )

    def _runtime_device_items(self, buffers: Sequence[MemoryItem]) -> list[MemoryItem]:
        """The accelerator's per-process items for one device, after rounding ``buffers`` up."""
        overhead = self.runtime_overhead
        page = overhead.allocation_granularity_bytes
        out: list[MemoryItem] = []
        # llama.cpp allocates one buffer for all weights of a device, one per other item
        weights = sum(i.bytes for i in buffers if i.label.startswith("weights"))
        sizes = [weights, *(i.bytes for i in buffers if not i.label.startswith("weights"))]
        rounding = sum(-(-n // page) * page - n for n in sizes)
        if rounding:
            out.append(
                MemoryItem(
                    label=f"buffers rounded up to {_gib(page)} allocation pages ({len(buffers)} buffers)",
                    bytes=rounding,
                )
            )
        out.extend(overhead.device_items)
        return out

    def split_over_hosts(self, workers: int) -> ResourceClaim:
        """The model over the CPUs of ``workers`` workers: the head's ``llama-server`` keeps the first
        layers, the subordinates' RPC servers (``ggml-rpc-server``, CPU backend) hold the last
        ``offloaded_layers`` (``-ngl``; the output layer last), split evenly between them.

        A ``multi_worker`` claim without devices: ``worker_host_memory_bytes`` is the head's host
        memory, then each subordinate's share plus the RPC server's own process
        (:data:`RPC_SERVER_OVERHEAD_BYTES`). Layers go in proportion to the number of workers,
        at least one to each subordinate and at least one block to the head.

        Raises:
            EstimationError: fewer than two workers, or more workers than the model has layers.
        """
        n_all = self.hparams.n_layer + 1
        if workers < 2 or workers > n_all:
            raise EstimationError(
                f"cannot split {n_all} layers over the CPUs of {workers} workers; use 2 to {n_all} workers"
            )
        remote = min(n_all - 1, max(workers - 1, round(n_all * (workers - 1) / workers)))
        split = self.claim(remote, [1.0] * (workers - 1))
        subs = [d.memory_bytes + RPC_SERVER_OVERHEAD_BYTES for d in split.devices]
        return ResourceClaim(
            strategy="multi_worker",
            host_memory_bytes=split.host_memory_bytes,
            host_items=split.host_items,
            offloaded_layers=split.offloaded_layers,
            total_layers=split.total_layers,
            worker_host_memory_bytes=(split.host_memory_bytes, *subs),
            notes=(
                f"the CPUs of {workers} workers: the head keeps {n_all - remote} of {n_all} layers, "
                f"the RPC servers of {workers - 1} subordinates hold {remote} (-ngl {remote})",
            ),
        )

    def cpu_only(self) -> ResourceClaim:
        """Everything in host memory (``-ngl 0`` on a CPU build)."""
        return self.claim(0, ())

    def full_offload(self) -> ResourceClaim:
        """Every block and the output layer on one device."""
        return self.claim(self.hparams.n_layer + 1, (1.0,))

    def fit_layers(self, free_bytes: int) -> int:
        """Most layers (blocks + output, ``0..n_layer+1``) one device with ``free_bytes`` holds."""
        best = 0
        for n in range(1, self.hparams.n_layer + 2):
            claim = self.claim(n, (1.0,))
            if claim.devices and claim.devices[0].memory_bytes <= free_bytes:
                best = n
            else:
                break
        return best

    def split_across(self, free_bytes_per_device: Sequence[int], labels: Sequence[str] = ()) -> ResourceClaim:
        """Split layers over devices (RPC servers first, as llama.cpp orders them).

        Proportions are ``options.tensor_split`` when given, else each device's free memory
        (llama.cpp's default). Offloads as many layers as fit on every device; the rest stay on
        the CPU (a ``partial_offload`` claim).
        """
        if not free_bytes_per_device:
            return self.cpu_only()
        splits = list(self.options.tensor_split) or [float(b) for b in free_bytes_per_device]
        if len(splits) != len(free_bytes_per_device):
            raise EstimationError(
                f"tensor split has {len(splits)} values for {len(free_bytes_per_device)} devices"
            )
        best = self.claim(0, splits, labels)
        limit = self.hparams.n_layer + 1 if self.options.gpu_layers is None else self.options.gpu_layers
        for n in range(1, min(limit, self.hparams.n_layer + 1) + 1):
            claim = self.claim(n, splits, labels)
            where = self.assign_layers(n, splits)
            fits = True
            k = 0
            for d, free in enumerate(free_bytes_per_device):
                if any(w == d for w in where):
                    if claim.devices[k].memory_bytes > free:
                        fits = False
                    k += 1
            if not fits:
                break
            best = claim
        return best
