"""The accelerator conformance suite for the CPU plugin, on this machine's real CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gpustack_accelerator_cpu import CpuAccelerator

from gpustack_core import Accelerator, DetectOptions, Device
from gpustack_core.testing import AcceleratorSuite, Capabilities, IndependentDevice


def _meminfo_total() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class TestCpuThisMachine(AcceleratorSuite):
    """The host CPU, read through psutil and /sys; /proc/meminfo is the independent source."""

    capabilities = Capabilities(
        has_devices=True,
        independent_source=True,
        visibility_restricts="a CPU cannot be hidden from a child process (NUMA pinning is the engine's)",
        has_temperature="many machines (this VM included) expose no CPU temperature sensor",
        has_utilization="utilization needs two samples; the first detection reports none",
        absent_vendor="the CPU is never absent",
        tool_timeout="the CPU plugin runs no vendor tool",
        garbled_output="the CPU plugin runs no vendor tool",
    )

    @pytest.fixture
    def accelerator(self) -> Accelerator:
        return CpuAccelerator()

    @pytest.fixture
    def independent_views(self, devices: list[Device]) -> dict[str, list[IndependentDevice]]:
        total = _meminfo_total()
        if total is None or len(devices) != 1:
            pytest.skip("independent view needs /proc/meminfo and a single NUMA node")
        return {"/proc/meminfo": [IndependentDevice(devices[0].uuid, None, total)]}


def test_core_count_matches_os() -> None:
    result = CpuAccelerator().detect(DetectOptions())
    assert sum(d.core_count or 0 for d in result) == os.cpu_count()
