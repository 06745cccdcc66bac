"""Parse ``nvidia-smi -q -x`` (the fallback when the NVML library cannot be loaded)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpustack_core.accelerators import output_error, parse_bytes, parse_number

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

    from gpustack_core import Device


__all__ = ["parse_smi_xml"]

TOOL = "nvidia-smi -q -x"


def _text(node: ET.Element, path: str) -> str | None:
    found = node.find(path)
    if found is None or found.text is None:
        return None
    text = found.text.strip()
    return None if text in ("", "N/A", "Not Supported", "[N/A]") else text


def parse_smi_xml(text: str, accelerator: str, vendor: str) -> list[Device]:
    """Devices from ``nvidia-smi -q -x`` output.

    ``memory_used_bytes`` is ``used + reserved`` of ``fb_memory_usage``: nvidia-smi leaves the
    driver's reservation out of "used", NVML's ``nvmlDeviceGetMemoryInfo`` counts it; the plugin
    reports NVML's meaning from both sources (memory a new process cannot have).
    """
    import xml.etree.ElementTree as ET  # on use: the plugin loads without it

    from gpustack_core import Device

    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise output_error(accelerator, TOOL, f"not XML ({exc})", text[:120]) from None
    if root.tag != "nvidia_smi_log":
        raise output_error(accelerator, TOOL, f"root element is <{root.tag}>, expected <nvidia_smi_log>")
    driver = _text(root, "driver_version")
    runtime = _text(root, "cuda_version")
    devices: list[Device] = []
    for index, gpu in enumerate(root.findall("gpu")):
        uuid = _text(gpu, "uuid")
        name = _text(gpu, "product_name")
        total_text = _text(gpu, "fb_memory_usage/total")
        if uuid is None or name is None or total_text is None:
            raise output_error(
                accelerator, TOOL, f"<gpu> #{index} lacks uuid, product_name or fb_memory_usage/total"
            )
        try:
            total = parse_bytes(total_text)
            used_text = _text(gpu, "fb_memory_usage/used")
            reserved_text = _text(gpu, "fb_memory_usage/reserved")
            used = None if used_text is None else parse_bytes(used_text)
            if used is not None and reserved_text is not None:
                used += parse_bytes(reserved_text)
        except ValueError as exc:
            raise output_error(accelerator, TOOL, f"fb_memory_usage of {uuid}: {exc}") from None
        minor = _text(gpu, "minor_number")
        util = _text(gpu, "utilization/gpu_util")
        temp = _text(gpu, "temperature/gpu_temp")
        extra = {
            k: v
            for k, v in {
                "serial": _text(gpu, "serial"),
                "vbios_version": _text(gpu, "vbios_version"),
                "mig_mode": _text(gpu, "mig_mode/current_mig"),
                "minor_number": minor,
                "source": "nvidia-smi",
            }.items()
            if v is not None
        }
        arch = _text(gpu, "product_architecture")
        devices.append(
            Device(
                accelerator=accelerator,
                vendor=vendor,
                index=index,
                uuid=uuid,
                name=name,
                architecture=arch.lower() if arch else None,
                memory_total_bytes=total,
                memory_used_bytes=None if used is None else min(used, total),
                utilization_percent=None if util is None else parse_number(util),
                temperature_celsius=None if temp is None else parse_number(temp),
                driver_version=driver,
                runtime_version=runtime,
                pci_bus_id=_text(gpu, "pci/pci_bus_id"),
                extra=extra,
            )
        )
    if not devices:
        raise output_error(accelerator, TOOL, "no <gpu> element although the tool succeeded", text[:120])
    return devices
