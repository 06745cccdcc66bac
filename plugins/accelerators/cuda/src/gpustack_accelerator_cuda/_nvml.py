"""Read NVIDIA devices (and MIG instances) through NVML, the library behind nvidia-smi."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpustack_core import Device


__all__ = ["ARCHITECTURES", "NvmlUnavailable", "read_nvml", "read_process_memory"]

#: NVML_DEVICE_ARCH_* values (nvml.h) -> architecture names
ARCHITECTURES: dict[int, str] = {
    2: "kepler",
    3: "maxwell",
    4: "pascal",
    5: "volta",
    6: "turing",
    7: "ampere",
    8: "ada",
    9: "hopper",
    10: "blackwell",
    13: "rubin",
}


class NvmlUnavailable(Exception):
    """The NVML library could not be loaded or initialised (no driver); the message says why."""


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional(nvml: Any, fn: str, *args: Any) -> Any:
    """Call an NVML getter that a device or driver may not support; ``None`` when it does not."""
    getter = getattr(nvml, fn, None)
    if getter is None:
        return None
    try:
        return getter(*args)
    except nvml.NVMLError:
        return None


def _device(
    nvml: Any,
    handle: Any,
    *,
    accelerator: str,
    vendor: str,
    index: int,
    driver: str | None,
    runtime: str | None,
    parent: str | None = None,
    extra: dict[str, str] | None = None,
) -> Device:
    from gpustack_core import Device

    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    capability = _optional(nvml, "nvmlDeviceGetCudaComputeCapability", handle)
    arch = _optional(nvml, "nvmlDeviceGetArchitecture", handle)
    utilization = _optional(nvml, "nvmlDeviceGetUtilizationRates", handle)
    temperature = _optional(nvml, "nvmlDeviceGetTemperature", handle, nvml.NVML_TEMPERATURE_GPU)
    pci = _optional(nvml, "nvmlDeviceGetPciInfo", handle)
    cores = _optional(nvml, "nvmlDeviceGetNumGpuCores", handle)
    numa = _optional(nvml, "nvmlDeviceGetNumaNodeId", handle)
    total = int(memory.total)
    return Device(
        accelerator=accelerator,
        vendor=vendor,
        index=index,
        uuid=_str(nvml.nvmlDeviceGetUUID(handle)),
        name=_str(nvml.nvmlDeviceGetName(handle)),
        architecture=ARCHITECTURES.get(int(arch)) if arch is not None else None,
        compute_capability=f"{capability[0]}.{capability[1]}" if capability else None,
        memory_total_bytes=total,
        memory_used_bytes=min(int(memory.used), total),
        core_count=int(cores) if cores is not None else None,
        utilization_percent=float(utilization.gpu) if utilization is not None else None,
        temperature_celsius=float(temperature) if temperature is not None else None,
        driver_version=driver,
        runtime_version=runtime,
        pci_bus_id=_str(pci.busId) if pci is not None else None,
        numa_node=int(numa) if numa is not None and int(numa) >= 0 else None,
        parent_uuid=parent,
        extra={"source": "nvml", **(extra or {})},
    )


def _mig_handles(nvml: Any, handle: Any) -> list[Any]:
    mode = _optional(nvml, "nvmlDeviceGetMigMode", handle)
    if not mode or int(mode[0]) != 1:
        return []
    found = []
    for slot in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(handle))):
        try:
            found.append(nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot))
        except nvml.NVMLError:  # NOT_FOUND: an unpopulated slot
            continue
    return found


def read_nvml(nvml: Any, accelerator: str, vendor: str) -> list[Device]:
    """Every NVIDIA device through the NVML binding ``nvml`` (the ``pynvml`` module or a fake).

    A GPU in MIG mode is replaced by its MIG instances (``parent_uuid`` = the GPU's uuid): those are
    what CUDA can run on. Indices count the reported devices in NVML order (PCI bus order).
    ``memory_used_bytes`` is NVML's ``used`` (v1), which includes the driver's reservation.

    Raises:
        NvmlUnavailable: the library is missing or cannot initialise (driver absent).
    """
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML: {exc}") from None
    try:
        driver = _optional(nvml, "nvmlSystemGetDriverVersion")
        cuda = _optional(nvml, "nvmlSystemGetCudaDriverVersion_v2")
        runtime = f"{int(cuda) // 1000}.{int(cuda) % 1000 // 10}" if cuda else None
        driver_text = _str(driver) if driver is not None else None
        devices: list[Device] = []
        for gpu_index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(gpu_index)
            migs = _mig_handles(nvml, handle)
            common = {"accelerator": accelerator, "vendor": vendor, "driver": driver_text, "runtime": runtime}
            if not migs:
                extra = {"gpu_index": str(gpu_index)}
                devices.append(_device(nvml, handle, index=len(devices), extra=extra, **common))  # type: ignore[arg-type]
                continue
            parent = _str(nvml.nvmlDeviceGetUUID(handle))
            for mig_index, mig in enumerate(migs):
                extra = {"gpu_index": str(gpu_index), "mig_index": str(mig_index)}
                devices.append(
                    _device(nvml, mig, index=len(devices), parent=parent, extra=extra, **common)  # type: ignore[arg-type]
                )
        return devices
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


def read_process_memory(nvml: Any, devices: Sequence[Device], pids: Collection[int]) -> dict[int, int] | None:
    """Device memory (bytes) of the compute processes among ``pids`` on each device, by device index,
    from ``nvmlDeviceGetComputeRunningProcesses`` (a device's ``uuid`` finds its handle, MIG
    instances included).

    ``None`` when NVML cannot tell: it does not load, it withholds a listed process's memory, or
    none of the processes it lists exists in this pid namespace (a container sees other pids than
    the driver reports), where "0" would be a wrong measurement, not an unknown one.
    """
    import psutil  # on use: the plugin loads without it

    try:
        nvml.nvmlInit()
    except nvml.NVMLError:
        return None
    try:
        wanted = set(pids)
        used: dict[int, int] = {}
        listed: list[int] = []
        for device in devices:
            handle = nvml.nvmlDeviceGetHandleByUUID(device.uuid)
            total = 0
            for process in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                listed.append(int(process.pid))
                if int(process.pid) in wanted:
                    if process.usedGpuMemory is None:
                        return None
                    total += int(process.usedGpuMemory)
            used[device.index] = total
        if listed and not any(psutil.pid_exists(pid) for pid in listed):
            return None
        return used
    except nvml.NVMLError:
        return None
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()
