"""Parser for ``amd-smi static --json`` and ``amd-smi metric --json`` (ROCm's current tool).

``amd-smi`` has printed its JSON two ways: a top-level list of GPU objects (ROCm 6.x) and an object
``{"gpu_data": [...]}`` (newer releases); both are read. Quantities are ``{"value": N, "unit": U}``
objects or the string ``"N/A"``; ``MB`` means MiB there, as in every vendor tool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gpustack_core.accelerators import output_error, parse_bytes

__all__ = ["AMD_SMI_METRIC_ARGS", "AMD_SMI_STATIC_ARGS", "AmdSmiGpu", "parse_amd_smi"]

#: the two queries whose JSON output the fixtures record
AMD_SMI_STATIC_ARGS = ["static", "--json"]
AMD_SMI_METRIC_ARGS = ["metric", "--json"]

_AMD_VENDOR_ID = "0x1002"


@dataclass(frozen=True)
class AmdSmiGpu:
    """One GPU as ``amd-smi`` reports it, static facts and current metrics joined by GPU number."""

    gpu: int
    name: str
    vendor_id: str | None
    serial: str | None
    bdf: str | None
    architecture: str | None
    compute_units: int | None
    driver_version: str | None
    memory_total: int
    memory_used: int | None
    utilization: float | None
    temperature: float | None

    @property
    def is_amd(self) -> bool:
        """Made by AMD (PCI vendor 0x1002); Hygon DCUs (0x1d94) are the ``dtk`` plugin's."""
        return (self.vendor_id or _AMD_VENDOR_ID).lower() == _AMD_VENDOR_ID


def _gpus(text: str, command: str, accelerator: str) -> dict[int, dict[str, Any]]:
    tool = f"amd-smi {command}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise output_error(
            accelerator, tool, f"not JSON ({exc.msg} at line {exc.lineno})", text[:120]
        ) from None
    if isinstance(data, dict) and isinstance(data.get("gpu_data"), list):
        data = data["gpu_data"]
    if not isinstance(data, list):
        raise output_error(
            accelerator, tool, "neither a list of GPUs nor an object with 'gpu_data'", text[:120]
        )
    found: dict[int, dict[str, Any]] = {}
    for entry in data:
        if not isinstance(entry, dict) or not isinstance(entry.get("gpu"), int):
            raise output_error(accelerator, tool, "a GPU entry without an integer 'gpu' number", str(entry))
        found[entry["gpu"]] = entry
    return found


def _text(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return None if text in ("", "N/A") else text


def _quantity(value: object) -> tuple[float, str] | None:
    """``{"value": N, "unit": U}`` as (N, U); ``None`` for ``"N/A"`` or a missing value."""
    if not isinstance(value, dict) or isinstance(value.get("value"), (str, type(None))):
        return None
    number = value["value"]
    if not isinstance(number, (int, float)):
        return None
    return float(number), str(value.get("unit") or "")


def _section(entry: dict[str, Any], key: str) -> dict[str, Any]:
    value = entry.get(key)
    return value if isinstance(value, dict) else {}


def _size(value: object, accelerator: str, tool: str, where: str) -> int | None:
    quantity = _quantity(value)
    if quantity is None:
        return None
    try:
        return parse_bytes(f"{quantity[0]:g} {quantity[1]}", "MiB")
    except ValueError:
        raise output_error(accelerator, tool, f"{where} is not a size", str(value)) from None


def parse_amd_smi(static_text: str, metric_text: str, accelerator: str) -> list[AmdSmiGpu]:
    """GPUs from the two outputs, ordered by amd-smi's GPU number.

    Raises:
        AcceleratorOutputError: either output is not the expected JSON, the two list different
            GPUs, or a GPU has no VRAM size in either.
    """
    static = _gpus(static_text, "static", accelerator)
    metric = _gpus(metric_text, "metric", accelerator)
    if set(static) != set(metric):
        raise output_error(
            accelerator, "amd-smi", f"static lists GPUs {sorted(static)} but metric lists {sorted(metric)}"
        )
    gpus: list[AmdSmiGpu] = []
    for number in sorted(static):
        facts, now = static[number], metric[number]
        asic, memory = _section(facts, "asic"), _section(now, "mem_usage")
        total = _size(memory.get("total_vram"), accelerator, "amd-smi metric", f"GPU {number} total_vram")
        if total is None:
            total = _size(
                _section(facts, "vram").get("size"), accelerator, "amd-smi static", f"GPU {number} vram"
            )
        if total is None:
            raise output_error(
                accelerator, "amd-smi", f"GPU {number} reports no VRAM size (static vram.size)"
            )
        used = _size(memory.get("used_vram"), accelerator, "amd-smi metric", f"GPU {number} used_vram")
        usage = _quantity(_section(now, "usage").get("gfx_activity"))
        temperatures = _section(now, "temperature")
        temperature = _quantity(temperatures.get("edge")) or _quantity(temperatures.get("hotspot"))
        units = asic.get("num_compute_units")
        serial = _text(asic.get("asic_serial"))
        gpus.append(
            AmdSmiGpu(
                gpu=number,
                name=_text(asic.get("market_name")) or "AMD GPU",
                vendor_id=_text(asic.get("vendor_id")),
                serial=serial.lower().removeprefix("0x") if serial else None,
                bdf=_text(_section(facts, "bus").get("bdf")),
                architecture=_text(asic.get("target_graphics_version")),
                compute_units=units if isinstance(units, int) else None,
                driver_version=_text(_section(facts, "driver").get("version")),
                memory_total=total,
                memory_used=None if used is None else min(used, total),
                utilization=usage[0] if usage else None,
                temperature=temperature[0] if temperature else None,
            )
        )
    return gpus
