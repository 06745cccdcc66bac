"""The accelerator conformance suite for the Metal plugin, on RECORDED ``system_profiler`` output
published in public repositories (see fixtures/SOURCE.md for what is known of each source)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gpustack_accelerator_metal import MetalAccelerator, parse_displays

from gpustack_core import Accelerator
from gpustack_core.testing import Capabilities, FakeTools, FakeToolSuite

FIXTURES = Path(__file__).parent / "fixtures"
M1_PRO = (FIXTURES / "system_profiler-SPDisplaysDataType.m1pro-recorded.json").read_text()
M1 = (FIXTURES / "system_profiler-SPDisplaysDataType.m1-recorded.json").read_text()
MEMSIZE = (FIXTURES / "sysctl-n-hw.memsize.txt").read_text()


def _tools(directory: Path, profile: str = M1_PRO, **kwargs: object) -> FakeTools:
    tools = FakeTools(directory)
    tools.add("system_profiler", {"SPDisplaysDataType -json": profile}, **kwargs)  # type: ignore[arg-type]
    tools.add("sysctl", {"-n hw.memsize": MEMSIZE})
    return tools


class TestMetalRecordedM1Pro(FakeToolSuite):
    """One M1 Pro GPU driving three displays (internal, external, Sidecar), as recorded."""

    capabilities = Capabilities(
        has_devices=True,
        absent_vendor=True,
        tool_timeout=True,
        garbled_output=True,
        visibility_restricts="Metal has no variable that hides the GPU from a process",
        has_temperature="system_profiler reports no temperature",
        has_utilization="system_profiler reports no utilization",
        independent_source="no second source recorded",
    )

    garbled_tool = "system_profiler"
    garbled_output = M1_PRO[:60]

    def make_accelerator(self) -> Accelerator:
        return MetalAccelerator()

    def fake_tools(self, directory: Path, output: str | None = None, **behaviour: Any) -> FakeTools:
        return _tools(directory, M1_PRO if output is None else output, **behaviour)


def test_recorded_m1_pro_one_gpu_not_three_displays(tmp_path: Path) -> None:
    (device,) = MetalAccelerator().detect(_tools(tmp_path / "bin").options())
    assert device.name == "Apple M1 Pro"
    assert device.core_count == 16
    assert device.architecture == "metal3"
    assert device.memory_is_unified
    assert device.memory_total_bytes == int(MEMSIZE)
    assert device.memory_used_bytes is None
    assert MetalAccelerator().visibility_env([device]) == {}


def test_recorded_m1_name_comes_from_sppci_model_not_khw_name(tmp_path: Path) -> None:
    """``_name`` is the untranslated ``kHW_AppleM1Item`` key in this recording."""
    (device,) = MetalAccelerator().detect(_tools(tmp_path / "bin", M1).options())
    assert device.name == "Apple M1"
    assert device.core_count == 7
    assert device.architecture == "metal3"


def test_macos11_metalfamily_key_is_read() -> None:
    """macOS 11 wrote ``spdisplays_metalfamily`` instead of ``spdisplays_mtlgpufamilysupport``."""
    data = json.loads(M1)
    entry = data["SPDisplaysDataType"][0]
    entry["spdisplays_metalfamily"] = "spdisplays_mtlgpufamilyapple7"
    del entry["spdisplays_mtlgpufamilysupport"]
    (device,) = parse_displays(json.dumps(data), MEMSIZE, "metal", "apple")
    assert device.architecture == "mtlgpufamilyapple7"


def test_non_apple_vendor_is_ignored() -> None:
    """An entry whose vendor is not ``sppci_vendor_Apple`` (an Intel Mac's GPU; value illustrative)."""
    data = json.loads(M1)
    data["SPDisplaysDataType"][0]["spdisplays_vendor"] = "sppci_vendor_intel"
    assert parse_displays(json.dumps(data), MEMSIZE, "metal", "apple") == []
