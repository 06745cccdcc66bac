"""What a worker reports about itself: devices, host memory and CPUs, engines."""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Iterable

import psutil

from gpustack_core.accelerators.detection import detect_devices
from gpustack_core.errors import GPUStackError
from gpustack_core.plugins import PluginHost
from gpustack_core.types import DetectOptions, WorkerInfo, WorkerState

__all__ = ["collect_worker_info", "default_worker_name", "process_tree_pids"]


def default_worker_name() -> str:
    """The host name, as a worker name."""
    return socket.gethostname() or "worker"


def collect_worker_info(
    host: PluginHost,
    name: str,
    address: str,
    labels: dict[str, str] | None = None,
    reserved_memory_bytes: int = 0,
    engine_pids: Collection[int] = (),
    cached_models: Iterable[str] = (),
) -> WorkerInfo:
    """Detect devices through every accelerator plugin and read host memory (blocking).

    ``engine_pids`` (the worker's engine processes with their children) are measured through each
    accelerator's :meth:`~gpustack_core.contracts.Accelerator.process_memory`, where the vendor can
    tell, into ``managed_device_memory_used_bytes``; ``cached_models`` are reported as given.
    """
    options = DetectOptions()
    inventory = detect_devices(host, options)
    memory = psutil.virtual_memory()
    managed: dict[str, int] = {}
    for accelerator in host.accelerators():
        mine = [d for d in inventory.devices if d.accelerator == accelerator.name]
        if not mine:
            continue
        try:
            with host.guard("accelerators", accelerator.name, "process_memory()"):
                used = accelerator.process_memory(mine, engine_pids, options)
        except GPUStackError:
            used = None  # a failing plugin is marked on the host; the worker reports without it
        if used is not None:
            managed.update({f"{name}:{accelerator.name}:{d.index}": int(used.get(d.index, 0)) for d in mine})
    return WorkerInfo(
        name=name,
        address=address,
        state=WorkerState.READY,
        labels=dict(labels or {}),
        devices=inventory.devices,
        cpu_count=os.cpu_count() or 1,
        memory_total_bytes=memory.total,
        memory_used_bytes=min(memory.total, memory.total - memory.available),
        reserved_memory_bytes=reserved_memory_bytes,
        engines=tuple(sorted(e.name for e in host.engines())),
        cached_models=tuple(sorted(set(cached_models))),
        managed_device_memory_used_bytes=managed,
    )


def process_tree_pids(pids: Iterable[int]) -> set[int]:
    """``pids`` and every live descendant of them (engines often run their work in children)."""
    out: set[int] = set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            out.add(pid)
            out.update(child.pid for child in proc.children(recursive=True))
        except psutil.Error:
            continue
    return out
