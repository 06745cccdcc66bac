"""gpustack-core accelerator plugin for Hygon DCUs (DTK): Hygon's ``rocm-smi`` variant and
``rocminfo``, or DTK's ``hy-smi`` where ``rocm-smi`` is not installed.

The output formats are those of AMD's tools with Hygon's keys (``DCU use (%)``/``HCU use (%)``,
memory in MiB), so the parsers of the ``rocm`` plugin are reused; this plugin keeps only the Hygon
cards. ``hy-smi --json`` prints JSON with commas missing between some members (recorded, see
``tests/fixtures/SOURCE.md``); :func:`repair_hy_smi_json` inserts exactly those commas.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gpustack_accelerator_rocm import ROCM_SMI_ARGS, join_devices, parse_rocm_smi, parse_rocminfo

from gpustack_core import Accelerator, hookimpl
from gpustack_core.accelerators import find_tool, run_tool
from gpustack_core.errors import AcceleratorNotPresent

if TYPE_CHECKING:
    from gpustack_core import DetectOptions, Device


__all__ = ["HY_SMI_ARGS", "DtkAccelerator", "gpustack_register_accelerators", "repair_hy_smi_json"]

#: the hy-smi query whose JSON output the fixtures record
HY_SMI_ARGS = [
    "--showuse",
    "--showmemuse",
    "--showmeminfo",
    "vram",
    "--showtemp",
    "--showpower",
    "--showclocks",
    "--showbw",
    "--showproductname",
    "--json",
]

# a string value directly followed by the next member's key: `"91.0""Average GFX Core Power (W)":`
_MISSING_COMMA = re.compile(r'"(\s*)"(?=[^"]*"\s*:)')


def repair_hy_smi_json(text: str) -> str:
    """``text`` with a comma inserted wherever a string is directly followed by the next key.

    hy-smi (DTK) prints ``"91.0""Average GFX Core Power (W)": "20.0"`` for some power readings.
    Text that is already valid JSON is returned unchanged; anything else it cannot mend stays
    invalid and is reported by the parser.
    """
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return _MISSING_COMMA.sub(r'",\1"', text)
    return text


VISIBILITY_VARIABLE = "HIP_VISIBLE_DEVICES"


class DtkAccelerator(Accelerator):
    """Hygon DCUs."""

    name = "dtk"
    vendor = "hygon"

    def detect(self, options: DetectOptions) -> list[Device]:
        """Hygon DCUs from ``rocm-smi --json`` (Hygon's build) joined with ``rocminfo``; where
        ``rocm-smi`` is not installed, from ``hy-smi --json`` alone."""
        if find_tool("rocm-smi", options) is None and find_tool("hy-smi", options) is not None:
            return self._detect_hy_smi(options)
        text = run_tool(["rocm-smi", *ROCM_SMI_ARGS], options, accelerator=self.name).stdout
        cards = [c for c in parse_rocm_smi(text, self.name) if c.is_hygon]
        if not cards:
            raise AcceleratorNotPresent("dtk: rocm-smi lists no Hygon DCU")
        info = parse_rocminfo(run_tool(["rocminfo"], options, accelerator=self.name).stdout, self.name)
        return join_devices(cards, info, accelerator=self.name, vendor=self.vendor)

    def _detect_hy_smi(self, options: DetectOptions) -> list[Device]:
        """DCUs from ``hy-smi`` (memory, use, temperature, series).

        ``index`` is the card's position in hy-smi's ``cardN`` order; ``uuid`` is the unique id or
        serial where hy-smi reports one, else ``hygon-card<N>`` (stable on one host while the
        kernel numbers the cards the same way). No architecture, core count or versions: those
        come from rocminfo, which this path does not run.
        """
        from gpustack_core import Device

        text = run_tool(["hy-smi", *HY_SMI_ARGS], options, accelerator=self.name).stdout
        cards = [c for c in parse_rocm_smi(repair_hy_smi_json(text), self.name, tool="hy-smi") if c.is_hygon]
        if not cards:
            raise AcceleratorNotPresent("dtk: hy-smi lists no Hygon DCU")
        return [
            Device(
                accelerator=self.name,
                vendor=self.vendor,
                index=position,
                uuid=(f"GPU-{card.unique_id}" if card.unique_id else card.serial) or f"hygon-card{card.card}",
                name=card.name or "Hygon DCU",
                memory_total_bytes=card.total,
                memory_used_bytes=card.used,
                utilization_percent=card.utilization,
                temperature_celsius=card.temperature,
                extra={"card": str(card.card), "source": "hy-smi"},
            )
            for position, card in enumerate(cards)
        ]

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        """``HIP_VISIBLE_DEVICES`` listing the devices' indices (rocminfo order); ``-1`` for none.

        Indices, because DTK's HIP documents index lists only.
        """
        if not devices:
            return {VISIBILITY_VARIABLE: "-1"}
        return {VISIBILITY_VARIABLE: ",".join(str(d.index) for d in devices)}


@hookimpl
def gpustack_register_accelerators(register: Callable[[Accelerator], None]) -> None:
    """Register the DTK accelerator."""
    register(DtkAccelerator())
