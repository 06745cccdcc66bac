"""Write small random-weight llama-architecture GGUF files for tests and benchmarks.

The files load in llama.cpp (``llama-server``, ``llama-cli``): llama architecture, an SPM
vocabulary of three special tokens, the 256 byte tokens, ``▁`` and filler pieces (so any text
tokenizes, through byte fallback where needed), a ChatML chat template, optionally a pooling type
(so an engine serves embeddings without extra flags), random weights. They produce gibberish,
which is all a memory estimate, an engine smoke test or an OpenAI endpoint test needs.

Weight types: F32, F16, Q8_0, Q4_0 for every matrix, and Q4_K_M, the mix of Q4_K and Q6_K that
``llama-quantize`` writes for a llama model (:func:`matrix_type`). ``fill`` picks the values:
``"random"`` (the default) draws every value; ``"tiled"`` repeats one random 1 Mi-value chunk per
type, fast enough for multi-GB benchmark models (memory does not depend on the values);
``"zeros"`` leaves the weights as a sparse hole, instant and taking no disk, for reading headers
(estimates) of models too large to write.

Only ``gguf`` and ``numpy`` are used, so engine tests and CI can import this module cheaply::

    from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf

    path = write_llama_gguf(tmp_path / "tiny.gguf", TinyLlamaSpec.tiny())
    embedder = write_llama_gguf(tmp_path / "embed.gguf", TinyLlamaSpec(seed=2, pooling="mean"))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter, LlamaFileType, PoolingType, TokenType
from gguf.quants import quantize

if TYPE_CHECKING:
    from gpustack_core.estimate.gguf_info import GGUFModelInfo

__all__ = [
    "CHATML_TEMPLATE",
    "POOLING_TYPES",
    "SUPPORTED_WEIGHT_TYPES",
    "Fill",
    "TinyLlamaSpec",
    "llama_info_from_config",
    "matrix_type",
    "write_llama_gguf",
]

#: A plain ChatML template: the model's tokens for it come from byte fallback.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Pooling types a spec may record (``llama.pooling_type``), by name.
POOLING_TYPES: dict[str, PoolingType] = {
    "none": PoolingType.NONE,
    "mean": PoolingType.MEAN,
    "cls": PoolingType.CLS,
    "last": PoolingType.LAST,
    "rank": PoolingType.RANK,
}

#: Weight types a spec may ask for, by name, and the type of most matrices (see :func:`matrix_type`).
SUPPORTED_WEIGHT_TYPES: dict[str, GGMLQuantizationType] = {
    "F32": GGMLQuantizationType.F32,
    "F16": GGMLQuantizationType.F16,
    "Q8_0": GGMLQuantizationType.Q8_0,
    "Q4_0": GGMLQuantizationType.Q4_0,
    "Q4_K_M": GGMLQuantizationType.Q4_K,
}

_FILE_TYPES: dict[str, LlamaFileType] = {
    "F32": LlamaFileType.ALL_F32,
    "F16": LlamaFileType.MOSTLY_F16,
    "Q8_0": LlamaFileType.MOSTLY_Q8_0,
    "Q4_0": LlamaFileType.MOSTLY_Q4_0,
    "Q4_K_M": LlamaFileType.MOSTLY_Q4_K_M,
}

#: How :func:`write_llama_gguf` fills the weights (see the module docstring).
Fill = Literal["random", "tiled", "zeros"]
_FILLS = ("random", "tiled", "zeros")
_QK_K = 256  # values per K-quant block
_TILE_VALUES = 1 << 20  # values in one "tiled" chunk (a multiple of every block size)

_N_SPECIAL = 3  # <unk>, <s>, </s>
_N_BYTES = 256
_N_MIN_VOCAB = _N_SPECIAL + _N_BYTES + 1  # and "▁", the SPM word boundary


@dataclass(frozen=True)
class TinyLlamaSpec:
    """Shape of a generated llama model.

    ``n_embd`` and ``n_ff`` must be multiples of 32 for the quantized types (their block size),
    ``n_embd`` a multiple of ``n_head``, and ``n_head`` a multiple of ``n_head_kv``.

    ``seed`` draws the weights (same spec, same file). ``pooling`` (``"mean"``, ``"cls"``,
    ``"last"``, ``"rank"``, ``"none"``) records ``llama.pooling_type`` so an engine serves embeddings from
    the file; None records none. ``chat_template`` is stored as ``tokenizer.chat_template``
    (None stores none). ``name`` is ``general.name``; None gives ``tiny-llama-<n_params>``.
    """

    n_vocab: int = 512
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 4
    n_ff: int = 128
    n_ctx_train: int = 4096
    weight_type: str = "F32"
    tied_embeddings: bool = False
    seed: int = 0
    pooling: str | None = None
    chat_template: str | None = CHATML_TEMPLATE
    name: str | None = None

    @classmethod
    def tiny(cls, weight_type: str = "F32") -> TinyLlamaSpec:
        """About 150 k parameters (~0.6 MB as F32): 2 layers, n_embd 64, 512 tokens."""
        return cls(weight_type=weight_type)

    @classmethod
    def small(cls, weight_type: str = "F16") -> TinyLlamaSpec:
        """About 6 M parameters: 4 layers, n_embd 256, GQA 8/2 heads, 8 k tokens."""
        return cls(
            n_vocab=8192, n_embd=256, n_layer=4, n_head=8, n_head_kv=2, n_ff=768, weight_type=weight_type
        )

    @classmethod
    def medium(cls, weight_type: str = "Q8_0") -> TinyLlamaSpec:
        """About 58 M parameters (33 M of them embeddings): 8 layers, n_embd 512, GQA 8/4, 32 k tokens."""
        return cls(
            n_vocab=32000, n_embd=512, n_layer=8, n_head=8, n_head_kv=4, n_ff=1536, weight_type=weight_type
        )

    def with_type(self, weight_type: str) -> TinyLlamaSpec:
        """The same shape with another weight type."""
        return replace(self, weight_type=weight_type)

    @property
    def head_dim(self) -> int:
        """Dimension of one attention head."""
        return self.n_embd // self.n_head

    @property
    def n_params(self) -> int:
        """Number of parameters the file holds."""
        per_layer = (
            2 * self.n_embd  # attn_norm, ffn_norm
            + 2 * self.n_embd * self.n_embd  # q, o
            + 2 * self.n_embd * self.head_dim * self.n_head_kv  # k, v
            + 3 * self.n_embd * self.n_ff  # gate, up, down
        )
        output = 0 if self.tied_embeddings else self.n_vocab * self.n_embd
        return self.n_vocab * self.n_embd + self.n_layer * per_layer + self.n_embd + output

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent dimension."""
        if self.weight_type not in SUPPORTED_WEIGHT_TYPES:
            raise ValueError(f"weight_type {self.weight_type!r}: use one of {sorted(SUPPORTED_WEIGHT_TYPES)}")
        if self.n_vocab < _N_MIN_VOCAB:
            raise ValueError(
                f"n_vocab {self.n_vocab} must be at least {_N_MIN_VOCAB} (3 special, 256 byte tokens and ▁)"
            )
        if self.pooling is not None and self.pooling not in POOLING_TYPES:
            raise ValueError(f"pooling {self.pooling!r}: use one of {sorted(POOLING_TYPES)} or None")
        if self.n_embd % self.n_head or self.n_head % self.n_head_kv:
            raise ValueError("n_embd must be a multiple of n_head, and n_head a multiple of n_head_kv")
        if self.weight_type.startswith("Q") and (self.n_embd % 32 or self.n_ff % 32):
            raise ValueError("n_embd and n_ff must be multiples of 32 for quantized weight types")
        if self.weight_type == "Q4_K_M" and (self.n_embd % _QK_K or self.n_ff % _QK_K):
            raise ValueError(f"n_embd and n_ff must be multiples of {_QK_K} for Q4_K_M (K-quant blocks)")


def _vocab(spec: TinyLlamaSpec) -> tuple[list[bytes], list[float], list[int]]:
    tokens: list[bytes] = [b"<unk>", b"<s>", b"</s>"]
    types: list[int] = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    for b in range(_N_BYTES):
        tokens.append(f"<0x{b:02X}>".encode())
        types.append(TokenType.BYTE)
    tokens.append("\u2581".encode())  # the word boundary alone, so spaces never need byte fallback
    types.append(TokenType.NORMAL)
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(tokens) < spec.n_vocab:
        # distinct pieces "▁a", "▁b", ..., "▁aa", ... so the vocabulary has no duplicates
        n, piece = i, ""
        while True:
            piece = alphabet[n % 26] + piece
            n = n // 26 - 1
            if n < 0:
                break
        tokens.append(("\u2581" + piece).encode())
        types.append(TokenType.NORMAL)
        i += 1
    scores = [0.0] * (_N_SPECIAL + _N_BYTES) + [
        -float(k) for k in range(spec.n_vocab - _N_SPECIAL - _N_BYTES)
    ]
    return tokens, scores, types


def matrix_type(weight_type: str, name: str, n_layer: int, tied_embeddings: bool) -> GGMLQuantizationType:
    """The type of matrix ``name`` (``token_embd.weight``, ``blk.<i>.attn_v.weight``, ...).

    Every matrix gets ``weight_type``, except for Q4_K_M, which follows ``llama-quantize``
    (``src/llama-quant.cpp`` at llama.cpp 0c1e57098, llama architecture, no experts, not the
    70B case): the output matrix, and the token embedding when it is tied to the output, Q6_K;
    ``attn_v`` and ``ffn_down`` of the layers ``use_more_bits`` picks (the first and last
    eighth and every third in between) Q6_K; every other matrix Q4_K.
    """
    base = SUPPORTED_WEIGHT_TYPES[weight_type]
    if weight_type != "Q4_K_M":
        return base
    q6 = GGMLQuantizationType.Q6_K
    if name == "output.weight" or (name == "token_embd.weight" and tied_embeddings):
        return q6
    if name.endswith((".attn_v.weight", ".ffn_down.weight")):
        il = int(name.split(".")[1])
        more_bits = il < n_layer // 8 or il >= 7 * n_layer // 8 or (il - n_layer // 8) % 3 == 2
        return q6 if more_bits else base
    return base


def _tensor_plan(spec: TinyLlamaSpec) -> list[tuple[str, tuple[int, ...], GGMLQuantizationType]]:
    """Name, numpy shape (rows, row length) and type of every tensor, in file order."""
    d, kv, ff = spec.n_embd, spec.head_dim * spec.n_head_kv, spec.n_ff
    f32 = GGMLQuantizationType.F32
    shapes: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (spec.n_vocab, d))]
    for i in range(spec.n_layer):
        shapes += [
            (f"blk.{i}.attn_norm.weight", (d,)),
            (f"blk.{i}.attn_q.weight", (d, d)),
            (f"blk.{i}.attn_k.weight", (kv, d)),
            (f"blk.{i}.attn_v.weight", (kv, d)),
            (f"blk.{i}.attn_output.weight", (d, d)),
            (f"blk.{i}.ffn_norm.weight", (d,)),
            (f"blk.{i}.ffn_gate.weight", (ff, d)),
            (f"blk.{i}.ffn_up.weight", (ff, d)),
            (f"blk.{i}.ffn_down.weight", (d, ff)),
        ]
    shapes.append(("output_norm.weight", (d,)))
    if not spec.tied_embeddings:
        shapes.append(("output.weight", (spec.n_vocab, d)))
    return [
        (
            name,
            shape,
            f32
            if len(shape) == 1
            else matrix_type(spec.weight_type, name, spec.n_layer, spec.tied_embeddings),
        )
        for name, shape in shapes
    ]


def _k_quant_blocks(
    n_blocks: int, qtype: GGMLQuantizationType, rng: np.random.Generator
) -> np.ndarray[Any, Any]:
    """``n_blocks`` random Q4_K or Q6_K blocks (bytes) whose values are finite and about 0.02 in size.

    gguf-py has no K-quant quantizer: scales and quants are random bytes, and the super-block
    scales are set so that the values stay small (ggml-common.h's ``block_q4_K``: d, dmin,
    scales[12], qs[128]; ``block_q6_K``: ql[128], qh[64], scales[16], d).
    """
    block_bytes = GGML_QUANT_SIZES[qtype][1]
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    # largest value: 63 (6-bit scale) x 15 (4-bit quant) x d for Q4_K, 128 x 32 x d for Q6_K
    scale = 0.03 / (63 * 15) if qtype == GGMLQuantizationType.Q4_K else 0.03 / (128 * 32)
    d = (rng.uniform(0.5, 1.0, size=(n_blocks, 2)) * scale).astype(np.float16).view(np.uint8)
    if qtype == GGMLQuantizationType.Q4_K:
        blocks[:, 0:4] = d  # d, dmin
    else:
        blocks[:, block_bytes - 2 :] = d[:, :2]
    return blocks


def _encode(
    values: np.ndarray[Any, Any], qtype: GGMLQuantizationType, rng: np.random.Generator
) -> np.ndarray[Any, Any]:
    """``values`` (float32, rows last-dim-contiguous) in type ``qtype``: float16/32 or quantized bytes."""
    if qtype == GGMLQuantizationType.F32:
        return values
    if qtype == GGMLQuantizationType.F16:
        return values.astype(np.float16)
    if qtype in (GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q6_K):
        n_blocks = values.size // _QK_K
        rows = values.shape[0] if values.ndim > 1 else 1
        return _k_quant_blocks(n_blocks, qtype, rng).reshape(rows, -1)
    return quantize(values, qtype)


def _random(
    shape: tuple[int, ...], qtype: GGMLQuantizationType, rng: np.random.Generator
) -> np.ndarray[Any, Any]:
    """A tensor of numpy shape ``shape`` in type ``qtype`` with random values."""
    if qtype in (GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q6_K):
        n = int(np.prod(shape))
        return _k_quant_blocks(n // _QK_K, qtype, rng).reshape(shape[0] if len(shape) > 1 else 1, -1)
    data = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
    return _encode(data, qtype, rng)


def _n_bytes(shape: tuple[int, ...], qtype: GGMLQuantizationType) -> int:
    block, size = GGML_QUANT_SIZES[qtype]
    return int(np.prod(shape)) // block * size


def write_llama_gguf(path: str | os.PathLike[str], spec: TinyLlamaSpec, *, fill: Fill = "random") -> Path:
    """Write ``spec`` as a llama GGUF file at ``path`` and return the path.

    Parent directories are created. The file is written to a temporary name next to ``path``
    and renamed when complete, so a crash never leaves a partial file under the final name (the
    temporary file is removed on error). Norm weights stay F32 as in llama.cpp's own
    conversions; matrices get the types :func:`matrix_type` gives. Tensors are written one at a
    time, so a model larger than memory can be written. ``fill`` (see the module docstring)
    changes the weights' values only: the header is the same for every fill.

    Raises:
        ValueError: the spec is inconsistent (see :meth:`TinyLlamaSpec.validate`) or ``fill``
            is not one of ``random``, ``tiled``, ``zeros``.
    """
    spec.validate()
    if fill not in _FILLS:
        raise ValueError(f"fill {fill!r}: use one of {', '.join(_FILLS)}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    try:
        _write(tmp, spec, fill)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    return target


def _write(tmp: Path, spec: TinyLlamaSpec, fill: Fill) -> None:
    rng = np.random.default_rng(spec.seed)
    writer = GGUFWriter(str(tmp), "llama")
    try:
        writer.add_name(spec.name if spec.name is not None else f"tiny-llama-{spec.n_params}")
        writer.add_context_length(spec.n_ctx_train)
        writer.add_embedding_length(spec.n_embd)
        writer.add_block_count(spec.n_layer)
        writer.add_feed_forward_length(spec.n_ff)
        writer.add_head_count(spec.n_head)
        writer.add_head_count_kv(spec.n_head_kv)
        writer.add_rope_dimension_count(spec.head_dim)
        writer.add_layer_norm_rms_eps(1e-5)
        writer.add_rope_freq_base(10000.0)
        writer.add_file_type(_FILE_TYPES[spec.weight_type])
        if spec.pooling is not None:
            writer.add_pooling_type(POOLING_TYPES[spec.pooling])
        tokens, scores, types = _vocab(spec)
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_unk_token_id(0)
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)
        if spec.chat_template is not None:
            writer.add_chat_template(spec.chat_template)

        plan = _tensor_plan(spec)
        for name, shape, qtype in plan:
            n_bytes = _n_bytes(shape, qtype)
            if qtype in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
                dtype = np.dtype(np.float32 if qtype == GGMLQuantizationType.F32 else np.float16)
                writer.add_tensor_info(name, shape, dtype, n_bytes)
            else:
                byte_shape = (*shape[:-1], n_bytes // max(int(np.prod(shape[:-1])), 1))
                writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), n_bytes, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        if fill == "zeros":
            assert writer.fout is not None
            out = writer.fout[0]
            align = writer.data_alignment
            end = GGUFWriter.ggml_pad(out.tell(), align)
            end += sum(GGUFWriter.ggml_pad(_n_bytes(shape, qtype), align) for _, shape, qtype in plan)
            out.truncate(end)
            return
        chunks: dict[GGMLQuantizationType, np.ndarray[Any, Any]] = {}
        for _, shape, qtype in plan:
            if fill == "random":
                writer.write_tensor_data(_random(shape, qtype, rng))
                continue
            if qtype not in chunks:
                values = (rng.standard_normal(_TILE_VALUES, dtype=np.float32) * 0.02).astype(np.float32)
                chunks[qtype] = _encode(values.reshape(1, -1), qtype, rng).view(np.uint8).reshape(-1)
            writer.write_tensor_data(np.resize(chunks[qtype], _n_bytes(shape, qtype)))
    finally:
        writer.close()


def llama_info_from_config(config: dict[str, Any], weight_type: str = "F16") -> GGUFModelInfo:
    """A GGUF description of a llama-family Hugging Face ``config.json`` without writing a file.

    The header keys and tensor shapes are those ``convert_hf_to_gguf.py`` produces for a llama
    model; every matrix gets the type :func:`matrix_type` gives for ``weight_type``, norms F32.
    Useful to compare llama.cpp estimates
    with published figures of models too large to generate.
    """
    from gpustack_core.estimate.gguf_info import TensorInfo, ggml_row_bytes, info_from_metadata

    d = int(config["hidden_size"])
    n_layer = int(config["num_hidden_layers"])
    n_head = int(config["num_attention_heads"])
    n_head_kv = int(config.get("num_key_value_heads") or n_head)
    head_dim = int(config.get("head_dim") or d // n_head)
    n_ff = int(config["intermediate_size"])
    n_vocab = int(config["vocab_size"])
    kv = head_dim * n_head_kv
    tensors: list[TensorInfo] = []

    def add(name: str, shape: tuple[int, ...], ggml_type: int) -> None:
        n = 1
        for x in shape:
            n *= x
        tensors.append(
            TensorInfo(name=name, ggml_type=ggml_type, shape=shape, n_bytes=ggml_row_bytes(ggml_type, n))
        )

    f32 = int(GGMLQuantizationType.F32)
    tied = bool(config.get("tie_word_embeddings", False))

    def matrix(name: str, shape: tuple[int, int]) -> None:
        add(name, shape, int(matrix_type(weight_type, name, n_layer, tied)))

    matrix("token_embd.weight", (d, n_vocab))
    for i in range(n_layer):
        add(f"blk.{i}.attn_norm.weight", (d,), f32)
        matrix(f"blk.{i}.attn_q.weight", (d, n_head * head_dim))
        matrix(f"blk.{i}.attn_k.weight", (d, kv))
        matrix(f"blk.{i}.attn_v.weight", (d, kv))
        matrix(f"blk.{i}.attn_output.weight", (n_head * head_dim, d))
        add(f"blk.{i}.ffn_norm.weight", (d,), f32)
        matrix(f"blk.{i}.ffn_gate.weight", (d, n_ff))
        matrix(f"blk.{i}.ffn_up.weight", (d, n_ff))
        matrix(f"blk.{i}.ffn_down.weight", (n_ff, d))
    add("output_norm.weight", (d,), f32)
    if not tied:
        matrix("output.weight", (d, n_vocab))
    header = {
        "general.architecture": "llama",
        "llama.block_count": n_layer,
        "llama.embedding_length": d,
        "llama.feed_forward_length": n_ff,
        "llama.attention.head_count": n_head,
        "llama.attention.head_count_kv": n_head_kv,
        "llama.context_length": int(config.get("max_position_embeddings", 4096)),
        "llama.vocab_size": n_vocab,
    }
    return info_from_metadata(header, tensors)
