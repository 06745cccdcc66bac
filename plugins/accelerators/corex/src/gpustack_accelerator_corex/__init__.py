"""gpustack-core accelerator plugin for Iluvatar CoreX GPUs, through ``ixsmi`` (an nvidia-smi work-alike)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gpustack_core import Accelerator, hookimpl
from gpustack_core.accelerators import output_error, parse_bytes, parse_number, run_tool
from gpustack_core.errors import AcceleratorNotPresent

if TYPE_CHECKING:
    from gpustack_core import DetectOptions, Device


__all__ = ["QUERY", "CorexAccelerator", "gpustack_register_accelerators", "parse_ixsmi_csv"]

#: the query whose output the fixture records
QUERY = [
    "--format=csv,noheader",
    "--query-gpu=index,name,memory.total,memory.used,utilization.gpu,temperature.gpu",
]
VISIBILITY_VARIABLE = "CUDA_VISIBLE_DEVICES"


def parse_ixsmi_csv(text: str, accelerator: str, vendor: str) -> list[Device]:
    """Devices from the CSV of ``ixsmi`` with the columns of :data:`QUERY`."""
    from gpustack_core import Device

    tool = "ixsmi --query-gpu"
    devices = []
    for row in csv.reader(line for line in text.splitlines() if line.strip()):
        if len(row) != 6:
            raise output_error(accelerator, tool, f"expected 6 columns, got {len(row)}", ",".join(row))
        index, name, total, used, util, temp = (c.strip() for c in row)
        try:
            total_b, used_b = parse_bytes(total, "MiB"), parse_bytes(used, "MiB")
            number = int(index)
        except ValueError as exc:
            raise output_error(accelerator, tool, str(exc), ",".join(row)) from None
        devices.append(
            Device(
                accelerator=accelerator,
                vendor=vendor,
                index=number,
                # ixsmi's recorded query has no uuid column: index and model name identify the board
                uuid=f"iluvatar-{number}-{name.replace(' ', '_')}",
                name=name,
                memory_total_bytes=total_b,
                memory_used_bytes=min(used_b, total_b),
                utilization_percent=parse_number(util),
                temperature_celsius=parse_number(temp),
            )
        )
    return sorted(devices, key=lambda d: d.index)


class CorexAccelerator(Accelerator):
    """Iluvatar CoreX GPUs."""

    name = "corex"
    vendor = "iluvatar"

    def detect(self, options: DetectOptions) -> list[Device]:
        """GPUs from ``ixsmi``'s CSV query."""
        result = run_tool(["ixsmi", *QUERY], options, accelerator=self.name)
        if "no devices" in result.stdout.lower():
            raise AcceleratorNotPresent("corex: ixsmi reports no devices")
        devices = parse_ixsmi_csv(result.stdout, self.name, self.vendor)
        if not devices:
            raise AcceleratorNotPresent("corex: ixsmi lists no GPU")
        return devices

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        """``CUDA_VISIBLE_DEVICES`` with indices (CoreX's runtime is CUDA-compatible); ``""`` hides all."""
        return {VISIBILITY_VARIABLE: ",".join(str(d.index) for d in devices)}


@hookimpl
def gpustack_register_accelerators(register: Callable[[Accelerator], None]) -> None:
    """Register the CoreX accelerator."""
    register(CorexAccelerator())
