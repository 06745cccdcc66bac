"""The CPU accelerator on this machine and on a recorded two-node NUMA tree."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
from gpustack_accelerator_cpu import CpuAccelerator

from gpustack_core import DetectOptions, PluginHost

NODE_MEMINFO = """\
Node {n} MemTotal:       {total} kB
Node {n} MemFree:        {free} kB
Node {n} MemUsed:        {used} kB
Node {n} FilePages:      {files} kB
"""


def _numa_tree(root: Path) -> None:
    (root / "proc").mkdir(parents=True)
    (root / "proc" / "cpuinfo").write_text("processor\t: 0\nmodel name\t: AMD EPYC 9654 96-Core Processor\n")
    (root / "etc").mkdir()
    (root / "etc" / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    for n, cpus in ((0, "0-95,192-287"), (1, "96-191,288-383")):
        node = root / "sys/devices/system/node" / f"node{n}"
        node.mkdir(parents=True)
        node.joinpath("cpulist").write_text(cpus + "\n")
        node.joinpath("meminfo").write_text(
            NODE_MEMINFO.format(n=n, total=395_000_000, free=300_000_000, used=95_000_000, files=5_000_000)
        )


def test_two_numa_nodes_become_two_devices(tmp_path: Path) -> None:
    _numa_tree(tmp_path)
    devices = CpuAccelerator(root=tmp_path).detect(DetectOptions())
    assert [d.index for d in devices] == [0, 1]
    assert [d.numa_node for d in devices] == [0, 1]
    assert [d.core_count for d in devices] == [192, 192]
    assert all(d.memory_total_bytes == 395_000_000 * 1024 for d in devices)
    assert all(d.memory_used_bytes == (395_000_000 - 305_000_000) * 1024 for d in devices)
    assert devices[0].name == "AMD EPYC 9654 96-Core Processor"
    assert devices[0].uuid == "cpu-0123456789ab-numa0"
    assert len({d.uuid for d in devices}) == 2


def test_this_machine(tmp_path: Path) -> None:
    accelerator = CpuAccelerator()
    first = accelerator.detect(DetectOptions())
    time.sleep(0.1)  # let the CPU time counters advance so a utilization sample exists
    second = accelerator.detect(DetectOptions())
    assert [d.uuid for d in first] == [d.uuid for d in second]
    total_cores = sum(d.core_count or 0 for d in first)
    assert total_cores == psutil.cpu_count(logical=True)
    for device in first:
        assert device.device_type == "cpu"
        assert device.memory_total_bytes > 0
        assert device.memory_used_bytes is not None
        assert device.memory_used_bytes <= device.memory_total_bytes
    assert first[0].utilization_percent is None  # no previous sample yet
    assert second[0].utilization_percent is not None
    assert accelerator.visibility_env(first) == {}


def test_registered_through_its_entry_point() -> None:
    host = PluginHost(allow=["cpu"])
    assert host.owner("accelerators", "cpu").distribution == "gpustack-core-accelerator-cpu"


def test_core_count_matches_os() -> None:
    result = CpuAccelerator().detect(DetectOptions())
    assert sum(d.core_count or 0 for d in result) == os.cpu_count()
