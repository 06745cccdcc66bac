"""Helpers for accelerator plugins: running vendor tools safely and reading their numbers.

Every accelerator plugin that shells out to a vendor tool (``nvidia-smi``, ``rocm-smi``, ``npu-smi``...)
does it through :func:`run_tool`, so that a missing tool, a hung tool and garbled output are handled
the same way everywhere:

* missing tool, or a tool that says the driver is absent ->
  :class:`~gpustack_core.errors.AcceleratorNotPresent`
  with one diagnostic line;
* a tool still running after ``DetectOptions.tool_timeout_s`` -> its whole process group is killed,
  then :class:`~gpustack_core.errors.AcceleratorToolTimeout`;
* output a plugin cannot parse -> :func:`output_error` builds an
  :class:`~gpustack_core.errors.AcceleratorOutputError` naming the tool and the part that failed.
"""

from __future__ import annotations

from .tools import ToolResult, find_tool, output_error, parse_bytes, parse_number, run_tool

__all__ = ["ToolResult", "find_tool", "output_error", "parse_bytes", "parse_number", "run_tool"]
