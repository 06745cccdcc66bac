"""gpustack-core accelerator plugin for Hygon DCUs (DTK): Hygon's ``rocm-smi`` variant and ``rocminfo``.

The output formats are those of AMD's tools with Hygon's keys (``DCU use (%)``, memory in MiB), so
the parsers of the ``rocm`` plugin are reused; this plugin keeps only the Hygon cards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gpustack_accelerator_rocm import ROCM_SMI_ARGS, join_devices, parse_rocm_smi, parse_rocminfo

from gpustack_core import Accelerator, DetectOptions, Device, hookimpl
from gpustack_core.accelerators import run_tool
from gpustack_core.errors import AcceleratorNotPresent

__all__ = ["DtkAccelerator", "gpustack_register_accelerators"]

VISIBILITY_VARIABLE = "HIP_VISIBLE_DEVICES"


class DtkAccelerator(Accelerator):
    """Hygon DCUs."""

    name = "dtk"
    vendor = "hygon"

    def detect(self, options: DetectOptions) -> list[Device]:
        """Hygon DCUs from ``rocm-smi --json`` (Hygon's build) joined with ``rocminfo``."""
        text = run_tool(["rocm-smi", *ROCM_SMI_ARGS], options, accelerator=self.name).stdout
        cards = [c for c in parse_rocm_smi(text, self.name) if c.is_hygon]
        if not cards:
            raise AcceleratorNotPresent("dtk: rocm-smi lists no Hygon DCU")
        info = parse_rocminfo(run_tool(["rocminfo"], options, accelerator=self.name).stdout, self.name)
        return join_devices(cards, info, accelerator=self.name, vendor=self.vendor)

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
