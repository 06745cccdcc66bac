"""gpustack-core accelerator plugin for Huawei Ascend NPUs (CANN), through ``npu-smi``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gpustack_core import Accelerator, hookimpl
from gpustack_core.accelerators import run_tool
from gpustack_core.errors import AcceleratorNotPresent

from ._parse import ChipMapping, NpuChip, parse_npu_smi_info, parse_npu_smi_mapping

if TYPE_CHECKING:
    from gpustack_core import DetectOptions, Device


__all__ = ["CannAccelerator", "gpustack_register_accelerators", "parse_npu_smi_info", "parse_npu_smi_mapping"]

VISIBILITY_VARIABLE = "ASCEND_RT_VISIBLE_DEVICES"


def _name(chip: NpuChip, mapping: ChipMapping | None) -> str:
    if mapping and mapping.chip_name.startswith("Ascend"):
        return mapping.chip_name
    if chip.name and chip.name[0].isdigit():
        return f"Ascend {chip.name}"
    return mapping.chip_name if mapping else (chip.name or "Ascend NPU")


class CannAccelerator(Accelerator):
    """Ascend NPU chips, one device per compute chip, numbered by chip logic id."""

    name = "cann"
    vendor = "huawei"

    def detect(self, options: DetectOptions) -> list[Device]:
        """Chips from ``npu-smi info``, logic ids and chip names from ``npu-smi info -m``."""
        from gpustack_core import Device

        driver, chips = parse_npu_smi_info(
            run_tool(["npu-smi", "info"], options, accelerator=self.name).stdout, self.name
        )
        mapping = {
            (m.npu_id, m.chip_id): m
            for m in parse_npu_smi_mapping(
                run_tool(["npu-smi", "info", "-m"], options, accelerator=self.name).stdout, self.name
            )
        }
        devices = []
        for position, chip in enumerate(chips):
            chip_map = mapping.get((chip.npu_id, chip.chip_id))
            hbm = chip.hbm_total is not None and chip.hbm_total > 0
            devices.append(
                Device(
                    accelerator=self.name,
                    vendor=self.vendor,
                    device_type="npu",
                    index=chip_map.logic_id if chip_map else position,
                    uuid=f"npu-{chip.bus_id.lower()}",
                    name=_name(chip, chip_map),
                    architecture=chip_map.chip_name if chip_map else None,
                    memory_total_bytes=chip.hbm_total if hbm and chip.hbm_total else chip.memory_total,
                    memory_used_bytes=chip.hbm_used if hbm else chip.memory_used,
                    utilization_percent=chip.aicore_percent,
                    temperature_celsius=chip.temperature,
                    driver_version=driver,
                    pci_bus_id=chip.bus_id,
                    extra={
                        "npu_id": str(chip.npu_id),
                        "chip_id": str(chip.chip_id),
                        "health": chip.health,
                        "memory_kind": "HBM" if hbm else "DDR",
                    },
                )
            )
        if not devices:
            raise AcceleratorNotPresent("cann: npu-smi lists no NPU")
        return sorted(devices, key=lambda d: d.index)

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        """``ASCEND_RT_VISIBLE_DEVICES`` listing chip logic ids; ``-1`` for none."""
        if not devices:
            return {VISIBILITY_VARIABLE: "-1"}
        return {VISIBILITY_VARIABLE: ",".join(str(d.index) for d in devices)}


@hookimpl
def gpustack_register_accelerators(register: Callable[[Accelerator], None]) -> None:
    """Register the CANN accelerator."""
    register(CannAccelerator())
