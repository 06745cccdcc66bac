"""The shared vendor-tool runner and parsing helpers in gpustack_core.accelerators."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gpustack_core import DetectOptions
from gpustack_core.accelerators import find_tool, output_error, parse_bytes, parse_number, run_tool
from gpustack_core.errors import AcceleratorNotPresent, AcceleratorOutputError, AcceleratorToolTimeout
from gpustack_core.testing import Capabilities, FakeTools
from gpustack_core.testing.accelerators import _child_pids, requires


def test_output_is_returned(tmp_path: Path) -> None:
    tools = FakeTools(tmp_path)
    tools.add("vendor-smi", {"--json": '{"ok": 1}'})
    result = run_tool(["vendor-smi", "--json"], tools.options(), accelerator="x")
    assert result.stdout == '{"ok": 1}'
    assert result.tool == "vendor-smi"
    assert result.path == str(tmp_path / "vendor-smi")
    assert result.duration_s > 0


def test_missing_tool_is_one_diagnostic_line(tmp_path: Path) -> None:
    with pytest.raises(AcceleratorNotPresent) as info:
        run_tool(["vendor-smi"], FakeTools(tmp_path).options(), accelerator="x")
    assert str(info.value) == "x: vendor-smi not found on PATH (vendor tools not installed)"


def test_failing_tool_reports_status_and_first_line(tmp_path: Path) -> None:
    tools = FakeTools(tmp_path)
    tools.add("vendor-smi", "\n\ndriver not loaded\nsecond line\n", exit_code=3)
    with pytest.raises(
        AcceleratorNotPresent, match=r"^x: vendor-smi exited with status 3: driver not loaded$"
    ):
        run_tool(["vendor-smi"], tools.options(), accelerator="x")


def test_hung_tool_and_its_children_are_killed(tmp_path: Path) -> None:
    tools = FakeTools(tmp_path)
    tools.add("vendor-smi", "never", hang_s=60, spawn_child=True)
    before = _child_pids()
    started = time.monotonic()
    with pytest.raises(AcceleratorToolTimeout, match=r"did not finish within 0\.3 s and was killed"):
        run_tool(["vendor-smi"], tools.options(timeout_s=0.3), accelerator="x")
    assert time.monotonic() - started < 5
    assert _child_pids() - before == set()
    # the grandchild, in the tool's process group, is gone too: no process of that group survives
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            assert str(tmp_path).encode() not in cmdline


def test_environment_comes_from_options(tmp_path: Path) -> None:
    tools = FakeTools(tmp_path)
    tools.add("vendor-smi", "x")
    assert find_tool("vendor-smi", tools.options()) == str(tmp_path / "vendor-smi")
    assert find_tool("vendor-smi", DetectOptions(env={"PATH": "/nonexistent"})) is None


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("143771 MiB", "", 143771 * 2**20),
        ("16 GB", "", 16 * 2**30),
        ("65520", "MiB", 65520 * 2**20),
        ("17163091968", "B", 17163091968),
        ("4KB", "", 4096),
        ("1.5 GiB", "", 3 * 2**29),
    ],
)
def test_parse_bytes(text: str, unit: str, expected: int) -> None:
    assert parse_bytes(text, unit) == expected


@pytest.mark.parametrize("text", ["N/A", "12 parsecs", "", "MiB"])
def test_parse_bytes_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace("(", r"\(")):
        parse_bytes(text)


def test_parse_number() -> None:
    assert parse_number("40 C") == 40.0
    assert parse_number("-8 C") == -8.0
    assert parse_number("N/A") is None


def test_output_error_names_tool_part_and_sample() -> None:
    error = output_error("rocm", "rocm-smi", "card0 has no VRAM", "x\n" * 100)
    assert isinstance(error, AcceleratorOutputError)
    assert str(error).startswith("rocm: could not parse the output of rocm-smi: card0 has no VRAM (got 'x x")
    assert "\n" not in str(error)


def test_capabilities_reasons() -> None:
    caps = Capabilities(has_temperature="no sensor", tool_timeout=True)
    assert caps.reason_closed("tool_timeout") is None
    assert caps.reason_closed("has_temperature") == "no sensor"
    assert "not declared" in (caps.reason_closed("garbled_output") or "")
    with pytest.raises(ValueError, match="unknown capabilities"):
        requires("has_wings")
