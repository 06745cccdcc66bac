"""gpustack-core accelerator plugin for NVIDIA GPUs: NVML first, ``nvidia-smi -q -x`` as fallback."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from gpustack_core import Accelerator, hookimpl
from gpustack_core.accelerators import run_tool
from gpustack_core.errors import AcceleratorNotPresent

from ._nvml import NvmlUnavailable, read_nvml, read_process_memory
from ._overhead import cuda_runtime_overhead
from ._smi import parse_smi_xml

if TYPE_CHECKING:
    from gpustack_core import DetectOptions, Device
    from gpustack_core.types import RuntimeOverhead, RuntimeWorkload


__all__ = [
    "CudaAccelerator",
    "cuda_runtime_overhead",
    "gpustack_register_accelerators",
    "parse_smi_xml",
    "read_nvml",
]

logger = logging.getLogger(__name__)

VISIBILITY_VARIABLE = "CUDA_VISIBLE_DEVICES"


def _load_pynvml() -> Any:
    try:
        import pynvml  # type: ignore[import-untyped]  # nvidia-ml-py
    except ImportError:
        return None
    return pynvml


class CudaAccelerator(Accelerator):
    """NVIDIA GPUs and MIG instances.

    Parameters:
        nvml: the NVML binding to use: ``"auto"`` imports ``pynvml`` (nvidia-ml-py), ``None`` skips
            NVML and uses only ``nvidia-smi``; tests pass a fake object with the same functions.
        smi_fallback: use ``nvidia-smi -q -x`` when NVML cannot be loaded.
    """

    name = "cuda"
    vendor = "nvidia"

    def __init__(self, nvml: Any = "auto", smi_fallback: bool = True) -> None:
        self._nvml_choice = nvml
        self._smi_fallback = smi_fallback

    @property
    def _nvml(self) -> Any:
        """The NVML binding; ``"auto"`` imports ``pynvml`` on first use, not when the plugin loads."""
        if isinstance(self._nvml_choice, str) and self._nvml_choice == "auto":
            self._nvml_choice = _load_pynvml()
        return self._nvml_choice

    def detect(self, options: DetectOptions) -> list[Device]:
        """NVML's view of the GPUs; ``nvidia-smi -q -x`` when the NVML library cannot load."""
        why = "nvidia-ml-py (pynvml) is not installed"
        if self._nvml is not None:
            try:
                return read_nvml(self._nvml, self.name, self.vendor)
            except NvmlUnavailable as exc:
                why = str(exc)
        if not self._smi_fallback:
            raise AcceleratorNotPresent(f"cuda: {why}")
        try:
            result = run_tool(["nvidia-smi", "-q", "-x"], options, accelerator=self.name)
        except AcceleratorNotPresent as exc:
            raise AcceleratorNotPresent(f"{exc}; {why}") from None
        logger.debug("cuda: NVML unavailable (%s); used nvidia-smi", why)
        return parse_smi_xml(result.stdout, self.name, self.vendor)

    def process_memory(
        self, devices: Sequence[Device], pids: Collection[int], options: DetectOptions
    ) -> dict[int, int] | None:
        """NVML's ``usedGpuMemory`` of the compute processes among ``pids``, per device (the call
        ``nvidia-smi --query-compute-apps`` makes; they agreed in every reading of the H200
        estimation benchmark). ``None`` without NVML, when NVML withholds a process's memory, or
        when none of the processes NVML lists exists here (another pid namespace: a container)."""
        if self._nvml is None:
            return None
        return read_process_memory(self._nvml, devices, pids)

    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        """``CUDA_VISIBLE_DEVICES`` listing the devices' UUIDs (``GPU-...`` / ``MIG-...``).

        UUIDs, not indices: NVML numbers GPUs in PCI order while CUDA's default order is
        fastest-first, a parent mask renumbers indices, and MIG instances have no index at all.
        An empty subset gives ``""``, which hides every GPU.
        """
        return {VISIBILITY_VARIABLE: ",".join(d.uuid for d in devices)}

    def runtime_overhead(self, device: Device, workload: RuntimeWorkload) -> RuntimeOverhead:
        """CUDA context (by SM count and compute capability), and for llama.cpp ggml-cuda's kernels,
        VMM pool and cuBLAS; every number measured on an H200 (docs/benchmarks/estimation-h200.md)."""
        return cuda_runtime_overhead(device, workload)


@hookimpl
def gpustack_register_accelerators(register: Callable[[Accelerator], None]) -> None:
    """Register the CUDA accelerator."""
    register(CudaAccelerator())
