"""gpustack-core accelerator plugin for MetaX (沐曦) GPUs: the summary table of ``mx-smi``.

The MACA runtime (and MetaX's CUDA-compatible PyTorch) selects devices with
``MACA_VISIBLE_DEVICES``, a comma-separated list of ``mx-smi`` GPU numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gpustack_core import Accelerator, hookimpl
from gpustack_core.accelerators import run_tool
from gpustack_core.errors import AcceleratorNotPresent

from ._parse import MxSmiCard, MxSmiReport, parse_mx_smi

if TYPE_CHECKING:
    from gpustack_core import DetectOptions, Device


__all__ = [
    "VISIBILITY_VARIABLE",
    "MetaxAccelerator",
    "MxSmiCard",
    "MxSmiReport",
    "gpustack_register_accelerators",
    "parse_mx_smi",
]

#: the variable MACA reads to restrict the devices a process sees (indices, as mx-smi numbers them)
VISIBILITY_VARIABLE = "MACA_VISIBLE_DEVICES"


class MetaxAccelerator(Accelerator):
    """MetaX GPUs (C500, C550, ...)."""

    name = "metax"
    vendor = "metax"

    def detect(self, options: DetectOptions) -> list[Device]:
        """MetaX GPUs from ``mx-smi``: name, memory, use, temperature, PCI bus id, driver and MACA.

        The summary table shows no GPU UUID, so a device's ``uuid`` is ``MX-PCI-<bus id>``: stable
        on one machine (a board keeps its slot), not across machines.
        """
        from gpustack_core import Device

        report = parse_mx_smi(run_tool(["mx-smi"], options, accelerator=self.name).stdout, self.name)
        if not report.cards:
            raise AcceleratorNotPresent("metax: mx-smi lists no GPU")
        extra_versions = {"bios_version": report.bios_version} if report.bios_version else {}
        return [
            Device(
                accelerator=self.name,
                vendor=self.vendor,
                index=card.index,
                uuid=f"MX-PCI-{card.bus_id}",
                name=card.name,
                memory_total_bytes=card.memory_total,
                memory_used_bytes=card.memory_used,
                utilization_percent=card.utilization,
                temperature_celsius=card.temperature,
                driver_version=report.driver_version,
                runtime_version=report.maca_version,
                pci_bus_id=card.bus_id,
                extra={**({"state": card.state} if card.state else {}), **extra_versions},
            )
            for card in report.cards
        ]

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        """``MACA_VISIBLE_DEVICES`` listing the devices' indices; ``-1`` (no such GPU) for none."""
        if not devices:
            return {VISIBILITY_VARIABLE: "-1"}
        return {VISIBILITY_VARIABLE: ",".join(str(d.index) for d in devices)}


@hookimpl
def gpustack_register_accelerators(register: Callable[[Accelerator], None]) -> None:
    """Register the MetaX accelerator."""
    register(MetaxAccelerator())
