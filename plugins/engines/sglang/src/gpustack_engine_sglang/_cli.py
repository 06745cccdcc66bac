"""Flags of ``python -m sglang.launch_server`` that this plugin emits or owns, recorded from source.

Source: ``python/sglang/srt/server_args.py`` (``ServerArgs.add_cli_args``), the v0.4-era copy read
for this plugin (it has ``--speculative-algorithm EAGLE`` and ``--enable-flashinfer-mla`` and no
``--pp-size``). Aliases are as declared there (``--tensor-parallel-size``/``--tp-size``,
``--dist-init-addr``/``--nccl-init-addr``).
"""

from __future__ import annotations

__all__ = ["SGLANG_FLAGS"]

SGLANG_FLAGS: frozenset[str] = frozenset(
    {
        "--model-path",
        "--host",
        "--port",
        "--served-model-name",
        "--tensor-parallel-size",
        "--tp-size",
        "--context-length",
        "--is-embedding",
        "--trust-remote-code",
        "--dist-init-addr",
        "--nccl-init-addr",
        "--nnodes",
        "--node-rank",
        "--mem-fraction-static",
        "--dtype",
        "--chat-template",
    }
)
