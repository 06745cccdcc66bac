"""The accelerator conformance suite for the CANN plugin, on npu-smi output recorded on Atlas 800 servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpustack_accelerator_cann import CannAccelerator

from gpustack_core import Accelerator
from gpustack_core.testing import Capabilities, FakeTools, FakeToolSuite

FIXTURES = Path(__file__).parent / "fixtures"


def _recorded(capture: str, command: str) -> str:
    return (FIXTURES / f"{capture}-npu-smi-{command}.txt").read_text()


def _tools(
    directory: Path, capture: str = "atlas-800-9010-24.1.RC2", info: str | None = None, **kwargs: object
) -> FakeTools:
    """npu-smi printing the capture (``info`` replaces the output of ``npu-smi info``)."""
    tools = FakeTools(directory)
    table = {
        "info": _recorded(capture, "info") if info is None else info,
        "info -m": _recorded(capture, "info-m"),
    }
    tools.add("npu-smi", table, **kwargs)  # type: ignore[arg-type]
    return tools


def _truncated_info(capture: str) -> str:
    """The capture's ``npu-smi info`` cut after seven lines: the first NPU row without its chip row."""
    return "\n".join(_recorded(capture, "info").splitlines()[:7]) + "\n"


class TestCann910Recorded(FakeToolSuite):
    """8 x Ascend 910A (npu-smi 24.1.RC2)."""

    capture = "atlas-800-9010-24.1.RC2"
    capabilities = Capabilities(
        has_devices=True,
        visibility_restricts=True,
        has_temperature=True,
        has_utilization=True,
        absent_vendor=True,
        tool_timeout=True,
        garbled_output=True,
        independent_source="no second Ascend tool was recorded on the same machine",
    )

    visibility_variable = "ASCEND_RT_VISIBLE_DEVICES"
    garbled_tool = "npu-smi"
    garbled_output = _truncated_info(capture)

    def make_accelerator(self) -> Accelerator:
        return CannAccelerator()

    def fake_tools(self, directory: Path, output: str | None = None, **behaviour: Any) -> FakeTools:
        return _tools(directory, self.capture, info=output, **behaviour)


class TestCann310Recorded(TestCann910Recorded):
    """One card with 4 x Ascend 310 chips (npu-smi 21.0.4)."""

    capture = "atlas-800-3000-21.0.4"
    garbled_output = _truncated_info(capture)


def test_recorded_910a(tmp_path: Path) -> None:
    devices = CannAccelerator().detect(_tools(tmp_path / "bin").options())
    assert [d.index for d in devices] == list(range(8))
    first = devices[0]
    assert first.name == "Ascend 910A"
    assert first.uuid == "npu-0000:c1:00.0"
    assert first.pci_bus_id == "0000:C1:00.0"
    assert first.memory_total_bytes == 32768 * 2**20
    assert first.memory_used_bytes == 0
    assert first.temperature_celsius == 42.0
    assert first.utilization_percent == 0.0
    assert first.driver_version == "24.1.RC2"
    assert first.extra["memory_kind"] == "HBM"
    assert devices[3].extra["health"] == "Warning"


def test_recorded_310_card_gives_one_device_per_chip(tmp_path: Path) -> None:
    devices = CannAccelerator().detect(_tools(tmp_path / "bin", "atlas-800-3000-21.0.4").options())
    assert [(d.index, d.extra["npu_id"], d.extra["chip_id"]) for d in devices] == [
        (0, "6", "0"),
        (1, "6", "1"),
        (2, "6", "2"),
        (3, "6", "3"),
    ]
    assert devices[1].name == "Ascend 310"
    assert devices[1].memory_total_bytes == 8192 * 2**20
    assert devices[1].memory_used_bytes == 2867 * 2**20
    assert devices[1].extra["memory_kind"] == "DDR"
    assert devices[0].driver_version == "21.0.4.B030"


def test_empty_subset() -> None:
    assert CannAccelerator().visibility_env([]) == {"ASCEND_RT_VISIBLE_DEVICES": "-1"}
