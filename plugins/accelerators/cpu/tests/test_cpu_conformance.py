"""The accelerator conformance suite for the CPU plugin, on this machine's real CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpustack_accelerator_cpu import CpuAccelerator

from gpustack_core import Device
from gpustack_core.testing import AcceleratorSuite, Capabilities, IndependentDevice


class TestCpuThisMachine(AcceleratorSuite):
    """The host CPU, read through psutil and /sys; /proc/meminfo is the independent source."""

    accelerator_class = CpuAccelerator
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
    def independent_views(self, devices: list[Device]) -> dict[str, list[IndependentDevice]]:
        meminfo = Path("/proc/meminfo")
        lines = meminfo.read_text().splitlines() if meminfo.exists() else []
        totals = [int(line.split()[1]) * 1024 for line in lines if line.startswith("MemTotal:")]
        if not totals or len(devices) != 1:
            pytest.skip("independent view needs /proc/meminfo and a single NUMA node")
        return {"/proc/meminfo": [IndependentDevice(devices[0].uuid, None, totals[0])]}
