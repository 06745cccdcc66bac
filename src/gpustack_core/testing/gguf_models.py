"""Write small random-weight llama-architecture GGUF files for tests and benchmarks.

The files load in llama.cpp (``llama-server``, ``llama-cli``): llama architecture, an SPM
vocabulary of three special tokens, the 256 byte tokens, ``▁`` and filler pieces (so any text
tokenizes, through byte fallback where needed), a ChatML chat template, optionally a pooling type
(so an engine serves embeddings without extra flags), random weights. They produce gibberish,
which is all a memory estimate, an engine smoke test or an OpenAI endpoint test needs.

Only ``gguf`` and ``numpy`` are used, so engine tests and CI can import this module cheaply::

    from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf

    path = write_llama_gguf(tmp_path / "tiny.gguf", TinyLlamaSpec.tiny())
    embedder = write_llama_gguf(tmp_path / "embed.gguf", TinyLlamaSpec(seed=2, pooling="mean"))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, PoolingType, TokenType
from gguf.quants import quantize

if TYPE_CHECKING:
    from gpustack_core.estimate.gguf_info import GGUFModelInfo

__all__ = [
    "CHATML_TEMPLATE",
    "POOLING_TYPES",
    "SUPPORTED_WEIGHT_TYPES",
    "TinyLlamaSpec",
    "llama_info_from_config",
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
}

#: Weight types a spec may ask for, by name.
SUPPORTED_WEIGHT_TYPES: dict[str, GGMLQuantizationType] = {
    "F32": GGMLQuantizationType.F32,
    "F16": GGMLQuantizationType.F16,
    "Q8_0": GGMLQuantizationType.Q8_0,
    "Q4_0": GGMLQuantizationType.Q4_0,
}

_FILE_TYPES: dict[str, LlamaFileType] = {
    "F32": LlamaFileType.ALL_F32,
    "F16": LlamaFileType.MOSTLY_F16,
    "Q8_0": LlamaFileType.MOSTLY_Q8_0,
    "Q4_0": LlamaFileType.MOSTLY_Q4_0,
}

_N_SPECIAL = 3  # <unk>, <s>, </s>
_N_BYTES = 256
_N_MIN_VOCAB = _N_SPECIAL + _N_BYTES + 1  # and "▁", the SPM word boundary


@dataclass(frozen=True)
class TinyLlamaSpec:
    """Shape of a generated llama model.

    ``n_embd`` and ``n_ff`` must be multiples of 32 for the quantized types (their block size),
    ``n_embd`` a multiple of ``n_head``, and ``n_head`` a multiple of ``n_head_kv``.

    ``seed`` draws the weights (same spec, same file). ``pooling`` (``"mean"``, ``"cls"``,
    ``"last"``, ``"none"``) records ``llama.pooling_type`` so an engine serves embeddings from
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


def _tensor(
    writer: GGUFWriter,
    name: str,
    shape: tuple[int, ...],
    qtype: GGMLQuantizationType,
    rng: np.random.Generator,
) -> None:
    """Add a tensor of numpy shape ``shape`` (rows last-dim-contiguous) in type ``qtype``."""
    data = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
    if qtype == GGMLQuantizationType.F32:
        writer.add_tensor(name, data)
    elif qtype == GGMLQuantizationType.F16:
        writer.add_tensor(name, data.astype(np.float16))
    else:
        writer.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)


def write_llama_gguf(path: str | os.PathLike[str], spec: TinyLlamaSpec) -> Path:
    """Write ``spec`` as a llama GGUF file at ``path`` and return the path.

    Parent directories are created. The file is written to a temporary name next to ``path``
    and renamed when complete, so a crash never leaves a partial file under the final name (the
    temporary file is removed on error). Norm weights stay F32 as in llama.cpp's own
    conversions; every matrix uses ``spec.weight_type``.

    Raises:
        ValueError: the spec is inconsistent (see :meth:`TinyLlamaSpec.validate`).
    """
    spec.validate()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    try:
        _write(tmp, spec)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    return target


def _write(tmp: Path, spec: TinyLlamaSpec) -> None:
    qtype = SUPPORTED_WEIGHT_TYPES[spec.weight_type]
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

        d, kv = spec.n_embd, spec.head_dim * spec.n_head_kv
        _tensor(writer, "token_embd.weight", (spec.n_vocab, d), qtype, rng)
        for i in range(spec.n_layer):
            _tensor(writer, f"blk.{i}.attn_norm.weight", (d,), GGMLQuantizationType.F32, rng)
            _tensor(writer, f"blk.{i}.attn_q.weight", (d, d), qtype, rng)
            _tensor(writer, f"blk.{i}.attn_k.weight", (kv, d), qtype, rng)
            _tensor(writer, f"blk.{i}.attn_v.weight", (kv, d), qtype, rng)
            _tensor(writer, f"blk.{i}.attn_output.weight", (d, d), qtype, rng)
            _tensor(writer, f"blk.{i}.ffn_norm.weight", (d,), GGMLQuantizationType.F32, rng)
            _tensor(writer, f"blk.{i}.ffn_gate.weight", (spec.n_ff, d), qtype, rng)
            _tensor(writer, f"blk.{i}.ffn_up.weight", (spec.n_ff, d), qtype, rng)
            _tensor(writer, f"blk.{i}.ffn_down.weight", (d, spec.n_ff), qtype, rng)
        _tensor(writer, "output_norm.weight", (d,), GGMLQuantizationType.F32, rng)
        if not spec.tied_embeddings:
            _tensor(writer, "output.weight", (spec.n_vocab, d), qtype, rng)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def llama_info_from_config(config: dict[str, Any], weight_type: str = "F16") -> GGUFModelInfo:
    """A GGUF description of a llama-family Hugging Face ``config.json`` without writing a file.

    The header keys and tensor shapes are those ``convert_hf_to_gguf.py`` produces for a llama
    model; every matrix gets ``weight_type``, norms F32. Useful to compare llama.cpp estimates
    with published figures of models too large to generate.
    """
    from gpustack_core.estimate.gguf_info import TensorInfo, ggml_row_bytes, info_from_metadata

    qtype = int(SUPPORTED_WEIGHT_TYPES[weight_type])
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
    add("token_embd.weight", (d, n_vocab), qtype)
    for i in range(n_layer):
        add(f"blk.{i}.attn_norm.weight", (d,), f32)
        add(f"blk.{i}.attn_q.weight", (d, n_head * head_dim), qtype)
        add(f"blk.{i}.attn_k.weight", (d, kv), qtype)
        add(f"blk.{i}.attn_v.weight", (d, kv), qtype)
        add(f"blk.{i}.attn_output.weight", (n_head * head_dim, d), qtype)
        add(f"blk.{i}.ffn_norm.weight", (d,), f32)
        add(f"blk.{i}.ffn_gate.weight", (d, n_ff), qtype)
        add(f"blk.{i}.ffn_up.weight", (d, n_ff), qtype)
        add(f"blk.{i}.ffn_down.weight", (n_ff, d), qtype)
    add("output_norm.weight", (d,), f32)
    if not config.get("tie_word_embeddings", False):
        add("output.weight", (d, n_vocab), qtype)
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
