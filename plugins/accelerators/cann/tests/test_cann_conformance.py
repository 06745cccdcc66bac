"""The accelerator conformance suite for the CANN plugin, on npu-smi output recorded on Atlas 800 servers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from gpustack_accelerator_cann import CannAccelerator

from gpustack_core import Accelerator, DetectOptions, Device
from gpustack_core.testing import AcceleratorSuite, Capabilities, FakeTools, emulated_runtime_probe

FIXTURES = Path(__file__).parent / "fixtures"


def _tools(directory: Path, capture: str = "atlas-800-9010-24.1.RC2", **kwargs: object) -> FakeTools:
    tools = FakeTools(directory)
    table = {
        "info": (FIXTURES / f"{capture}-npu-smi-info.txt").read_text(),
        "info -m": (FIXTURES / f"{capture}-npu-smi-info-m.txt").read_text(),
    }
    tools.add("npu-smi", table, **kwargs)  # type: ignore[arg-type]
    return tools


class TestCann910Recorded(AcceleratorSuite):
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

    @pytest.fixture
    def accelerator(self) -> Accelerator:
        return CannAccelerator()

    @pytest.fixture
    def detect_options(self, tmp_path: Path) -> DetectOptions:
        return _tools(tmp_path / "bin", self.capture).options()

    @pytest.fixture
    def child_probe(self, devices: list[Device]) -> Callable[[dict[str, str]], list[str]]:
        return emulated_runtime_probe("ASCEND_RT_VISIBLE_DEVICES", devices)

    @pytest.fixture
    def absent_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions]:
        return CannAccelerator(), FakeTools(tmp_path / "empty").options()

    @pytest.fixture
    def hung_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions]:
        tools = _tools(tmp_path / "hung", self.capture, hang_s=60, spawn_child=True)
        return CannAccelerator(), tools.options(timeout_s=0.5)

    @pytest.fixture
    def garbled_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions, str]:
        tools = FakeTools(tmp_path / "garbled")
        text = (FIXTURES / f"{self.capture}-npu-smi-info.txt").read_text().splitlines()
        tools.add("npu-smi", {"info": "\n".join(text[:7]) + "\n", "info -m": ""})
        return CannAccelerator(), tools.options(), "npu-smi"


class TestCann310Recorded(TestCann910Recorded):
    """One card with 4 x Ascend 310 chips (npu-smi 21.0.4)."""

    capture = "atlas-800-3000-21.0.4"


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
