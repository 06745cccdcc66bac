"""The accelerator conformance suite for the MLU plugin,
on a RECONSTRUCTED cnmon report (see fixtures/SOURCE.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from gpustack_accelerator_mlu import MluAccelerator

from gpustack_core import Accelerator, DetectOptions, Device
from gpustack_core.testing import AcceleratorSuite, Capabilities, FakeTools, emulated_runtime_probe

REPORT = (Path(__file__).parent / "fixtures" / "cnmon_info.json").read_text()
ARGS = "info -e -m -u -j"


def _tools(directory: Path, report: str = REPORT, **kwargs: object) -> FakeTools:
    tools = FakeTools(directory)
    tools.add("cnmon", {ARGS: ""}, writes={"cnmon_info.json": report}, **kwargs)  # type: ignore[arg-type]
    return tools


class TestMluReconstructed(AcceleratorSuite):
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

    @pytest.fixture
    def accelerator(self) -> Accelerator:
        return MluAccelerator()

    @pytest.fixture
    def detect_options(self, tmp_path: Path) -> DetectOptions:
        return _tools(tmp_path / "bin").options()

    @pytest.fixture
    def child_probe(self, devices: list[Device]) -> Callable[[dict[str, str]], list[str]]:
        return emulated_runtime_probe("MLU_VISIBLE_DEVICES", devices)

    @pytest.fixture
    def absent_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions]:
        return MluAccelerator(), FakeTools(tmp_path / "empty").options()

    @pytest.fixture
    def hung_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions]:
        return MluAccelerator(), _tools(tmp_path / "hung", hang_s=60, spawn_child=True).options(timeout_s=0.5)

    @pytest.fixture
    def garbled_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions, str]:
        return (
            MluAccelerator(),
            _tools(tmp_path / "garbled", '{"CnmonInfo": [{"CardNum": 0}]}').options(),
            "cnmon",
        )


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
