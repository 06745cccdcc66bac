"""Tiny real model files for tests: GGUF written with ``gguf.GGUFWriter``, safetensors by hand."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import gguf
import numpy as np

__all__ = ["make_gguf", "make_safetensors"]


def make_gguf(
    *,
    n_embd: int = 256,
    n_layers: int = 2,
    vocab: int = 300,
    file_type: int = 1,
    extra_kv: dict[str, int] | None = None,
) -> bytes:
    """A llama-architecture GGUF with ``n_layers`` blocks of F16 weights and a token list."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.gguf"
        writer = gguf.GGUFWriter(str(path), arch="llama")
        writer.add_block_count(n_layers)
        writer.add_context_length(4096)
        writer.add_embedding_length(n_embd)
        writer.add_feed_forward_length(n_embd * 2)
        writer.add_head_count(4)
        writer.add_head_count_kv(2)
        writer.add_file_type(file_type)
        writer.add_token_list([f"tok{i}" for i in range(vocab)])
        for key, value in (extra_kv or {}).items():
            writer.add_uint32(key, value)
        rng = np.random.default_rng(0)
        writer.add_tensor("token_embd.weight", rng.standard_normal((vocab, n_embd)).astype(np.float16))
        for layer in range(n_layers):
            writer.add_tensor(
                f"blk.{layer}.attn_q.weight", rng.standard_normal((n_embd, n_embd)).astype(np.float16)
            )
            writer.add_tensor(f"blk.{layer}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


def make_safetensors(tensors: dict[str, tuple[str, tuple[int, ...]]]) -> bytes:
    """A safetensors file with zero-filled tensors: name -> (dtype, shape)."""
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I8": 1}
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        count = 1
        for dim in shape:
            count *= dim
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + count * sizes[dtype]],
        }
        offset += count * sizes[dtype]
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)
