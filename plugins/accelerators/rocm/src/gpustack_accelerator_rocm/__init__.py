"""gpustack-core accelerator plugin for AMD GPUs: ``rocm-smi --json`` joined with ``rocminfo``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gpustack_core import Accelerator, DetectOptions, Device, hookimpl
from gpustack_core.accelerators import output_error, run_tool
from gpustack_core.errors import AcceleratorNotPresent

from ._parse import ROCM_SMI_ARGS, RocmAgent, RocmInfo, SmiCard, parse_rocm_smi, parse_rocminfo

__all__ = [
    "ROCM_SMI_ARGS",
    "RocmAccelerator",
    "RocmAgent",
    "RocmInfo",
    "SmiCard",
    "gpustack_register_accelerators",
    "join_devices",
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
        """AMD GPUs: memory, use and temperature from rocm-smi; architecture and CUs from rocminfo."""
        cards = parse_rocm_smi(
            run_tool(["rocm-smi", *ROCM_SMI_ARGS], options, accelerator=self.name).stdout, self.name
        )
        amd = [c for c in cards if not c.is_hygon]
        if not amd:
            raise AcceleratorNotPresent("rocm: rocm-smi lists no AMD GPU")
        info = parse_rocminfo(run_tool(["rocminfo"], options, accelerator=self.name).stdout, self.name)
        return join_devices(amd, info, accelerator=self.name, vendor=self.vendor)

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        """``ROCR_VISIBLE_DEVICES`` listing the devices' ``GPU-<id>`` uuids; ``-1`` for none.

        The ROCr runtime accepts uuids as well as indices and applies below HIP, so the list holds
        whatever order HIP's own numbering would give. An empty subset gives ``-1`` (a device
        that does not exist), which leaves no device visible.
        """
        if not devices:
            return {VISIBILITY_VARIABLE: "-1"}
        return {VISIBILITY_VARIABLE: ",".join(d.uuid for d in devices)}


@hookimpl
def gpustack_register_accelerators(register: Callable[[Accelerator], None]) -> None:
    """Register the ROCm accelerator."""
    register(RocmAccelerator())
