"""Device detection across every accelerator plugin, with per-plugin isolation and timing."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import AcceleratorNotPresent, GPUStackError
from ..plugins import PluginHost
from ..types import DetectOptions, Device

__all__ = ["AcceleratorReport", "DeviceInventory", "detect_devices"]


@dataclass(frozen=True)
class AcceleratorReport:
    """What one accelerator plugin found: devices, or a diagnostic line, or an error."""

    accelerator: str
    devices: tuple[Device, ...] = ()
    diagnostic: str | None = field(default=None, metadata={"doc": "why zero devices (vendor absent)"})
    error: str | None = None
    duration_s: float = 0.0


@dataclass(frozen=True)
class DeviceInventory:
    """Devices of the local machine, with one report per accelerator plugin."""

    reports: tuple[AcceleratorReport, ...]

    @property
    def devices(self) -> tuple[Device, ...]:
        """Every device of every accelerator, in plugin order."""
        return tuple(d for r in self.reports for d in r.devices)


def detect_devices(
    host: PluginHost, options: DetectOptions | None = None, only: Sequence[str] | None = None
) -> DeviceInventory:
    """Ask every enabled accelerator plugin (or those named in ``only``) for its devices.

    An absent vendor gives zero devices and a diagnostic; a failing plugin gives an error in its
    report (and is marked failed on the host); neither stops the other plugins.
    """
    opts = options or DetectOptions()
    reports: list[AcceleratorReport] = []
    for accelerator in host.accelerators():
        if only is not None and accelerator.name not in only:
            continue
        started = time.perf_counter()
        try:
            with host.guard("accelerators", accelerator.name, "detect()"):
                result = accelerator.detect(opts)
            host.check_type("accelerators", accelerator.name, "detect()", result, list)
            devices = tuple(
                host.check_type("accelerators", accelerator.name, "detect() item", d, Device) for d in result
            )
        except AcceleratorNotPresent as exc:
            reports.append(
                AcceleratorReport(
                    accelerator.name, diagnostic=str(exc), duration_s=time.perf_counter() - started
                )
            )
            continue
        except GPUStackError as exc:
            reports.append(
                AcceleratorReport(accelerator.name, error=str(exc), duration_s=time.perf_counter() - started)
            )
            continue
        reports.append(AcceleratorReport(accelerator.name, devices, duration_s=time.perf_counter() - started))
    return DeviceInventory(tuple(reports))
