"""gpustack-core accelerator plugin for Apple GPUs (Metal): ``system_profiler`` and ``sysctl``.

Apple silicon GPUs share the machine's memory (unified memory): ``memory_total_bytes`` is
``hw.memsize``, and ``memory_is_unified`` is set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from gpustack_core import Accelerator, hookimpl
from gpustack_core.accelerators import output_error, run_tool
from gpustack_core.errors import AcceleratorNotPresent

if TYPE_CHECKING:
    from gpustack_core import DetectOptions, Device


__all__ = ["MetalAccelerator", "gpustack_register_accelerators", "parse_displays"]

PROFILER = "system_profiler SPDisplaysDataType -json"


def parse_displays(text: str, memsize_text: str, accelerator: str, vendor: str) -> list[Device]:
    """Apple GPUs from ``system_profiler SPDisplaysDataType -json`` and ``sysctl -n hw.memsize``."""
    from gpustack_core import Device

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise output_error(accelerator, PROFILER, f"not JSON ({exc.msg})", text[:120]) from None
    entries = data.get("SPDisplaysDataType") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise output_error(accelerator, PROFILER, "no 'SPDisplaysDataType' list", text[:120])
    try:
        memsize = int(memsize_text.strip())
    except ValueError:
        raise output_error(accelerator, "sysctl -n hw.memsize", "not a byte count", memsize_text) from None
    devices: list[Device] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("spdisplays_vendor") != "sppci_vendor_Apple":
            continue  # an Intel Mac's discrete or integrated GPU: not unified Apple silicon
        name: Any = entry.get("sppci_model") or entry.get("_name")
        if not name:
            raise output_error(accelerator, PROFILER, "an Apple GPU entry without sppci_model or _name")
        cores = str(entry.get("sppci_cores", ""))
        # macOS 12+ writes spdisplays_mtlgpufamilysupport ("spdisplays_metal3"); macOS 11 wrote
        # spdisplays_metalfamily ("spdisplays_mtlgpufamilyapple7"; exelban/stats issue #394).
        family_key = entry.get("spdisplays_mtlgpufamilysupport") or entry.get("spdisplays_metalfamily") or ""
        family = str(family_key).removeprefix("spdisplays_")
        devices.append(
            Device(
                accelerator=accelerator,
                vendor=vendor,
                index=len(devices),
                uuid=f"apple-gpu-{len(devices)}",
                name=str(name),
                architecture=family or None,
                memory_total_bytes=memsize,
                memory_is_unified=True,
                core_count=int(cores) if cores.isdigit() else None,
            )
        )
    return devices


class MetalAccelerator(Accelerator):
    """The GPU of an Apple-silicon Mac."""

    name = "metal"
    vendor = "apple"

    def detect(self, options: DetectOptions) -> list[Device]:
        """Apple GPUs; memory is the machine's (unified), used memory is not reported."""
        profile = run_tool(["system_profiler", "SPDisplaysDataType", "-json"], options, accelerator=self.name)
        memsize = run_tool(["sysctl", "-n", "hw.memsize"], options, accelerator=self.name)
        devices = parse_displays(profile.stdout, memsize.stdout, self.name, self.vendor)
        if not devices:
            raise AcceleratorNotPresent("metal: system_profiler lists no Apple GPU")
        return devices

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        """No variables: Metal has no setting that hides the GPU from a process (a Mac has one GPU)."""
        return {}


@hookimpl
def gpustack_register_accelerators(register: Callable[[Accelerator], None]) -> None:
    """Register the Metal accelerator."""
    register(MetalAccelerator())
