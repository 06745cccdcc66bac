"""gpustack-core accelerator plugin for AMD GPUs: ``amd-smi`` (ROCm's current tool) where it is
installed, else ``rocm-smi --json`` joined with ``rocminfo``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gpustack_core import Accelerator, hookimpl
from gpustack_core.accelerators import find_tool, output_error, run_tool
from gpustack_core.errors import AcceleratorNotPresent

from ._amdsmi import AMD_SMI_METRIC_ARGS, AMD_SMI_STATIC_ARGS, AmdSmiGpu, parse_amd_smi
from ._parse import ROCM_SMI_ARGS, RocmAgent, RocmInfo, SmiCard, parse_rocm_smi, parse_rocminfo

if TYPE_CHECKING:
    from gpustack_core import DetectOptions, Device


__all__ = [
    "AMD_SMI_METRIC_ARGS",
    "AMD_SMI_STATIC_ARGS",
    "ROCM_SMI_ARGS",
    "AmdSmiGpu",
    "RocmAccelerator",
    "RocmAgent",
    "RocmInfo",
    "SmiCard",
    "gpustack_register_accelerators",
    "join_devices",
    "parse_amd_smi",
    "parse_rocm_smi",
    "parse_rocminfo",
]

VISIBILITY_VARIABLE = "ROCR_VISIBLE_DEVICES"


def join_devices(
    cards: list[SmiCard], info: RocmInfo, *, accelerator: str, vendor: str, device_type: str = "gpu"
) -> list[Device]:
    """Join rocm-smi cards with rocminfo agents by unique id (``GPU-<unique id>`` in rocminfo).

    ``index`` is the agent's position in rocminfo, the order the HSA runtime (and so
    ``ROCR_VISIBLE_DEVICES``) numbers devices; a card without a matching agent keeps its card number.
    """
    from gpustack_core import Device

    by_uid = {a.uuid.removeprefix("GPU-").lower(): a for a in info.agents}
    devices: list[Device] = []
    for card in cards:
        agent = by_uid.get(card.unique_id or "")
        if agent is None and len(cards) == len(info.agents) == 1:
            agent = info.agents[0]
        uuid = agent.uuid if agent else (f"GPU-{card.unique_id}" if card.unique_id else card.serial)
        if not uuid:
            raise output_error(accelerator, "rocm-smi", f"card{card.card} has neither Unique ID nor serial")
        extra = {"card": str(card.card), **({"serial": card.serial} if card.serial else {})}
        devices.append(
            Device(
                accelerator=accelerator,
                vendor=vendor,
                device_type="gpu" if device_type == "gpu" else "other",
                index=agent.position if agent else card.card,
                uuid=uuid,
                name=(agent.marketing_name if agent and agent.marketing_name else None) or card.name or "GPU",
                architecture=agent.name if agent else None,
                memory_total_bytes=card.total,
                memory_used_bytes=card.used,
                core_count=agent.compute_units if agent else None,
                utilization_percent=card.utilization,
                temperature_celsius=card.temperature,
                driver_version=info.driver_version,
                runtime_version=info.runtime_version,
                extra=extra,
            )
        )
    return sorted(devices, key=lambda d: d.index)


class RocmAccelerator(Accelerator):
    """AMD GPUs (Hygon DCUs, which the same tools list, are left to the ``dtk`` plugin)."""

    name = "rocm"
    vendor = "amd"

    def detect(self, options: DetectOptions) -> list[Device]:
        """AMD GPUs from ``amd-smi`` where it is on ``PATH``, else from ``rocm-smi`` + ``rocminfo``.

        ``rocm-smi`` is deprecated in favour of ``amd-smi``; a host with both is read through
        ``amd-smi``.
        """
        if find_tool("amd-smi", options) is not None:
            return self._detect_amd_smi(options)
        cards = parse_rocm_smi(
            run_tool(["rocm-smi", *ROCM_SMI_ARGS], options, accelerator=self.name).stdout, self.name
        )
        amd = [c for c in cards if not c.is_hygon]
        if not amd:
            raise AcceleratorNotPresent("rocm: rocm-smi lists no AMD GPU")
        info = parse_rocminfo(run_tool(["rocminfo"], options, accelerator=self.name).stdout, self.name)
        return join_devices(amd, info, accelerator=self.name, vendor=self.vendor)

    def _detect_amd_smi(self, options: DetectOptions) -> list[Device]:
        """``amd-smi static --json`` joined with ``amd-smi metric --json`` by GPU number.

        ``index`` is amd-smi's GPU number; ``uuid`` is ``GPU-<ASIC serial>`` (the form rocminfo and
        ``ROCR_VISIBLE_DEVICES`` use) where the ASIC reports a serial, else ``AMD-PCI-<bus id>``.
        """
        from gpustack_core import Device

        static = run_tool(["amd-smi", *AMD_SMI_STATIC_ARGS], options, accelerator=self.name).stdout
        metric = run_tool(["amd-smi", *AMD_SMI_METRIC_ARGS], options, accelerator=self.name).stdout
        gpus = [g for g in parse_amd_smi(static, metric, self.name) if g.is_amd]
        if not gpus:
            raise AcceleratorNotPresent("rocm: amd-smi lists no AMD GPU")
        devices: list[Device] = []
        for gpu in gpus:
            if gpu.serial:
                uuid = f"GPU-{gpu.serial}"
            elif gpu.bdf:
                uuid = f"AMD-PCI-{gpu.bdf.lower()}"
            else:
                raise output_error(
                    self.name, "amd-smi", f"GPU {gpu.gpu} has neither an ASIC serial nor a bus id"
                )
            devices.append(
                Device(
                    accelerator=self.name,
                    vendor=self.vendor,
                    index=gpu.gpu,
                    uuid=uuid,
                    name=gpu.name,
                    architecture=gpu.architecture,
                    core_count=gpu.compute_units,
                    memory_total_bytes=gpu.memory_total,
                    memory_used_bytes=gpu.memory_used,
                    utilization_percent=gpu.utilization,
                    temperature_celsius=gpu.temperature,
                    driver_version=gpu.driver_version,
                    pci_bus_id=gpu.bdf,
                    extra={"source": "amd-smi"},
                )
            )
        return devices

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        """``ROCR_VISIBLE_DEVICES`` listing the devices' ``GPU-<id>`` uuids; ``-1`` for none.

        The ROCr runtime accepts uuids as well as indices and applies below HIP, so the list holds
        whatever order HIP's own numbering would give. A device read through amd-smi without an
        ASIC serial has no ROCr uuid and is listed by its index (amd-smi's GPU number, which
        follows the same PCI order as ROCr on the hosts seen; not verified on hardware here). An
        empty subset gives ``-1`` (a device that does not exist), which leaves no device visible.
        """
        if not devices:
            return {VISIBILITY_VARIABLE: "-1"}
        return {
            VISIBILITY_VARIABLE: ",".join(
                d.uuid if d.uuid.startswith("GPU-") else str(d.index) for d in devices
            )
        }


@hookimpl
def gpustack_register_accelerators(register: Callable[[Accelerator], None]) -> None:
    """Register the ROCm accelerator."""
    register(RocmAccelerator())
