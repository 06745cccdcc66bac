"""Flags of ``vllm serve`` and ``ray start`` that this plugin emits or owns, recorded from source.

- vLLM engine arguments: ``vllm/engine/arg_utils.py`` (``EngineArgs.add_cli_args``) at commit
  001999d2f360c2c5da23a916510c273b1a73d06c (the v0.7 series: it still has ``--task`` and the
  deprecated ``--use-v2-block-manager``).
- vLLM server arguments: ``vllm/entrypoints/openai/cli_args.py`` (``--host``, ``--port``; present in
  every version, read at commit 005223338608bc94fd165a4f976c102a57bd1fc4).
- Ray: ``python/ray/scripts/scripts.py`` (the ``ray start`` click command: ``--head``, ``--port``,
  ``--address``, ``--block``).
"""

from __future__ import annotations

__all__ = ["RAY_START_FLAGS", "VLLM_SERVE_FLAGS"]

#: Copied from arg_utils.py add_argument calls (with their aliases) and cli_args.py.
VLLM_SERVE_FLAGS: frozenset[str] = frozenset(
    {
        "--host",
        "--port",
        "--model",
        "--task",
        "--served-model-name",
        "--max-model-len",
        "--tensor-parallel-size",
        "-tp",
        "--pipeline-parallel-size",
        "-pp",
        "--distributed-executor-backend",
        "--trust-remote-code",
        "--gpu-memory-utilization",
        "--dtype",
        "--enforce-eager",
        "--quantization",
        "-q",
        "--download-dir",
    }
)

#: Copied from the ``ray start`` click options.
RAY_START_FLAGS: frozenset[str] = frozenset({"--head", "--port", "--address", "--block", "--node-ip-address"})
