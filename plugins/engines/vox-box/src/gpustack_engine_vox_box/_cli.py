"""Flags of ``vox-box start`` that this plugin emits or owns, recorded from source.

Source: gpustack/vox-box ``README.md`` "Options" (``-d/--debug``, ``--host``, ``--port``,
``--model``, ``--device``, ``--huggingface-repo-id``, ``--model-scope-model-id``, ``--data-dir``),
which documents the argparse options of ``vox_box/cmd/start.py``. Checked again against
``vox_box/cmd/start.py`` of the vox-box 0.0.21 wheel (PyPI, 2025-12, the default): the same nine
names in its ``add_argument`` calls.
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
