"""Flags of ``llama-box`` that this plugin emits or owns, recorded from source.

Source: gpustack/llama-box ``llama-box/param.hpp``, the usage table (``opts.push_back({...})``
groups ``server``, ``server/completion``, ``server/embedding`` and ``rpc-server``), as read for this
plugin (the copy with ``--images``, ``--rerank`` and ``--rpc-server-main-gpu``).
"""

from __future__ import annotations

__all__ = ["LLAMA_BOX_FLAGS"]

LLAMA_BOX_FLAGS: frozenset[str] = frozenset(
    {
        "--host",
        "--port",
        "-m",
        "--model",
        "-a",
        "--alias",
        "-c",
        "--ctx-size",
        "-ngl",
        "--gpu-layers",
        "--n-gpu-layers",
        "-sm",
        "--split-mode",
        "-ts",
        "--tensor-split",
        "-mg",
        "--main-gpu",
        "--metrics",
        "--embeddings",
        "--images",
        "--rerank",
        "--rpc",
        "--rpc-server-host",
        "--rpc-server-port",
        "--rpc-server-main-gpu",
        "--pooling",
        "-np",
        "--parallel",
        "-t",
        "--threads",
    }
)
