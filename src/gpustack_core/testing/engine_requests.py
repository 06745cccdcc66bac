"""Launch requests for engine plugin tests, and golden-file comparison of launch specs.

``make_launch_request`` builds a complete :class:`~gpustack_core.types.LaunchRequest` for a
vendor, a device count and a node rank, with fixed paths and ports so that the resulting
:class:`~gpustack_core.types.LaunchSpec` can be compared with a golden JSON file
(``assert_matches_golden``). Regenerate golden files with ``GPUSTACK_UPDATE_GOLDEN=1 pytest ...``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gpustack_core.types import (
    Deployment,
    Device,
    DeviceClaim,
    DeviceRef,
    EngineInstallation,
    GroupMember,
    KVCacheExtension,
    LaunchRequest,
    LaunchSpec,
    ModelCategory,
    ModelRef,
    PerformancePreset,
    Placement,
    ResourceClaim,
    SpeculativeDecoding,
)

__all__ = [
    "PRESET_SCENARIOS",
    "UPDATE_GOLDEN_ENV",
    "VENDOR_DEVICES",
    "assert_matches_golden",
    "make_launch_request",
    "standard_scenarios",
]

#: Test data: one performance preset per mode, speculative method and KV-cache extension; the
#: launch-spec suite checks each against every engine (golden spec where claimed, refusal elsewhere).
PRESET_SCENARIOS: dict[str, PerformancePreset] = {
    "mode-latency": PerformancePreset(mode="latency"),
    "mode-throughput": PerformancePreset(mode="throughput"),
    "spec-eagle3": PerformancePreset(
        speculative=SpeculativeDecoding(
            method="eagle3", draft_model="/models/eagle3-head", num_speculative_tokens=3
        )
    ),
    "spec-mtp": PerformancePreset(speculative=SpeculativeDecoding(method="mtp", num_speculative_tokens=1)),
    "spec-ngram": PerformancePreset(
        speculative=SpeculativeDecoding(method="ngram", num_speculative_tokens=4)
    ),
    "spec-draft-model": PerformancePreset(
        speculative=SpeculativeDecoding(
            method="draft_model", draft_model="/models/draft", num_speculative_tokens=5
        )
    ),
    "kv-lmcache": PerformancePreset(
        kv_cache_extension=KVCacheExtension(
            kind="lmcache", host_memory_bytes=20 * 2**30, disk_path="/var/cache/kv", disk_bytes=100 * 2**30
        )
    ),
    "kv-hicache": PerformancePreset(
        kv_cache_extension=KVCacheExtension(kind="hicache", host_memory_bytes=20 * 2**30)
    ),
}

#: Set to 1 to (re)write golden files instead of comparing with them.
UPDATE_GOLDEN_ENV = "GPUSTACK_UPDATE_GOLDEN"

#: Test data: per vendor, (accelerator plugin, device type, visibility variable its plugin sets).
VENDOR_DEVICES: dict[str, tuple[str, str, str | None]] = {
    "nvidia": ("cuda", "gpu", "CUDA_VISIBLE_DEVICES"),
    "amd": ("rocm", "gpu", "HIP_VISIBLE_DEVICES"),
    "ascend": ("cann", "npu", "ASCEND_RT_VISIBLE_DEVICES"),
    "metax": ("metax", "gpu", "MACA_VISIBLE_DEVICES"),
    "apple": ("metal", "gpu", None),
    "cpu": ("cpu", "cpu", None),
}

_GIB = 1024**3


def make_launch_request(
    engine: str,
    *,
    executable: str,
    version: str,
    vendor: str = "nvidia",
    device_count: int = 1,
    node_rank: int = 0,
    node_count: int = 1,
    category: ModelCategory = ModelCategory.LLM,
    model_paths: tuple[str, ...] = ("/models/qwen/model.gguf",),
    extra_args: tuple[str, ...] = (),
    context_length: int | None = 8192,
    rpc_servers: tuple[str, ...] = (),
    head_address: str | None = None,
    port: int = 40100,
    host: str = "0.0.0.0",
    work_dir: str | None = "/var/lib/gpustack/instances/qwen-0",
    performance: PerformancePreset | None = None,
    group: tuple[GroupMember, ...] | None = None,
    device_extra: dict[str, str] | None = None,
) -> LaunchRequest:
    """A deterministic launch request (``worker-0`` for rank 0, ``worker-N`` for rank N).

    With ``node_count`` > 1 the request's ``group`` defaults to every rank ``r`` as ``worker-r`` at
    ``10.0.0.{r+1}`` (the head at ``head_address``'s host) with ``device_count`` devices like this
    worker's; ``device_extra`` (a format string per key, with ``{rank}`` and ``{index}``) fills
    every device's ``extra``, e.g. ``{"device_ip": "192.168.{rank}.{index}"}``.
    """
    accelerator, device_type, variable = VENDOR_DEVICES[vendor]
    worker = f"worker-{node_rank}"
    count = 1 if vendor == "cpu" else device_count

    def devices_of(rank: int) -> tuple[Device, ...]:
        return tuple(
            Device(
                accelerator=accelerator,
                vendor=vendor,
                device_type=device_type,
                index=index,
                uuid=f"{vendor}-{rank}-{index}",
                name=f"{vendor} device {index}",
                memory_total_bytes=(64 if vendor != "cpu" else 128) * _GIB,
                memory_used_bytes=0,
                extra={k: v.format(rank=rank, index=index) for k, v in (device_extra or {}).items()},
            )
            for index in range(count)
        )

    devices = devices_of(node_rank)
    if group is None and node_count > 1:
        head_host = head_address.rsplit(":", 1)[0] if head_address else "10.0.0.1"
        group = tuple(
            GroupMember(
                rank=rank,
                worker=f"worker-{rank}",
                address=head_host if rank == 0 else f"10.0.0.{rank + 1}",
                devices=devices_of(rank),
            )
            for rank in range(node_count)
        )
    on_devices = vendor != "cpu"
    if node_count > 1:
        strategy = "multi_worker"
    elif not on_devices:
        strategy = "cpu_only"
    else:
        strategy = "multi_device" if count > 1 else "single_device"
    claim = ResourceClaim(
        strategy=strategy,
        devices=tuple(DeviceClaim(memory_bytes=10 * _GIB) for _ in devices) if on_devices else (),
        host_memory_bytes=2 * _GIB,
        tensor_parallel_size=count if on_devices else 1,
    )
    if node_count > 1 and not on_devices:  # over the CPUs of the workers: 33 layers, 16 on the RPC servers
        claim = claim.model_copy(
            update={
                "worker_host_memory_bytes": (2 * _GIB, *(_GIB for _ in range(1, node_count))),
                "total_layers": 33,
                "offloaded_layers": 16,
            }
        )
    deployment = Deployment(
        name="qwen",
        model=ModelRef(source="local", id=model_paths[0] if model_paths else "/models/none"),
        engine=engine,
        engine_version=version,
        category=category,
        extra_args=extra_args,
        env={"GPUSTACK_TEST_USER_ENV": "1"},
        served_model_name="qwen-chat",
        context_length=context_length,
        allow_multi_worker=node_count > 1,
        performance=performance,
    )
    placement = Placement(
        deployment="qwen",
        replica=0,
        worker="worker-0",
        devices=tuple(DeviceRef(worker=worker, accelerator=accelerator, index=d.index) for d in devices)
        if on_devices
        else (),
        claim=claim,
        subordinate_workers=tuple(f"worker-{rank}" for rank in range(1, node_count)),
    )
    visibility = {variable: ",".join(str(d.index) for d in devices)} if variable and on_devices else {}
    prefix = f"/opt/engines/{engine}/{version}"
    return LaunchRequest(
        deployment=deployment,
        placement=placement,
        installation=EngineInstallation(engine=engine, version=version, executable=executable, prefix=prefix),
        model_paths=model_paths,
        devices=devices,
        visibility_env=visibility,
        host=host,
        port=port,
        rpc_servers=rpc_servers,
        node_rank=node_rank,
        node_count=node_count,
        head_address=head_address,
        group=group or (),
        work_dir=work_dir,
    )


def standard_scenarios(vendors: tuple[str, ...], multi_node: bool) -> dict[str, dict[str, Any]]:
    """Keyword arguments of :func:`make_launch_request` for single GPU, multi-GPU and (when the
    engine spreads across workers) multi-node head and worker, for each vendor."""
    scenarios: dict[str, dict[str, Any]] = {}
    for vendor in vendors:
        if vendor == "cpu":
            scenarios["cpu"] = {"vendor": "cpu"}
            continue
        scenarios[f"{vendor}-single"] = {"vendor": vendor, "device_count": 1}
        scenarios[f"{vendor}-multi-device"] = {"vendor": vendor, "device_count": 4}
        if multi_node:
            common = {"vendor": vendor, "device_count": 2, "node_count": 2, "head_address": "10.0.0.1:29500"}
            scenarios[f"{vendor}-multi-node-head"] = {
                **common,
                "node_rank": 0,
                "rpc_servers": ("10.0.0.2:50052",),
            }
            scenarios[f"{vendor}-multi-node-worker"] = {
                **common,
                "node_rank": 1,
                "host": "10.0.0.2",
                "port": 50052,
            }
    return scenarios


def assert_matches_golden(spec: LaunchSpec, path: Path) -> None:
    """Compare ``spec`` exactly with the golden JSON at ``path`` (or write it when
    ``GPUSTACK_UPDATE_GOLDEN=1``)."""
    actual = spec.model_dump(mode="json")
    if os.environ.get(UPDATE_GOLDEN_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
        return
    if not path.exists():
        raise AssertionError(f"no golden file {path}; create it with {UPDATE_GOLDEN_ENV}=1 and review it")
    expected = json.loads(path.read_text())
    if expected != actual:
        raise AssertionError(
            f"launch spec differs from {path.name}:\n"
            f"expected {json.dumps(expected, indent=1, sort_keys=True)}\n"
            f"actual   {json.dumps(actual, indent=1, sort_keys=True)}\n"
            f"(if the change is intended, regenerate with {UPDATE_GOLDEN_ENV}=1 and review the diff)"
        )
