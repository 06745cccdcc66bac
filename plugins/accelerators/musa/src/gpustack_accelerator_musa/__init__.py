"""gpustack-core accelerator plugin for Moore Threads GPUs (MUSA), through ``mthreads-gmi -q``."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gpustack_core import Accelerator, hookimpl
from gpustack_core.accelerators import output_error, parse_bytes, parse_number, run_tool
from gpustack_core.errors import AcceleratorNotPresent

if TYPE_CHECKING:
    from gpustack_core import DetectOptions, Device


__all__ = ["MusaAccelerator", "gpustack_register_accelerators", "parse_gmi_query"]

VISIBILITY_VARIABLE = "MUSA_VISIBLE_DEVICES"
_GPU = re.compile(r"^GPU\s+(\S+)\s*$")
_FIELD = re.compile(r"^(\s*)([^:]+?)\s*:\s*(.*?)\s*$")
_SECTION = re.compile(r"^(\s+)(\S.*?)\s*$")


def _sections(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str]]]]:
    """Top-level fields, then one flat ``{"Section/Key": value}`` per ``GPU <bus id>`` block."""
    top: dict[str, str] = {}
    gpus: list[tuple[str, dict[str, str]]] = []
    current: dict[str, str] | None = None
    section = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        gpu = _GPU.match(line)
        if gpu:
            current, section = {}, ""
            gpus.append((gpu[1], current))
            continue
        field = _FIELD.match(line)
        if field is None:
            heading = _SECTION.match(line)
            if heading and current is not None:
                section = heading[2]
            continue
        indent, key, value = len(field[1]), field[2], field[3]
        if current is None:
            top[key] = value
        elif indent > 4 and section:
            current[f"{section}/{key}"] = value
        else:
            section = ""
            current[key] = value
    return top, gpus


def parse_gmi_query(text: str, accelerator: str, vendor: str) -> list[Device]:
    """Devices from ``mthreads-gmi -q``."""
    from gpustack_core import Device

    tool = "mthreads-gmi -q"
    top, gpus = _sections(text)
    devices = []
    for index, (bus, fields) in enumerate(gpus):
        name, uuid, total = (
            fields.get("Product Name"),
            fields.get("GPU UUID"),
            fields.get("FB Memory Usage/Total"),
        )
        if not name or not uuid or not total:
            raise output_error(
                accelerator, tool, f"GPU {bus}: no Product Name, GPU UUID or FB Memory Usage/Total"
            )
        try:
            total_b = parse_bytes(total, "MiB")
            used = fields.get("FB Memory Usage/Used")
            used_b = parse_bytes(used, "MiB") if used else None
        except ValueError as exc:
            raise output_error(accelerator, tool, f"GPU {bus}: {exc}") from None
        util, temp = fields.get("Utilization/Gpu"), fields.get("Temperature/GPU Current Temp")
        devices.append(
            Device(
                accelerator=accelerator,
                vendor=vendor,
                index=index,
                uuid=uuid,
                name=name,
                memory_total_bytes=total_b,
                memory_used_bytes=None if used_b is None else min(used_b, total_b),
                utilization_percent=parse_number(util) if util else None,
                temperature_celsius=parse_number(temp) if temp else None,
                driver_version=top.get("Driver Version"),
                pci_bus_id=bus,
                extra={
                    k: v
                    for k, v in {
                        "mtbios": fields.get("MTBios Version"),
                        # ``mthreads-gmi --query --json`` nests it under ``PCI``; accept both.
                        "device_id": fields.get("Device ID") or fields.get("PCI/Device ID"),
                    }.items()
                    if v
                },
            )
        )
    return devices


class MusaAccelerator(Accelerator):
    """Moore Threads GPUs."""

    name = "musa"
    vendor = "mthreads"

    def detect(self, options: DetectOptions) -> list[Device]:
        """GPUs from ``mthreads-gmi -q``."""
        devices = parse_gmi_query(
            run_tool(["mthreads-gmi", "-q"], options, accelerator=self.name).stdout, self.name, self.vendor
        )
        if not devices:
            raise AcceleratorNotPresent("musa: mthreads-gmi lists no GPU")
        return devices

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        """``MUSA_VISIBLE_DEVICES`` with indices (mthreads-gmi order); ``-1`` for none."""
        if not devices:
            return {VISIBILITY_VARIABLE: "-1"}
        return {VISIBILITY_VARIABLE: ",".join(str(d.index) for d in devices)}


@hookimpl
def gpustack_register_accelerators(register: Callable[[Accelerator], None]) -> None:
    """Register the MUSA accelerator."""
    register(MusaAccelerator())
