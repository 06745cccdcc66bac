"""Run a vendor tool with a bounded time, and parse the sizes and numbers vendor tools print."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpustack_core import _platform
from gpustack_core.errors import AcceleratorNotPresent, AcceleratorOutputError, AcceleratorToolTimeout

if TYPE_CHECKING:
    from gpustack_core.types import DetectOptions


__all__ = ["ToolResult", "find_tool", "output_error", "parse_bytes", "parse_number", "run_tool"]

logger = logging.getLogger(__name__)

_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 2**10,
    "kib": 2**10,
    "m": 2**20,
    "mb": 2**20,
    "mib": 2**20,
    "g": 2**30,
    "gb": 2**30,
    "gib": 2**30,
    "t": 2**40,
    "tb": 2**40,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[a-zA-Z]*)\s*$")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class ToolResult:
    """What a vendor tool printed: its path, standard output, standard error and run time."""

    tool: str
    path: str
    stdout: str
    stderr: str
    duration_s: float


def _environment(options: DetectOptions) -> dict[str, str]:
    return dict(os.environ if options.env is None else options.env)


def find_tool(name: str, options: DetectOptions) -> str | None:
    """Full path of ``name`` on the ``PATH`` of ``options.env`` (or of this process), or ``None``."""
    if os.path.sep in name:
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name, path=_environment(options).get("PATH", os.defpath))


def _kill_group(process: subprocess.Popen[str]) -> None:
    """Kill the tool and everything it started (it leads its own process group)."""
    try:
        _platform.signal_group(process.pid, _platform.KILL)
    except PermissionError:
        process.kill()


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def run_tool(
    argv: Sequence[str],
    options: DetectOptions,
    *,
    accelerator: str,
    extra_env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> ToolResult:
    """Run a vendor tool and return what it printed.

    The tool runs in its own process group with ``options.env`` (or this process's environment)
    and is given ``options.tool_timeout_s`` seconds; on timeout the whole group is killed, so
    nothing it started outlives the call.

    Parameters:
        argv: the tool's name (looked up on ``PATH``) or path, then its arguments.
        options: timeout and environment.
        accelerator: the plugin's name, for messages.
        extra_env: variables added to the tool's environment (e.g. ``LC_ALL=C``).
        cwd: working directory for tools that write their report to a file there.

    Raises:
        AcceleratorNotPresent: the tool is not on ``PATH``, cannot be executed, or exits non-zero
            (a vendor tool does that when its driver or devices are absent); the message is one line.
        AcceleratorToolTimeout: the tool ran past ``options.tool_timeout_s`` and was killed.
    """
    tool = argv[0]
    path = find_tool(tool, options)
    if path is None:
        raise AcceleratorNotPresent(f"{accelerator}: {tool} not found on PATH (vendor tools not installed)")
    env = _environment(options)
    if extra_env:
        env.update(extra_env)
    started = time.perf_counter()
    try:
        process = subprocess.Popen(
            [path, *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            text=True,
            errors="replace",
            **_platform.new_group_kwargs(),
        )
    except OSError as exc:
        raise AcceleratorNotPresent(f"{accelerator}: cannot run {tool} ({exc.strerror or exc})") from exc
    try:
        stdout, stderr = process.communicate(timeout=options.tool_timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        process.communicate()
        raise AcceleratorToolTimeout(
            f"{accelerator}: {tool} did not finish within {options.tool_timeout_s:g} s and was killed; "
            f"check the driver, or raise the tool timeout"
        ) from None
    finally:
        if process.poll() is None:  # interrupted (KeyboardInterrupt...): leave nothing behind
            _kill_group(process)
            process.wait()
    duration = time.perf_counter() - started
    logger.debug("%s: %s exited %s in %.3f s", accelerator, tool, process.returncode, duration)
    if process.returncode != 0:
        why = _first_line(stderr) or _first_line(stdout) or "no output"
        raise AcceleratorNotPresent(f"{accelerator}: {tool} exited with status {process.returncode}: {why}")
    return ToolResult(tool=tool, path=path, stdout=stdout, stderr=stderr, duration_s=duration)


def output_error(accelerator: str, tool: str, what: str, sample: str | None = None) -> AcceleratorOutputError:
    """An :class:`AcceleratorOutputError` naming the tool and what could not be parsed.

    ``sample`` (the offending text) is shortened to one line of at most 120 characters.
    """
    message = f"{accelerator}: could not parse the output of {tool}: {what}"
    if sample is not None:
        line = " ".join(sample.split())
        message += f" (got {line[:120]!r})"
    return AcceleratorOutputError(message + "; please report this with the tool's full output")


def parse_bytes(text: str, default_unit: str = "") -> int:
    """Bytes from a size as vendor tools print it: ``"143771 MiB"``, ``"16 GB"``, ``"65520"``.

    Binary multiples are used for every unit (vendor tools print ``MB`` meaning MiB); a bare number
    is in ``default_unit``. Raises ``ValueError`` naming the text when it is not a size.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    unit = (match["unit"] or default_unit).lower()
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit {match['unit']!r} in {text!r}")
    return round(float(match["number"]) * _UNITS[unit])


def parse_number(text: str) -> float | None:
    """The first number in ``text`` (``"40 C"`` -> 40.0, ``"0 %"`` -> 0.0), or ``None`` for ``N/A``."""
    match = _NUMBER.search(text)
    return float(match.group()) if match else None
