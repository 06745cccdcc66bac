"""The accelerator conformance suite for the ROCm plugin,
on rocm-smi/rocminfo output recorded on an RX 7800 XT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gpustack_accelerator_rocm import ROCM_SMI_ARGS, RocmAccelerator

from gpustack_core import Accelerator
from gpustack_core.errors import AcceleratorNotPresent
from gpustack_core.testing import Capabilities, FakeTools, FakeToolSuite

FIXTURES = Path(__file__).parent / "fixtures"
SMI = (FIXTURES / "amd-gpu-6.2.4-rocm-smi.json").read_text()
INFO = (FIXTURES / "amd-gpu-6.2.4-rocminfo.txt").read_text()
HYGON_SMI = (
    Path(__file__).parents[2] / "dtk" / "tests" / "fixtures" / "hygon-gpu-24.04.3-rocm-smi.json"
).read_text()


def _tools(directory: Path, smi: str = SMI, **kwargs: object) -> FakeTools:
    tools = FakeTools(directory)
    tools.add("rocm-smi", {" ".join(ROCM_SMI_ARGS): smi}, **kwargs)  # type: ignore[arg-type]
    tools.add("rocminfo", INFO)
    return tools


class TestRocmRecorded(FakeToolSuite):
    """Recorded AMD output served by fake tools."""

    capabilities = Capabilities(
        has_devices=True,
        visibility_restricts=True,
        has_temperature=True,
        has_utilization=True,
        absent_vendor=True,
        tool_timeout=True,
        garbled_output=True,
        independent_source="no second AMD tool was recorded on the same machine",
    )

    visibility_variable = "ROCR_VISIBLE_DEVICES"
    garbled_tool = "rocm-smi"
    garbled_output = SMI[:300]

    def make_accelerator(self) -> Accelerator:
        return RocmAccelerator()

    def fake_tools(self, directory: Path, output: str | None = None, **behaviour: Any) -> FakeTools:
        return _tools(directory, SMI if output is None else output, **behaviour)


def test_recorded_rx7800xt_fields(tmp_path: Path) -> None:
    (device,) = RocmAccelerator().detect(_tools(tmp_path / "bin").options())
    assert device.uuid == "GPU-5c88007d760374f3"
    assert device.name == "AMD Radeon RX 7800 XT"
    assert device.architecture == "gfx1101"
    assert device.core_count == 60
    assert device.memory_total_bytes == 17163091968
    assert device.memory_used_bytes == 11615076352
    assert device.utilization_percent == 100.0
    assert device.temperature_celsius == 45.0
    assert (device.driver_version, device.runtime_version) == ("6.2.4", "1.13")


def test_hygon_cards_are_left_to_dtk(tmp_path: Path) -> None:
    with pytest.raises(AcceleratorNotPresent, match="no AMD GPU"):
        RocmAccelerator().detect(_tools(tmp_path / "bin", smi=HYGON_SMI).options())


def test_empty_subset_hides_all() -> None:
    assert RocmAccelerator().visibility_env([]) == {"ROCR_VISIBLE_DEVICES": "-1"}
