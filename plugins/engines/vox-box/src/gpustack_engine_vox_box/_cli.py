"""Flags of ``vox-box start`` that this plugin emits or owns, recorded from source.

Source: gpustack/vox-box ``README.md`` "Options" (``-d/--debug``, ``--host``, ``--port``,
``--model``, ``--device``, ``--huggingface-repo-id``, ``--model-scope-model-id``, ``--data-dir``),
which documents the argparse options of ``vox_box/cmd/start.py``.
"""

from __future__ import annotations

__all__ = ["VOX_BOX_FLAGS"]

VOX_BOX_FLAGS: frozenset[str] = frozenset(
    {
        "-d",
        "--debug",
        "--host",
        "--port",
        "--model",
        "--device",
        "--huggingface-repo-id",
        "--model-scope-model-id",
        "--data-dir",
    }
)
