"""The accelerator conformance suite for the MLU plugin,
on a RECONSTRUCTED cnmon report (see fixtures/SOURCE.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpustack_accelerator_mlu import MluAccelerator

from gpustack_core import Accelerator
from gpustack_core.testing import Capabilities, FakeTools, FakeToolSuite

REPORT = (Path(__file__).parent / "fixtures" / "cnmon_info.json").read_text()
ARGS = "info -e -m -u -j"


def _tools(directory: Path, report: str = REPORT, **kwargs: object) -> FakeTools:
    tools = FakeTools(directory)
    tools.add("cnmon", {ARGS: ""}, writes={"cnmon_info.json": report}, **kwargs)  # type: ignore[arg-type]
    return tools


class TestMluReconstructed(FakeToolSuite):
    """Two MLU370 cards; cnmon writes its report file as the real tool does."""

    capabilities = Capabilities(
        has_devices=True,
        visibility_restricts=True,
        has_temperature=True,
        has_utilization=True,
        absent_vendor=True,
        tool_timeout=True,
        garbled_output=True,
        independent_source="no second Cambricon tool was recorded",
    )

    visibility_variable = "MLU_VISIBLE_DEVICES"
    garbled_tool = "cnmon"
    garbled_output = '{"CnmonInfo": [{"CardNum": 0}]}'

    def make_accelerator(self) -> Accelerator:
        return MluAccelerator()

    def fake_tools(self, directory: Path, output: str | None = None, **behaviour: Any) -> FakeTools:
        return _tools(directory, REPORT if output is None else output, **behaviour)


def test_report_on_stdout_is_accepted(tmp_path: Path) -> None:
    tools = FakeTools(tmp_path / "bin")
    tools.add("cnmon", {ARGS: REPORT})
    devices = MluAccelerator().detect(tools.options())
    assert [d.uuid for d in devices] == [
        "MLU-00000000-0000-0000-0000-000000000000",
        "MLU-00000000-0000-0000-0000-000000000001",
    ]
    assert devices[1].memory_used_bytes == 24576 * 2**20
    assert devices[1].utilization_percent == 63.0
