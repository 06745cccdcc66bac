"""Parse ``npu-smi info`` (the device table) and ``npu-smi info -m`` (chip -> logic id mapping)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpustack_core.accelerators import output_error, parse_bytes, parse_number

__all__ = ["ChipMapping", "NpuChip", "parse_npu_smi_info", "parse_npu_smi_mapping"]

_VERSION = re.compile(r"Version:\s*(\S+)")
_USAGE = re.compile(r"(\d+)\s*/\s*(\d+)")
_BUS = re.compile(r"^[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]$")


@dataclass(frozen=True)
class NpuChip:
    """One chip row pair of ``npu-smi info``."""

    npu_id: int
    chip_id: int
    name: str
    health: str
    bus_id: str
    power_w: float | None
    temperature: float | None
    aicore_percent: float | None
    memory_used: int
    memory_total: int
    hbm_used: int | None
    hbm_total: int | None


@dataclass(frozen=True)
class ChipMapping:
    """One compute chip of ``npu-smi info -m``: its logic id (what the runtime numbers) and name."""

    npu_id: int
    chip_id: int
    logic_id: int
    chip_name: str


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_npu_smi_info(text: str, accelerator: str) -> tuple[str | None, list[NpuChip]]:
    """The tool version (driver) and the chips of the device table; the process table is ignored."""
    tool = "npu-smi info"
    version = _VERSION.search(text)
    rows: list[list[str]] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = _cells(line)
        if any("Process" in c for c in cells):
            break  # the process table follows the device table
        if len(cells) != 3 or "Version" in line or cells[0].startswith(("NPU", "Chip")):
            continue
        rows.append(cells)
    if len(rows) % 2:
        raise output_error(accelerator, tool, "device rows do not come in pairs", " | ".join(rows[-1]))
    chips: list[NpuChip] = []
    for first, second in zip(rows[0::2], rows[1::2], strict=False):
        head, chip_col = first[0].split(), second[0].split()
        metrics, usage = first[2].split(), _USAGE.findall(second[2])
        if len(head) < 1 or not head[0].isdigit() or not chip_col or not chip_col[0].isdigit():
            raise output_error(accelerator, tool, "an NPU row without NPU and chip ids", first[0])
        if not _BUS.match(second[1]) or not usage:
            raise output_error(
                accelerator, tool, f"NPU {head[0]}: bus id or Memory-Usage unreadable", second[2]
            )
        try:
            memory_used, memory_total = (parse_bytes(v, "MiB") for v in usage[0])
            hbm = [parse_bytes(v, "MiB") for v in usage[1]] if len(usage) > 1 else None
        except ValueError as exc:
            raise output_error(accelerator, tool, str(exc)) from None
        chips.append(
            NpuChip(
                npu_id=int(head[0]),
                chip_id=int(chip_col[0]),
                name=" ".join(head[1:]),
                health=first[1],
                bus_id=second[1],
                power_w=parse_number(metrics[0]) if metrics else None,
                temperature=parse_number(metrics[1]) if len(metrics) > 1 else None,
                aicore_percent=parse_number(second[2].split()[0]),
                memory_used=memory_used,
                memory_total=memory_total,
                hbm_used=hbm[0] if hbm else None,
                hbm_total=hbm[1] if hbm else None,
            )
        )
    if not chips:
        raise output_error(accelerator, tool, "no NPU rows in the device table", text[:120])
    return (version[1] if version else None), chips


def parse_npu_smi_mapping(text: str, accelerator: str) -> list[ChipMapping]:
    """Compute chips of ``npu-smi info -m`` (the MCU, which has no logic id, is left out)."""
    found: list[ChipMapping] = []
    for line in text.splitlines()[1:]:
        parts = line.split(None, 3)
        if not parts:
            continue
        if len(parts) < 4 or not parts[0].isdigit() or not parts[1].isdigit():
            raise output_error(
                accelerator, "npu-smi info -m", "a row is not 'NPU ID, Chip ID, Logic ID, Name'", line
            )
        if not parts[2].isdigit():
            continue  # "-": no logic id (the card's MCU)
        found.append(ChipMapping(int(parts[0]), int(parts[1]), int(parts[2]), parts[3].strip()))
    return found
