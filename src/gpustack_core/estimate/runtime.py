"""The accelerator's per-process overhead as the estimator asks for it.

:func:`runtime_overhead_for` turns an accelerator and the devices a model may land on into the
``runtime`` callable of :func:`~gpustack_core.estimate.estimate_model`. The numbers themselves
live in the accelerator plugins (:meth:`gpustack_core.contracts.Accelerator.runtime_overhead`);
the core keeps none.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpustack_core.contracts import Accelerator
from gpustack_core.types import Device, RuntimeOverhead, RuntimeWorkload

from .llamacpp import RuntimeOverheadFn

__all__ = ["largest_overhead", "runtime_overhead_for"]


def _peak(overhead: RuntimeOverhead) -> tuple[int, int, int]:
    device = sum(i.bytes for i in overhead.device_items)
    host = sum(i.bytes for i in overhead.host_items)
    return device, overhead.allocation_granularity_bytes, host


def largest_overhead(overheads: Sequence[RuntimeOverhead]) -> RuntimeOverhead:
    """The overhead with the most device bytes (then the coarsest pages, then most host bytes).

    A model estimated once for several candidate devices carries the largest, so that it fits
    wherever the scheduler puts it. No overheads: none.
    """
    return max(overheads, key=_peak, default=RuntimeOverhead())


def runtime_overhead_for(targets: Sequence[tuple[Accelerator, Device]]) -> RuntimeOverheadFn:
    """A ``runtime`` callable asking each target's accelerator and keeping the largest answer.

    Parameters:
        targets: (accelerator, device) pairs the model may run on; devices whose
            ``device_type`` is ``"cpu"`` are skipped (a CPU build has no device runtime).
    """
    gpus = [(a, d) for a, d in targets if d.device_type != "cpu"]

    def overhead(workload: RuntimeWorkload) -> RuntimeOverhead:
        return largest_overhead([a.runtime_overhead(d, workload) for a, d in gpus])

    return overhead
