"""Tiny random-weight GGUF models for engine tests, written with the ``gguf`` package.

A llama-architecture model with an SPM vocabulary of three special tokens, the 256 byte tokens
and ``▁`` (so any text tokenizes through byte fallback), a ChatML chat template, and about 115k
float32 parameters (~0.5 MB). It produces noise, quickly: enough for an engine to load it, answer
every OpenAI endpoint, and be killed and restarted in a test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFWriter, PoolingType, TokenType

__all__ = ["CHATML_TEMPLATE", "TinyLlamaShape", "write_tiny_llama"]

#: A plain ChatML template: the model's tokens for it come from byte fallback.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class TinyLlamaShape:
    """Dimensions of the generated model (defaults: 2 layers, 64 wide, 4 heads, context 512)."""

    def __init__(
        self, n_embd: int = 64, n_layer: int = 2, n_head: int = 4, n_head_kv: int = 4, n_ff: int = 128,
        n_ctx: int = 512,
    ) -> None:  # fmt: skip
        if n_embd % n_head or n_head % n_head_kv:
            raise ValueError("n_embd must be a multiple of n_head, and n_head of n_head_kv")
        self.n_embd, self.n_layer, self.n_head, self.n_head_kv = n_embd, n_layer, n_head, n_head_kv
        self.n_ff, self.n_ctx = n_ff, n_ctx


def _vocab() -> tuple[list[bytes], list[float], list[int]]:
    tokens: list[bytes] = [b"<unk>", b"<s>", b"</s>"]
    types = [int(TokenType.UNKNOWN), int(TokenType.CONTROL), int(TokenType.CONTROL)]
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>".encode())
        types.append(int(TokenType.BYTE))
    tokens.append("\u2581".encode())
    types.append(int(TokenType.NORMAL))
    scores = [0.0] * len(tokens)
    scores[-1] = -1.0
    return tokens, scores, types


def write_tiny_llama(
    path: str | Path,
    *,
    seed: int = 0,
    shape: TinyLlamaShape | None = None,
    pooling: str | None = None,
    name: str = "tiny-llama",
) -> Path:
    """Write a tiny random llama GGUF to ``path`` and return it.

    Parameters:
        path: the file to write (parent directories are created).
        seed: weights are drawn from a normal distribution with this seed (same seed, same file).
        shape: dimensions; default :class:`TinyLlamaShape`.
        pooling: ``"mean"``, ``"cls"`` or ``"last"`` records a default pooling type, so that an
            engine serves embeddings from it without extra flags; None records none.
        name: ``general.name``.
    """
    dims = shape or TinyLlamaShape()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    n_vocab = len(tokens)
    head_dim = dims.n_embd // dims.n_head
    n_embd_kv = head_dim * dims.n_head_kv

    writer = GGUFWriter(str(target), "llama")
    writer.add_name(name)
    writer.add_context_length(dims.n_ctx)
    writer.add_embedding_length(dims.n_embd)
    writer.add_block_count(dims.n_layer)
    writer.add_feed_forward_length(dims.n_ff)
    writer.add_head_count(dims.n_head)
    writer.add_head_count_kv(dims.n_head_kv)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(0)  # all F32
    if pooling is not None:
        writer.add_pooling_type(PoolingType[pooling.upper()])
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    def weight(*numpy_shape: int) -> np.ndarray:
        return (rng.standard_normal(numpy_shape) * 0.05).astype(np.float32)

    writer.add_tensor("token_embd.weight", weight(n_vocab, dims.n_embd))
    for layer in range(dims.n_layer):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(dims.n_embd, dtype=np.float32))
        writer.add_tensor(f"{prefix}.attn_q.weight", weight(dims.n_embd, dims.n_embd))
        writer.add_tensor(f"{prefix}.attn_k.weight", weight(n_embd_kv, dims.n_embd))
        writer.add_tensor(f"{prefix}.attn_v.weight", weight(n_embd_kv, dims.n_embd))
        writer.add_tensor(f"{prefix}.attn_output.weight", weight(dims.n_embd, dims.n_embd))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(dims.n_embd, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_gate.weight", weight(dims.n_ff, dims.n_embd))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weight(dims.n_ff, dims.n_embd))
        writer.add_tensor(f"{prefix}.ffn_down.weight", weight(dims.n_embd, dims.n_ff))
    writer.add_tensor("output_norm.weight", np.ones(dims.n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", weight(n_vocab, dims.n_embd))

    tmp = target.with_name(f".{target.name}.tmp")
    writer.path = tmp  # write completely, then rename: never a partial model under the real name
    writer.write_header_to_file(path=tmp)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(target)
    return target
