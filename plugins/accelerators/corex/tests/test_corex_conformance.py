"""The accelerator conformance suite for the CoreX plugin, on ixsmi output published by gpustack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpustack_accelerator_corex import QUERY, CorexAccelerator

from gpustack_core import Accelerator
from gpustack_core.testing import Capabilities, FakeTools, FakeToolSuite

CSV = (Path(__file__).parent / "fixtures" / "ixsmi-query-gpu.csv").read_text()


def _tools(directory: Path, text: str = CSV, **kwargs: object) -> FakeTools:
    tools = FakeTools(directory)
    tools.add("ixsmi", {" ".join(QUERY): text}, **kwargs)  # type: ignore[arg-type]
    return tools


class TestCorexRecorded(FakeToolSuite):
    """Two Iluvatar boards."""

    capabilities = Capabilities(
        has_devices=True,
        visibility_restricts=True,
        has_temperature=True,
        has_utilization=True,
        absent_vendor=True,
        tool_timeout=True,
        garbled_output=True,
        independent_source="no second Iluvatar tool was recorded",
    )

    visibility_variable = "CUDA_VISIBLE_DEVICES"
    garbled_tool = "ixsmi"
    garbled_output = "0, Iluvatar MR-V50, lots, 116 MiB, 0 %, 30 C\n"

    def make_accelerator(self) -> Accelerator:
        return CorexAccelerator()

    def fake_tools(self, directory: Path, output: str | None = None, **behaviour: Any) -> FakeTools:
        return _tools(directory, CSV if output is None else output, **behaviour)


def test_recorded_boards(tmp_path: Path) -> None:
    devices = CorexAccelerator().detect(_tools(tmp_path / "bin").options())
    assert [(d.index, d.name) for d in devices] == [(0, "Iluvatar MR-V50"), (1, "Iluvatar MR-V100")]
    assert devices[1].memory_total_bytes == 32768 * 2**20
    assert devices[1].memory_used_bytes == 27996 * 2**20
    assert devices[1].temperature_celsius == 36.0
    assert devices[0].utilization_percent == 0.0
    assert CorexAccelerator().visibility_env(devices[1:]) == {"CUDA_VISIBLE_DEVICES": "1"}
