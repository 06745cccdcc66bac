"""What a worker reports about itself: devices, host memory and CPUs, engines."""

from __future__ import annotations

import os
import socket

import psutil

from gpustack_core.accelerators.detection import detect_devices
from gpustack_core.plugins import PluginHost
from gpustack_core.types import DetectOptions, WorkerInfo, WorkerState

__all__ = ["collect_worker_info", "default_worker_name"]


def default_worker_name() -> str:
    """The host name, as a worker name."""
    return socket.gethostname() or "worker"


def collect_worker_info(
    host: PluginHost,
    name: str,
    address: str,
    labels: dict[str, str] | None = None,
    reserved_memory_bytes: int = 0,
) -> WorkerInfo:
    """Detect devices through every accelerator plugin and read host memory (blocking)."""
    inventory = detect_devices(host, DetectOptions())
    memory = psutil.virtual_memory()
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
    )
