"""The accelerator conformance suite for the Metal plugin,
on RECONSTRUCTED system_profiler output (see fixtures/SOURCE.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpustack_accelerator_metal import MetalAccelerator

from gpustack_core import Accelerator, DetectOptions
from gpustack_core.testing import AcceleratorSuite, Capabilities, FakeTools

FIXTURES = Path(__file__).parent / "fixtures"
PROFILE = (FIXTURES / "system_profiler-SPDisplaysDataType.json").read_text()
MEMSIZE = (FIXTURES / "sysctl-n-hw.memsize.txt").read_text()


def _tools(directory: Path, profile: str = PROFILE, **kwargs: object) -> FakeTools:
    tools = FakeTools(directory)
    tools.add("system_profiler", {"SPDisplaysDataType -json": profile}, **kwargs)  # type: ignore[arg-type]
    tools.add("sysctl", {"-n hw.memsize": MEMSIZE})
    return tools


class TestMetalReconstructed(AcceleratorSuite):
    """One M2 Max GPU."""

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

    @pytest.fixture
    def accelerator(self) -> Accelerator:
        return MetalAccelerator()

    @pytest.fixture
    def detect_options(self, tmp_path: Path) -> DetectOptions:
        return _tools(tmp_path / "bin").options()

    @pytest.fixture
    def absent_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions]:
        return MetalAccelerator(), FakeTools(tmp_path / "empty").options()

    @pytest.fixture
    def hung_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions]:
        return MetalAccelerator(), _tools(tmp_path / "hung", hang_s=60, spawn_child=True).options(
            timeout_s=0.5
        )

    @pytest.fixture
    def garbled_setup(self, tmp_path: Path) -> tuple[Accelerator, DetectOptions, str]:
        return MetalAccelerator(), _tools(tmp_path / "garbled", PROFILE[:60]).options(), "system_profiler"


def test_unified_memory_and_cores(tmp_path: Path) -> None:
    (device,) = MetalAccelerator().detect(_tools(tmp_path / "bin").options())
    assert device.name == "Apple M2 Max"
    assert device.core_count == 30
    assert device.architecture == "metal3"
    assert device.memory_is_unified
    assert device.memory_total_bytes == 64 * 2**30
    assert device.memory_used_bytes is None
    assert MetalAccelerator().visibility_env([device]) == {}
