"""Property-based tests: no over-commit, selectors honoured, deterministic, fast path = general path.

The over-commit oracle below is written independently of the scheduler's state code: it computes
free memory at the snapshot from the raw inputs, as docs/scheduler.md defines it.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gpustack_core.scheduler import Scheduler
from gpustack_core.types import (
    Deployment,
    Device,
    DeviceClaim,
    DeviceRef,
    LabelRequirement,
    ModelRef,
    Placement,
    ResourceClaim,
    ResourceEstimate,
    WorkerInfo,
    WorkerState,
)

GIB = 2**30
ZONES = ("a", "b", "c")


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[WorkerInfo], list[Placement]]:
    """1-6 workers with 0-4 devices, random reported/managed use, reserves, labels, existing claims."""
    workers: list[WorkerInfo] = []
    placements: list[Placement] = []
    for w in range(draw(st.integers(1, 6))):
        name = f"w{w}"
        devices = []
        managed: dict[str, int] = {}
        vendor = draw(st.sampled_from(("nvidia", "amd")))
        accelerator = "cuda" if vendor == "nvidia" else "rocm"
        uniform_total = draw(st.one_of(st.none(), st.integers(8, 96)))
        for i in range(draw(st.integers(0, 4))):
            total = (uniform_total or draw(st.integers(8, 96))) * GIB
            used = draw(st.one_of(st.none(), st.integers(0, total)))
            devices.append(
                Device(
                    accelerator=accelerator,
                    vendor=vendor,
                    index=i,
                    uuid=f"{name}-{i}",
                    name="gpu",
                    memory_total_bytes=total,
                    memory_used_bytes=used,
                )
            )
            ref = f"{name}:{accelerator}:{i}"
            if used is not None and draw(st.booleans()):
                managed[ref] = draw(st.integers(0, used))
            if draw(st.integers(0, 3)) == 0:
                claim = draw(st.integers(1, total // GIB)) * GIB
                placements.append(
                    Placement(
                        deployment=f"old-{name}-{i}",
                        replica=0,
                        worker=name,
                        devices=(DeviceRef(worker=name, accelerator=accelerator, index=i),),
                        claim=ResourceClaim(
                            strategy="single_device", devices=(DeviceClaim(memory_bytes=claim),)
                        ),
                        claimed_device_memory_bytes={ref: claim},
                    )
                )
        host_total = draw(st.integers(0, 256)) * GIB
        workers.append(
            WorkerInfo(
                name=name,
                state=draw(st.sampled_from((WorkerState.READY, WorkerState.READY, WorkerState.NOT_READY))),
                labels={"zone": draw(st.sampled_from(ZONES))},
                devices=tuple(devices),
                memory_total_bytes=host_total,
                memory_used_bytes=draw(st.integers(0, host_total)),
                reserved_memory_bytes=draw(st.integers(0, 8)) * GIB,
                reserved_device_memory_bytes=draw(st.integers(0, 4)) * GIB,
                managed_device_memory_used_bytes=managed,
                cached_models=draw(st.sampled_from(((), (), ("local:/m.gguf",)))),
            )
        )
    return workers, placements


@st.composite
def requests(draw: st.DrawFn, workers: list[WorkerInfo]) -> tuple[Deployment, ResourceEstimate]:
    """A deployment with random constraints and an estimate with random alternative claims."""
    selector: tuple[LabelRequirement, ...] = ()
    if draw(st.booleans()):
        op = draw(st.sampled_from(("equals", "not_equals", "in", "exists")))
        selector = (
            LabelRequirement.model_validate(
                {"key": "zone", "operator": op, "values": ("a", "b")[: 1 + (op == "in")]}
            ),
        )
    refs = [d.ref(w.name) for w in workers for d in w.devices]
    gpu_selector = (
        tuple(draw(st.lists(st.sampled_from(refs), max_size=3, unique=True)))
        if refs and draw(st.booleans())
        else ()
    )
    deployment = Deployment(
        name="new",
        model=ModelRef(source="local", id="/m.gguf"),
        engine="llama.cpp",
        replicas=draw(st.integers(1, 5)),
        label_selector=selector,
        gpu_selector=gpu_selector,
        gpus_per_replica=draw(st.sampled_from((None, None, 1, 2))),
        placement_strategy=draw(st.sampled_from(("spread", "binpack"))),
        allow_multi_worker=draw(st.booleans()),
    )
    claims = []
    per = draw(st.integers(1, 60)) * GIB
    host = draw(st.integers(0, 32)) * GIB
    claims.append(
        ResourceClaim(
            strategy="single_device", devices=(DeviceClaim(memory_bytes=per),), host_memory_bytes=host
        )
    )
    for n in draw(st.lists(st.integers(2, 4), max_size=2, unique=True)):
        share = DeviceClaim(memory_bytes=per // n + GIB)
        claims.append(
            ResourceClaim(
                strategy="multi_device", devices=(share,) * n, tensor_parallel_size=n, host_memory_bytes=host
            )
        )
        claims.append(ResourceClaim(strategy="multi_worker", devices=(share,) * n, host_memory_bytes=host))
    if draw(st.booleans()):
        claims.append(
            ResourceClaim(
                strategy="partial_offload",
                devices=(DeviceClaim(memory_bytes=per // 3),),
                host_memory_bytes=per,
            )
        )
        claims.append(ResourceClaim(strategy="cpu_only", host_memory_bytes=per + host))
    return deployment, ResourceEstimate(model="m", claims=tuple(claims))


def _snapshot_free(
    workers: list[WorkerInfo], placements: list[Placement]
) -> tuple[dict[str, int], dict[str, int]]:
    """Free bytes per device ref and per worker at the snapshot, straight from the documented formula."""
    claimed: dict[str, int] = {}
    host_claimed: dict[str, int] = {}
    for p in placements:
        for ref, amount in p.claimed_device_memory_bytes.items():
            claimed[ref] = claimed.get(ref, 0) + amount
        host_claimed[p.worker] = host_claimed.get(p.worker, 0) + p.claim.host_memory_bytes
    free: dict[str, int] = {}
    for w in workers:
        for d in w.devices:
            ref = f"{w.name}:{d.accelerator}:{d.index}"
            alloc = max(0, d.memory_total_bytes - w.reserved_device_memory_bytes)
            reported = d.memory_used_bytes or 0
            managed = w.managed_device_memory_used_bytes.get(ref)
            if managed is None:
                free[ref] = alloc - max(reported, claimed.get(ref, 0))
            else:
                foreign = max(0, reported - managed)
                free[ref] = alloc - foreign - max(claimed.get(ref, 0), managed)
    host_free = {
        w.name: max(0, w.memory_total_bytes - w.reserved_memory_bytes)
        - max(w.memory_used_bytes, host_claimed.get(w.name, 0))
        for w in workers
    }
    return free, host_free


def _matches(labels: dict[str, str], req: LabelRequirement) -> bool:
    value = labels.get(req.key)
    return {
        "equals": value == req.values[0],
        "not_equals": value != req.values[0],
        "in": value in req.values,
        "exists": value is not None,
    }[req.operator]


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(data=st.data())
def test_never_overcommits_and_honours_selectors(data: st.DataObject) -> None:
    workers, placements = data.draw(clusters())
    deployment, estimate = data.draw(requests(workers))
    results = Scheduler().schedule_replicas(deployment, estimate, workers, placements)
    new = [r.placement for r in results if r.placement is not None]
    event(f"placed {min(len(new), 3)}{'+' if len(new) >= 3 else ''} replicas")
    event(", ".join(sorted({p.claim.strategy for p in new})) or "nothing placed")
    free, host_free = _snapshot_free(workers, placements)
    used: dict[str, int] = {}
    host_used: dict[str, int] = {}
    by_name = {w.name: w for w in workers}
    selected = {str(ref) for ref in deployment.gpu_selector}
    for p in new:
        for ref, amount in p.claimed_device_memory_bytes.items():
            used[ref] = used.get(ref, 0) + amount
        host_used[p.worker] = host_used.get(p.worker, 0) + p.claim.host_memory_bytes
        assert len(p.devices) == len(p.claim.devices)
        if deployment.gpus_per_replica is not None:
            assert len(p.devices) == deployment.gpus_per_replica
        for name in (p.worker, *p.subordinate_workers):
            worker = by_name[name]
            assert worker.state == WorkerState.READY
            assert all(_matches(worker.labels, req) for req in deployment.label_selector)
        if selected:
            assert {str(ref) for ref in p.devices} <= selected
        if p.claim.strategy == "multi_worker":
            assert deployment.allow_multi_worker
    for result in results:
        if result.placement is None:  # an unplaceable replica names every worker, for every claim tried
            start = 0
            for _, count in result.explanation.sections:
                section = result.explanation.rejections[start : start + count]
                start += count
                assert sorted(r.candidate.split(":")[0] for r in section) == sorted(by_name)
                assert all(r.reason for r in section)
    for ref, amount in used.items():
        assert amount <= free[ref], f"{ref}: placed {amount} > free {free[ref]}"
    for name, amount in host_used.items():
        if amount:
            assert amount <= host_free[name], f"{name}: host {amount} > free {host_free[name]}"


@SETTINGS
@given(data=st.data())
def test_deterministic_and_independent_of_input_order(data: st.DataObject) -> None:
    workers, placements = data.draw(clusters())
    deployment, estimate = data.draw(requests(workers))
    seed = data.draw(st.integers(0, 2**16))
    first = Scheduler().schedule_replicas(deployment, estimate, workers, placements)
    shuffled_workers, shuffled_placements = list(workers), list(placements)
    rng = random.Random(seed)
    rng.shuffle(shuffled_workers)
    rng.shuffle(shuffled_placements)
    again = Scheduler().schedule_replicas(deployment, estimate, shuffled_workers, shuffled_placements)

    def summary(results: list[Any]) -> list[Any]:
        return [(r.replica, r.placement, r.explanation.summary, r.explanation.rejections) for r in results]

    assert summary(first) == summary(again)


@SETTINGS
@given(data=st.data())
def test_fast_path_equals_general_path(data: st.DataObject) -> None:
    workers, placements = data.draw(clusters())
    deployment, estimate = data.draw(requests(workers))
    fast = Scheduler().schedule_replicas(deployment, estimate, workers, placements)
    general = Scheduler(fast_path=False).schedule_replicas(deployment, estimate, workers, placements)
    assert [r.placement for r in fast] == [r.placement for r in general]
    assert [r.explanation for r in fast] == [r.explanation for r in general]


@SETTINGS
@given(
    total=st.integers(8, 96),
    reported=st.integers(0, 96),
    existing=st.integers(0, 96),
    share=st.integers(1, 24),
    replicas=st.integers(1, 8),
    strategy=st.sampled_from(("spread", "binpack")),
)
def test_stacked_replicas_never_reuse_foreign_memory(
    total: int, reported: int, existing: int, share: int, replicas: int, strategy: str
) -> None:
    """Many replicas on one device: their sum stays within the free memory of the snapshot."""
    reported, existing = min(reported, total), min(existing, total)
    device = Device(
        accelerator="cuda",
        vendor="nvidia",
        index=0,
        uuid="u",
        name="gpu",
        memory_total_bytes=total * GIB,
        memory_used_bytes=reported * GIB,
    )
    worker = WorkerInfo(name="w", devices=(device,), memory_total_bytes=64 * GIB)
    placements = []
    if existing:
        placements.append(
            Placement(
                deployment="old",
                replica=0,
                worker="w",
                devices=(device.ref("w"),),
                claim=ResourceClaim(
                    strategy="single_device", devices=(DeviceClaim(memory_bytes=existing * GIB),)
                ),
                claimed_device_memory_bytes={"w:cuda:0": existing * GIB},
            )
        )
    deployment = Deployment(
        name="new",
        model=ModelRef(source="local", id="/m.gguf"),
        engine="llama.cpp",
        replicas=replicas,
        placement_strategy=strategy,
    )
    estimate = ResourceEstimate(
        model="m",
        claims=(ResourceClaim(strategy="single_device", devices=(DeviceClaim(memory_bytes=share * GIB),)),),
    )
    results = Scheduler().schedule_replicas(deployment, estimate, [worker], placements)
    placed = sum(1 for r in results if r.placement is not None)
    free_at_snapshot = total * GIB - max(reported, existing) * GIB
    assert placed * share * GIB <= free_at_snapshot
    assert placed == min(replicas, max(free_at_snapshot, 0) // (share * GIB))
