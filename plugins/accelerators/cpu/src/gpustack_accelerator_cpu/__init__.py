"""gpustack-core accelerator plugin for the host CPU."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gpustack_core import Accelerator, hookimpl

if TYPE_CHECKING:
    from gpustack_core import DetectOptions, Device


__all__ = ["CpuAccelerator", "gpustack_register_accelerators"]

_NODE_DIR = re.compile(r"^node(\d+)$")
_CPULIST_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _cpu_model(root: Path) -> str:
    try:
        for line in (root / "proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    import platform  # on use: its import compiles a dozen regular expressions

    return platform.processor() or platform.machine() or "CPU"


def _parse_cpulist(text: str) -> int:
    count = 0
    for part in text.strip().split(","):
        match = _CPULIST_RANGE.match(part.strip())
        if match:
            start, end = int(match[1]), int(match[2] or match[1])
            count += end - start + 1
    return count


def _node_meminfo(node_dir: Path) -> tuple[int, int] | None:
    """(total, used) bytes of one NUMA node, from its meminfo file."""
    values: dict[str, int] = {}
    try:
        for line in (node_dir / "meminfo").read_text().splitlines():
            # "Node 0 MemTotal:       16380404 kB"
            parts = line.split()
            if len(parts) == 5 and parts[4] == "kB":
                values[parts[2].rstrip(":")] = int(parts[3]) * 1024
    except (OSError, ValueError):
        return None
    if "MemTotal" not in values:
        return None
    total = values["MemTotal"]
    available = values.get("MemFree", 0) + values.get("FilePages", 0)
    return total, max(0, min(total, total - available))


class CpuAccelerator(Accelerator):
    """The host CPU, one device per visible NUMA node.

    Parameters:
        root: filesystem root to read ``/proc`` and ``/sys`` from (tests point it at a fixture tree).
    """

    name = "cpu"
    vendor = "cpu"

    def __init__(self, root: str | Path = "/") -> None:
        self._root = Path(root)
        self._last_times: tuple[float, float] | None = None

    def _utilization(self) -> float | None:
        import psutil  # on use: listing plugins does not load it

        times = psutil.cpu_times()
        busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        total = sum(times)
        previous, self._last_times = self._last_times, (busy, total)
        if previous is None or total <= previous[1]:
            return None
        return max(0.0, min(100.0, 100.0 * (busy - previous[0]) / (total - previous[1])))

    def _temperature(self) -> float | None:
        import psutil

        reader: Callable[[], dict[str, list[object]]] | None = getattr(psutil, "sensors_temperatures", None)
        if reader is None:
            return None
        try:
            sensors = reader()
        except (OSError, RuntimeError):
            return None
        for key in ("coretemp", "k10temp", "cpu_thermal", "zenpower"):
            for entry in sensors.get(key, []):
                current = getattr(entry, "current", None)
                if isinstance(current, (int, float)):
                    return float(current)
        return None

    def detect(self, options: DetectOptions) -> list[Device]:
        """One device per NUMA node (or one for the host), with cores and memory in bytes."""
        import platform

        import psutil

        from gpustack_core import Device

        name = _cpu_model(self._root)
        arch = platform.machine() or None
        utilization = self._utilization()
        temperature = self._temperature()
        machine_id = self._machine_id()
        nodes = self._numa_nodes()
        devices: list[Device] = []
        if len(nodes) > 1:
            for index, (node, cores, total, used) in enumerate(nodes):
                devices.append(
                    Device(
                        accelerator=self.name,
                        vendor=self.vendor,
                        device_type="cpu",
                        index=index,
                        uuid=f"cpu-{machine_id}-numa{node}",
                        name=name,
                        architecture=arch,
                        memory_total_bytes=total,
                        memory_used_bytes=used,
                        memory_is_unified=True,
                        core_count=cores,
                        utilization_percent=utilization,
                        temperature_celsius=temperature,
                        numa_node=node,
                    )
                )
            return devices
        memory = psutil.virtual_memory()
        return [
            Device(
                accelerator=self.name,
                vendor=self.vendor,
                device_type="cpu",
                index=0,
                uuid=f"cpu-{machine_id}",
                name=name,
                architecture=arch,
                memory_total_bytes=memory.total,
                memory_used_bytes=min(memory.total, memory.total - memory.available),
                memory_is_unified=True,
                core_count=psutil.cpu_count(logical=True) or 1,
                utilization_percent=utilization,
                temperature_celsius=temperature,
                numa_node=nodes[0][0] if nodes else None,
            )
        ]

    def _machine_id(self) -> str:
        for candidate in ("etc/machine-id", "var/lib/dbus/machine-id"):
            try:
                text = (self._root / candidate).read_text().strip()
            except OSError:
                continue
            if text:
                return text[:12]
        import platform

        return platform.node() or "host"

    def _numa_nodes(self) -> list[tuple[int, int, int, int]]:
        """(node, cores, total bytes, used bytes) for each NUMA node with memory."""
        base = self._root / "sys/devices/system/node"
        nodes: list[tuple[int, int, int, int]] = []
        try:
            entries = sorted(base.iterdir())
        except OSError:
            return nodes
        for entry in entries:
            match = _NODE_DIR.match(entry.name)
            if not match:
                continue
            mem = _node_meminfo(entry)
            if mem is None or mem[0] == 0:
                continue
            try:
                cores = _parse_cpulist((entry / "cpulist").read_text())
            except OSError:
                cores = 0
            nodes.append((int(match[1]), cores, mem[0], mem[1]))
        nodes.sort()
        return nodes

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        """No variables: a CPU cannot be hidden from a child process."""
        return {}


@hookimpl
def gpustack_register_accelerators(register: Callable[[Accelerator], None]) -> None:
    """Register the CPU accelerator."""
    register(CpuAccelerator())
