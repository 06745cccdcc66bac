"""gpustack-core accelerator plugin for Cambricon MLUs, through ``cnmon info -e -m -u -j``."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpustack_core import Accelerator, hookimpl
from gpustack_core.accelerators import output_error, run_tool
from gpustack_core.errors import AcceleratorNotPresent

if TYPE_CHECKING:
    from gpustack_core import DetectOptions, Device


__all__ = ["MluAccelerator", "gpustack_register_accelerators", "parse_cnmon_json"]

VISIBILITY_VARIABLE = "MLU_VISIBLE_DEVICES"
TOOL = "cnmon info -e -m -u -j"
REPORT_FILE = "cnmon_info.json"


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_cnmon_json(text: str, accelerator: str, vendor: str) -> list[Device]:
    """Devices from cnmon's JSON report (``CnmonInfo``: one entry per card; memory in MiB)."""
    from gpustack_core import Device

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise output_error(accelerator, TOOL, f"not JSON ({exc.msg})", text[:120]) from None
    cards = data.get("CnmonInfo") if isinstance(data, dict) else None
    if not isinstance(cards, list):
        raise output_error(accelerator, TOOL, "no 'CnmonInfo' list", text[:120])
    devices = []
    for position, card in enumerate(cards):
        memory = card.get("PhysicalMemUsage") if isinstance(card, dict) else None
        total = _number(memory.get("Total")) if isinstance(memory, dict) else None
        if not isinstance(card, dict) or not card.get("UUID") or not card.get("ProductName") or not total:
            raise output_error(
                accelerator, TOOL, f"card #{position} lacks UUID, ProductName or PhysicalMemUsage.Total"
            )
        used = _number(memory.get("Used")) if isinstance(memory, dict) else None
        total_b = int(total * 2**20)
        index = card.get("CardNum", position)
        devices.append(
            Device(
                accelerator=accelerator,
                vendor=vendor,
                device_type="other",
                index=int(index),
                uuid=str(card["UUID"]),
                name=str(card["ProductName"]),
                memory_total_bytes=total_b,
                memory_used_bytes=None if used is None else min(int(used * 2**20), total_b),
                utilization_percent=_number((card.get("Utilization") or {}).get("MLUAverage")),
                temperature_celsius=_number((card.get("Temperature") or {}).get("Chip")),
            )
        )
    return sorted(devices, key=lambda d: d.index)


class MluAccelerator(Accelerator):
    """Cambricon MLU cards."""

    name = "mlu"
    vendor = "cambricon"

    def detect(self, options: DetectOptions) -> list[Device]:
        """Cards from cnmon's JSON report (stdout, or ``cnmon_info.json`` which cnmon writes in its cwd)."""
        with tempfile.TemporaryDirectory(prefix="gpustack-cnmon-") as workdir:
            result = run_tool(
                ["cnmon", "info", "-e", "-m", "-u", "-j"], options, accelerator=self.name, cwd=workdir
            )
            report = Path(workdir) / REPORT_FILE
            text = report.read_text() if report.exists() else result.stdout
        devices = parse_cnmon_json(text, self.name, self.vendor)
        if not devices:
            raise AcceleratorNotPresent("mlu: cnmon lists no MLU")
        return devices

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        """``MLU_VISIBLE_DEVICES`` with card numbers; ``-1`` for none."""
        if not devices:
            return {VISIBILITY_VARIABLE: "-1"}
        return {VISIBILITY_VARIABLE: ",".join(str(d.index) for d in devices)}


@hookimpl
def gpustack_register_accelerators(register: Callable[[Accelerator], None]) -> None:
    """Register the MLU accelerator."""
    register(MluAccelerator())
