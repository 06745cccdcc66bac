"""The free-memory index of kept states: the same decisions as the general path, step after step.

A server keeps one :class:`ClusterState` and adds and removes placements; the fast path answers
one-GPU decisions from sorted lists kept current by those changes. These tests run long sequences
of decisions, adds and removes on clusters built for ties (few distinct sizes, many equal free
amounts) and compare every result, explanation included, with ``Scheduler(fast_path=False)``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpustack_core.scheduler import ClusterState, Scheduler
from gpustack_core.scheduler import _fast as fast_module
from gpustack_core.scheduler.simulate import simple_deployment, simple_estimate, simulate_cluster
from gpustack_core.types import (
    Deployment,
    Device,
    DeviceClaim,
    ModelRef,
    ResourceClaim,
    ResourceEstimate,
    WorkerInfo,
    WorkerState,
)

GIB = 2**30


@st.composite
def tied_clusters(draw: st.DrawFn) -> list[WorkerInfo]:
    """Up to 40 workers whose devices come in two sizes and mostly report round amounts used."""
    workers = []
    for w in range(draw(st.integers(1, 40))):
        total = draw(st.sampled_from((24, 80))) * GIB
        devices = tuple(
            Device(
                accelerator="cuda",
                vendor="nvidia",
                index=i,
                uuid=f"w{w}-{i}",
                name="gpu",
                memory_total_bytes=total,
                memory_used_bytes=draw(st.sampled_from((None, 0, 8 * GIB, total // 3, 12345))),
            )
            for i in range(draw(st.integers(0, 4)))
        )
        host_total = draw(st.sampled_from((0, 64, 512))) * GIB
        workers.append(
            WorkerInfo(
                name=f"w{w:02d}",
                state=draw(st.sampled_from((WorkerState.READY,) * 5 + (WorkerState.NOT_READY,))),
                devices=devices,
                memory_total_bytes=host_total,
                memory_used_bytes=0,
                cached_models=draw(st.sampled_from(((),) * 4 + (("local:/m.gguf",),))),
            )
        )
    return workers


def _deployment(name: str, strategy: str) -> Deployment:
    return Deployment(
        name=name,
        model=ModelRef(source="local", id="/m.gguf"),
        engine="llama.cpp",
        placement_strategy=strategy,
        replicas=1,
    )


def _estimate(gib: int, host_gib: int) -> ResourceEstimate:
    claim = ResourceClaim(
        strategy="single_device",
        devices=(DeviceClaim(memory_bytes=gib * GIB),),
        host_memory_bytes=host_gib * GIB,
    )
    return ResourceEstimate(model="m", claims=(claim,))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workers=tied_clusters(),
    steps=st.lists(
        st.tuples(
            st.sampled_from(("a", "b")),
            st.sampled_from(("spread", "binpack")),
            st.sampled_from((1, 4, 8, 20, 30, 70)),
            st.sampled_from((0, 0, 16, 100)),
            st.booleans(),
        ),
        min_size=1,
        max_size=25,
    ),
)
def test_kept_state_decides_like_the_general_path(
    workers: list[WorkerInfo], steps: list[tuple[str, str, int, int, bool]]
) -> None:
    fast, general = Scheduler(), Scheduler(fast_path=False)
    fast_state, general_state = ClusterState(workers), ClusterState(workers)
    placed: list[tuple[str, int]] = []
    replica = 0
    for name, strategy, gib, host_gib, remove in steps:
        if remove and placed:
            key = placed.pop(0)
            fast_state.remove(*key)
            general_state.remove(*key)
            continue
        dep, est = _deployment(name, strategy), _estimate(gib, host_gib)
        a = fast.schedule_in(fast_state, dep, est, replica)
        b = general.schedule_in(general_state, dep, est, replica)
        assert a.placement == b.placement
        assert a.explanation == b.explanation
        if a.placement is not None and b.placement is not None:
            fast_state.add(a.placement)
            general_state.add(b.placement)
            placed.append((name, replica))
        replica += 1


def test_index_answers_the_simulated_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the benchmark's cluster the index path is taken and agrees for 60 kept decisions."""
    calls = []
    real = fast_module._indexed

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fast_module, "_indexed", counting)
    workers, placements = simulate_cluster(300, 8, seed=5)
    fast_state, general_state = ClusterState(workers, placements), ClusterState(workers, placements)
    fast, general = Scheduler(), Scheduler(fast_path=False)
    for i in range(60):
        strategy = ("spread", "binpack")[i % 2]
        dep = simple_deployment(f"d-{strategy}", placement_strategy=strategy)
        est = simple_estimate((8, 20, 40)[i % 3])
        a = fast.schedule_in(fast_state, dep, est, i)
        b = general.schedule_in(general_state, dep, est, i)
        assert a.placement == b.placement
        assert a.explanation == b.explanation
        if a.placement is not None and b.placement is not None:
            fast_state.add(a.placement)
            general_state.add(b.placement)
    assert len(calls) == 59  # the first decision scans: a state used once never builds the index
