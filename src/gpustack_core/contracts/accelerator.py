"""The accelerator interface: one object per vendor (CUDA, ROCm, CANN, ..., CPU)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # the value types (pydantic) load on use: listing plugins does not need them
    from ..types import DetectOptions, Device, DeviceHealth, RuntimeOverhead, RuntimeWorkload

__all__ = ["Accelerator"]


class Accelerator(ABC):
    """Detects one vendor's devices and says how to restrict a process to some of them.

    Register instances through :func:`gpustack_core.hookspecs.gpustack_register_accelerators`.
    ``name`` is unique across all accelerator plugins (``"cuda"``, ``"rocm"``, ``"cpu"``) and is the
    middle part of device references (``worker-a:cuda:0``).
    """

    #: Unique plugin-object name, lower case, e.g. ``"cuda"``.
    name: ClassVar[str] = ""
    #: Vendor string put on every device this accelerator reports, e.g. ``"nvidia"``.
    vendor: ClassVar[str] = ""

    @abstractmethod
    def detect(self, options: DetectOptions) -> list[Device]:
        """Detect this vendor's devices on the local machine.

        Parameters:
            options: tool timeout and environment to honour.

        Returns:
            The devices, ordered by ``index``. Each device's ``accelerator`` equals ``self.name``.

        Raises:
            AcceleratorNotPresent: the vendor's driver, library or tool is absent. The host turns this
                into zero devices and one diagnostic line; it is not a failure.
            AcceleratorToolTimeout: a vendor tool ran past ``options.tool_timeout_s`` and was killed.
            AcceleratorOutputError: a tool's output could not be parsed (name the tool and the part).
        """

    @abstractmethod
    def visibility_env(self, devices: Sequence[Device]) -> dict[str, str]:
        """Environment variables that make a child process see only ``devices``.

        Parameters:
            devices: a subset of what :meth:`detect` returned, in the order the engine should number
                them (the first becomes the child's device 0).

        Returns:
            Variables to add to the child's environment, e.g. ``{"CUDA_VISIBLE_DEVICES": "2,3"}``.
            An empty subset must hide every device of this vendor, not expose all of them.
        """

    def health(self, devices: Sequence[Device], options: DetectOptions) -> list[DeviceHealth]:
        """Check that ``devices`` are still present and usable.

        Parameters:
            devices: devices previously returned by :meth:`detect`.
            options: as for :meth:`detect`.

        Returns:
            One :class:`DeviceHealth` per device, in the same order. The default implementation
            detects again and reports a device healthy when its ``uuid`` is still found.
        """
        from ..types.devices import DeviceHealth

        found = {d.uuid for d in self.detect(options)}
        return [
            DeviceHealth(
                uuid=d.uuid,
                healthy=d.uuid in found,
                message="" if d.uuid in found else f"{self.name}: device {d.uuid} is no longer detected",
            )
            for d in devices
        ]

    def runtime_overhead(self, device: Device, workload: RuntimeWorkload) -> RuntimeOverhead:
        """What this vendor's runtime costs one process on ``device``, beyond the engine's buffers.

        The estimator adds the answer to every GPU placement: ``device_items`` to each device the
        process uses (runtime context, kernel images, library handles and workspaces), ``host_items``
        to its host memory (runtime libraries and their state), and it rounds each device buffer up
        to ``allocation_granularity_bytes``. Numbers belong here, not in the core, because they
        depend on the vendor, the device (compute capability, core count) and the driver; each
        item's label should say where its number comes from (a measurement under docs/benchmarks,
        or vendor documentation).

        Parameters:
            device: one device this accelerator detected (or a description of one, for an estimate
                made elsewhere).
            workload: what the process runs there: engine family, weight types, whether it uses
                the vendor's BLAS library, tokens per forward pass, flash attention.

        Returns:
            The overhead. The default implementation returns none (an empty
            :class:`~gpustack_core.types.RuntimeOverhead`): an accelerator that does not know its
            costs keeps today's estimates.
        """
        from ..types.resources import RuntimeOverhead

        return RuntimeOverhead()

    def process_memory(
        self, devices: Sequence[Device], pids: Collection[int], options: DetectOptions
    ) -> dict[int, int] | None:
        """Device memory that the processes ``pids`` use, per device (per-process accounting).

        The worker asks this for the process trees of the engines it runs, so that the scheduler
        fits new placements against measured use instead of what earlier placements claimed.

        Parameters:
            devices: devices previously returned by :meth:`detect`.
            pids: process ids (engine processes and their children).
            options: as for :meth:`detect`.

        Returns:
            Device ``index`` -> bytes used by those processes (0 where none of them runs), or
            ``None`` (the default) when this vendor's tools cannot tell per process.
        """
        return None
