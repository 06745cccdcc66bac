"""The accelerator conformance suite for the DTK plugin,
on Hygon rocm-smi/rocminfo output recorded on a DCU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from gpustack_accelerator_dtk import DtkAccelerator
from gpustack_accelerator_rocm import ROCM_SMI_ARGS

from gpustack_core import Accelerator
from gpustack_core.errors import AcceleratorNotPresent
from gpustack_core.testing import Capabilities, FakeTools, FakeToolSuite

FIXTURES = Path(__file__).parent / "fixtures"
SMI = (FIXTURES / "hygon-gpu-24.04.3-rocm-smi.json").read_text()
INFO = (FIXTURES / "hygon-gpu-24.04.3-rocminfo.txt").read_text()
AMD_SMI = (
    Path(__file__).parents[2] / "rocm" / "tests" / "fixtures" / "amd-gpu-6.2.4-rocm-smi.json"
).read_text()


def _tools(directory: Path, smi: str = SMI, **kwargs: object) -> FakeTools:
    tools = FakeTools(directory)
    tools.add("rocm-smi", {" ".join(ROCM_SMI_ARGS): smi}, **kwargs)  # type: ignore[arg-type]
    tools.add("rocminfo", INFO)
    return tools


class TestDtkRecorded(FakeToolSuite):
    """Recorded Hygon output served by fake tools."""

    capabilities = Capabilities(
        has_devices=True,
        visibility_restricts=True,
        has_temperature=True,
        has_utilization=True,
        absent_vendor=True,
        tool_timeout=True,
        garbled_output=True,
        independent_source="no second Hygon tool was recorded on the same machine",
    )

    visibility_variable = "HIP_VISIBLE_DEVICES"
    garbled_tool = "rocm-smi"
    garbled_output = '{"card0": {"DCU use (%)": "0"}}'

    def make_accelerator(self) -> Accelerator:
        return DtkAccelerator()

    def fake_tools(self, directory: Path, output: str | None = None, **behaviour: Any) -> FakeTools:
        return _tools(directory, SMI if output is None else output, **behaviour)


def test_recorded_dcu_fields(tmp_path: Path) -> None:
    (device,) = DtkAccelerator().detect(_tools(tmp_path / "bin").options())
    assert device.uuid == "GPU-7100fa8866904061"
    assert device.name == "K1xx_AI"
    assert device.vendor == "hygon"
    assert device.architecture == "gfx928"
    assert device.core_count == 12
    assert device.memory_total_bytes == 65520 * 2**20
    assert device.memory_used_bytes == 2 * 2**20
    assert device.utilization_percent == 0.0
    assert device.temperature_celsius == 41.0
    assert device.driver_version is None
    assert device.runtime_version == "1.1"


def test_amd_cards_are_left_to_rocm(tmp_path: Path) -> None:
    with pytest.raises(AcceleratorNotPresent, match="no Hygon DCU"):
        DtkAccelerator().detect(_tools(tmp_path / "bin", smi=AMD_SMI).options())
