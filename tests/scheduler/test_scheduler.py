"""The scheduler: strategies, replicas, scale-down, explanations, third-party policies, plugin host."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import ClassVar

import pytest

from gpustack_core.contracts import SchedulerPolicy
from gpustack_core.errors import SchedulingError
from gpustack_core.hookspecs import hookimpl
from gpustack_core.plugins import PluginHost
from gpustack_core.scheduler import ClusterState, Scheduler
from gpustack_core.scheduler.simulate import simple_deployment, simple_estimate, simulate_cluster
from gpustack_core.types import Candidate, PolicyContext, Rejection, ResourceClaim, WorkerState


def test_one_gpu_first(b: SimpleNamespace) -> None:
    workers = [b.worker("w1", b.device(0, 80), b.device(1, 80))]
    result = Scheduler().schedule(b.deployment(), b.estimate(b.one_gpu(30), b.multi_gpu(16, 2)), workers)
    assert result.placement is not None
    assert result.placement.claim.strategy == "single_device"
    assert [str(r) for r in result.placement.devices] == ["w1:cuda:0"]
    assert result.placement.claimed_device_memory_bytes == {"w1:cuda:0": 30 * b.GIB}
    assert result.explanation.summary.startswith("placed replica 0 of 'app' on w1:cuda:0 (one GPU")


def test_falls_back_to_several_gpus_of_one_worker(b: SimpleNamespace) -> None:
    workers = [b.worker("w1", b.device(0, 48, 4), b.device(1, 48, 4)), b.worker("w2", b.device(0, 24))]
    est = b.estimate(b.one_gpu(70), b.multi_gpu(36, 2))
    result = Scheduler().schedule(b.deployment(), est, workers)
    assert result.placement is not None
    assert result.placement.claim.tensor_parallel_size == 2
    assert sorted(str(r) for r in result.placement.devices) == ["w1:cuda:0", "w1:cuda:1"]


def test_multi_worker_only_when_allowed(b: SimpleNamespace) -> None:
    workers = [b.worker("w1", b.device(0, 48)), b.worker("w2", b.device(0, 48))]
    est = b.estimate(b.one_gpu(80), b.multi_gpu(40, 2, strategy="multi_worker"))
    refused = Scheduler().schedule(b.deployment(), est, workers)
    assert refused.placement is None
    assert any("does not allow multi-worker" in n for n in refused.explanation.notes)
    placed = Scheduler().schedule(b.deployment(allow_multi_worker=True), est, workers)
    assert placed.placement is not None
    assert placed.placement.worker == "w1"
    assert placed.placement.subordinate_workers == ("w2",)
    assert sorted(placed.placement.claimed_device_memory_bytes) == ["w1:cuda:0", "w2:cuda:0"]


def _over_hosts(b: SimpleNamespace, *shares_gib: float) -> ResourceClaim:
    """A split over the CPUs of ``len(shares_gib)`` workers (head's share first)."""
    shares = tuple(int(g * b.GIB) for g in shares_gib)
    return ResourceClaim(
        strategy="multi_worker",
        host_memory_bytes=shares[0],
        worker_host_memory_bytes=shares,
        total_layers=33,
        offloaded_layers=16,
    )


def test_a_model_too_large_for_any_one_host_spreads_over_the_cpus_of_two_workers(b: SimpleNamespace) -> None:
    est = b.estimate(ResourceClaim(strategy="cpu_only", host_memory_bytes=60 * b.GIB), _over_hosts(b, 34, 30))
    # 48 GiB free on each (64 total, 16 used): neither holds 60, each holds its share
    workers = [b.worker(n, memory_total_bytes=64 * b.GIB) for n in ("w1", "w2", "w3")]
    workers[2] = b.worker("w3", memory_total_bytes=40 * b.GIB)  # 24 GiB free: too small for a share
    refused = Scheduler().schedule(b.deployment(), est, workers)
    assert refused.placement is None
    assert any("does not allow multi-worker" in n for n in refused.explanation.notes)
    placed = Scheduler().schedule(b.deployment(allow_multi_worker=True), est, workers)
    assert placed.placement is not None
    assert (placed.placement.worker, placed.placement.subordinate_workers) == ("w1", ("w2",))
    assert placed.placement.devices == ()
    assert placed.placement.claimed_host_memory_bytes == {"w1": 34 * b.GIB, "w2": 30 * b.GIB}
    assert placed.explanation.summary.startswith(
        "placed replica 0 of 'app' on w1+w2 (several workers, the CPUs"
    )
    # the claims are counted on both workers: a second replica finds no room
    state = ClusterState(workers)
    state.add(placed.placement)
    assert state.host_free == [14 * b.GIB, 18 * b.GIB, 24 * b.GIB]
    second = Scheduler().schedule_in(state, b.deployment(allow_multi_worker=True), est, 1)
    assert second.placement is None
    assert "needs 2 workers with 30.0 GiB host memory free" in "\n".join(second.explanation.lines())
    # CPU use is what allow_cpu_offload governs
    no_cpu = Scheduler().schedule(
        b.deployment(allow_multi_worker=True, allow_cpu_offload=False), est, workers
    )
    assert no_cpu.placement is None


def test_one_host_that_holds_the_model_wins_over_a_split_across_hosts(b: SimpleNamespace) -> None:
    est = b.estimate(_over_hosts(b, 34, 30), ResourceClaim(strategy="cpu_only", host_memory_bytes=60 * b.GIB))
    workers = [b.worker("w1", memory_total_bytes=64 * b.GIB), b.worker("w2")]  # w2: 240 GiB free
    placed = Scheduler().schedule(b.deployment(allow_multi_worker=True), est, workers)
    assert placed.placement is not None
    assert (placed.placement.claim.strategy, placed.placement.worker) == ("cpu_only", "w2")


def test_a_split_over_cpus_needs_an_engine_that_runs_on_the_cpu(b: SimpleNamespace) -> None:
    from gpustack_core.types import EngineCapabilities, ModelCategory, ModelFormat

    caps = EngineCapabilities(
        formats=(ModelFormat.GGUF,), categories=(ModelCategory.LLM,), vendors=("nvidia",), multi_worker=True
    )
    est = b.estimate(_over_hosts(b, 34, 30))
    workers = [b.worker(n, memory_total_bytes=64 * b.GIB) for n in ("w1", "w2")]
    refused = Scheduler().schedule(
        b.deployment(allow_multi_worker=True), est, workers, engine_capabilities=caps
    )
    assert refused.placement is None
    assert any("does not run on the CPU" in n for n in refused.explanation.notes)


def test_partial_offload_then_cpu_only(b: SimpleNamespace) -> None:
    offload = ResourceClaim(
        strategy="partial_offload", devices=b.one_gpu(20).devices, host_memory_bytes=30 * b.GIB
    )
    cpu = ResourceClaim(strategy="cpu_only", host_memory_bytes=50 * b.GIB)
    est = b.estimate(b.one_gpu(60), offload, cpu)
    gpu_worker = b.worker("w1", b.device(0, 24))
    result = Scheduler().schedule(b.deployment(), est, [gpu_worker])
    assert result.placement is not None
    assert result.placement.claim.strategy == "partial_offload"
    assert result.placement.claimed_host_memory_bytes == {"w1": 30 * b.GIB}
    cpu_worker = b.worker("w2")
    result = Scheduler().schedule(b.deployment(), est, [cpu_worker])
    assert result.placement is not None
    assert result.placement.claim.strategy == "cpu_only"
    assert result.placement.devices == ()
    refused = Scheduler().schedule(b.deployment(allow_cpu_offload=False), est, [cpu_worker])
    assert refused.placement is None


def test_replicas_spread_across_workers_and_binpack_packs(b: SimpleNamespace) -> None:
    workers = [b.worker(f"w{i}", b.device(0, 80), b.device(1, 80)) for i in range(3)]
    est = b.estimate(b.one_gpu(10))
    spread = Scheduler().schedule_replicas(b.deployment(replicas=3), est, workers)
    assert sorted(r.placement.worker for r in spread if r.placement) == ["w0", "w1", "w2"]
    packed = Scheduler().schedule_replicas(
        b.deployment(replicas=3, placement_strategy="binpack"), est, workers
    )
    refs = [str(r.placement.devices[0]) for r in packed if r.placement]
    assert refs == ["w0:cuda:0", "w0:cuda:0", "w0:cuda:0"]


def test_schedule_replicas_fills_missing_indices_and_stops_at_first_failure(b: SimpleNamespace) -> None:
    workers = [b.worker("w1", b.device(0, 80))]
    existing = [b.placement("app", 1, "w1", 0, 30)]
    results = Scheduler().schedule_replicas(
        b.deployment(replicas=4), b.estimate(b.one_gpu(30)), workers, existing
    )
    assert [(r.replica, r.placed) for r in results] == [(0, True), (2, False)]


def test_unplaceable_explanation_names_every_worker_with_numbers(b: SimpleNamespace) -> None:
    workers = [
        b.worker("worker-a", b.device(0, 24, 14.2)),
        b.worker("worker-b", b.device(0, 24, 20), b.device(1, 16, 6.2)),
        b.worker("worker-c", b.device(0, 80), state=WorkerState.NOT_READY),
        b.worker("worker-d", b.device(0, 80), labels={"zone": "x"}, engines=("vllm",)),
        b.worker("worker-e"),
    ]
    result = Scheduler().schedule(b.deployment(), b.estimate(b.one_gpu(14.2)), workers)
    assert result.placement is None
    expl = result.explanation
    by_worker = {r.candidate.split(":")[0]: r for r in expl.rejections}
    assert sorted(by_worker) == ["worker-a", "worker-b", "worker-c", "worker-d", "worker-e"]
    assert by_worker["worker-a"].reason == "needs 14.2 GiB on one GPU; worker-a:cuda:0 has 9.8 GiB free"
    assert by_worker["worker-b"].reason == "needs 14.2 GiB on one GPU; worker-b:cuda:1 has 9.8 GiB free"
    assert by_worker["worker-c"].policy == "worker_ready"
    assert by_worker["worker-d"].reason == "worker-d runs engines vllm; not llama.cpp"
    assert by_worker["worker-e"].reason == "needs 14.2 GiB on one GPU; worker-e has no GPU"
    assert expl.summary == (
        "no worker fits replica 0 of 'app' (of 5 workers; tried: one GPU): 3 workers lack memory, "
        "1 worker cannot run the engine, 1 worker not ready "
        "(best: needs 14.2 GiB on one GPU; worker-a:cuda:0 has 9.8 GiB free)"
    )
    assert expl.candidates_considered == 6


def test_explanation_is_bounded_but_names_every_worker() -> None:
    workers, placements = simulate_cluster(300, seed=3)
    result = Scheduler().schedule(simple_deployment(), simple_estimate(500), workers, placements)
    assert result.placement is None
    lines = result.explanation.lines(max_details=5)
    assert len(lines) <= 12
    text = "\n".join(lines)
    for worker in workers:
        assert worker.name in text
    assert len(result.explanation.rejections) == 300


def test_scale_down_prefers_not_ready_then_crowded_workers(b: SimpleNamespace) -> None:
    workers = [
        b.worker("w1", b.device(0, 80), b.device(1, 80)),
        b.worker("w2", b.device(0, 80)),
        b.worker("w3", b.device(0, 80), state=WorkerState.NOT_READY),
    ]
    placements = [
        b.placement("app", 0, "w1", 0, 10),
        b.placement("app", 1, "w1", 1, 10),
        b.placement("app", 2, "w2", 0, 10),
        b.placement("app", 3, "w3", 0, 10),
        b.placement("other", 0, "w2", 0, 50),
    ]
    victims = Scheduler().scale_down(b.deployment(), placements, workers, 3)
    assert [(v.worker, v.replica) for v in victims] == [("w3", 3), ("w1", 1), ("w2", 2)]
    assert Scheduler().scale_down(b.deployment(), placements, workers, 0) == []
    with pytest.raises(SchedulingError, match="count must be 0 or more"):
        Scheduler().scale_down(b.deployment(), placements, workers, -1)


def test_scale_down_binpack_empties_least_loaded_worker(b: SimpleNamespace) -> None:
    workers = [b.worker("w1", b.device(0, 80)), b.worker("w2", b.device(0, 80))]
    placements = [
        b.placement("app", 0, "w1", 0, 10),
        b.placement("app", 1, "w1", 0, 10),
        b.placement("app", 2, "w2", 0, 10),
    ]
    victims = Scheduler().scale_down(b.deployment(placement_strategy="binpack"), placements, workers, 1)
    assert [(v.worker, v.replica) for v in victims] == [("w2", 2)]


class _NoOddDevices(SchedulerPolicy):
    name = "no_odd_devices"

    def filter(self, candidate: Candidate, context: PolicyContext) -> Rejection | None:
        if any(d.index % 2 for d in candidate.devices):
            return Rejection(
                policy=self.name, candidate=candidate.label, reason="odd devices are for training"
            )
        return None


class _PreferLast(SchedulerPolicy):
    name = "prefer_last"
    weight: ClassVar[float] = 1000.0

    def score(self, candidate: Candidate, context: PolicyContext) -> float | None:
        return float(candidate.worker.name == context.workers[-1].name) * 100.0


def test_third_party_policies_veto_and_score(b: SimpleNamespace) -> None:
    workers = [
        b.worker("w1", b.device(0, 80), b.device(1, 80)),
        b.worker("w2", b.device(0, 80), b.device(1, 80)),
    ]
    est = b.estimate(b.one_gpu(10))
    scheduler = Scheduler([*Scheduler().policies, _NoOddDevices(), _PreferLast()])
    result = scheduler.schedule(b.deployment(), est, workers)
    assert result.placement is not None
    assert str(result.placement.devices[0]) == "w2:cuda:0"
    only_odd = [b.worker("w1", b.device(1, 80))]
    refused = scheduler.schedule(b.deployment(), est, only_odd)
    assert refused.placement is None
    assert refused.explanation.rejections[0].policy == "no_odd_devices"
    assert "1 worker rejected by no_odd_devices" in refused.explanation.summary


def test_fast_path_agrees_with_general_path() -> None:
    workers, placements = simulate_cluster(60, seed=11)
    state = ClusterState(workers, placements)
    fast, general = Scheduler(), Scheduler(fast_path=False)
    for strategy in ("spread", "binpack"):
        dep = simple_deployment(placement_strategy=strategy)
        for gib in (8, 40, 90, 130):
            a = fast.schedule_in(state, dep, simple_estimate(gib), 0)
            c = general.schedule_in(state, dep, simple_estimate(gib), 0)
            assert a.placement == c.placement
            assert a.explanation == c.explanation


def test_from_host_uses_the_builtin_entry_point(clean_plugin_env: None) -> None:
    scheduler = Scheduler.from_host(PluginHost())
    names = [p.name for p in scheduler.policies]
    assert names[:5] == [
        "worker_ready",
        "label_selector",
        "gpu_selector",
        "engine_compatibility",
        "resource_fit",
    ]
    assert {"model_cached", "binpack", "spread"} <= set(names)


def test_invalid_input_is_a_clear_error(b: SimpleNamespace) -> None:
    w = b.worker("w1", b.device(0, 80))
    with pytest.raises(SchedulingError, match="two workers are named 'w1'"):
        Scheduler().schedule(b.deployment(), b.estimate(b.one_gpu(1)), [w, w])
    with pytest.raises(SchedulingError, match="already placed on w1"):
        Scheduler().schedule(
            b.deployment(), b.estimate(b.one_gpu(1)), [w], [b.placement("app", 0, "w1", 0, 1)]
        )
    with pytest.raises(SchedulingError, match="unique, non-empty names"):
        Scheduler([_NoOddDevices(), _NoOddDevices()])


def test_no_workers_and_no_claims(b: SimpleNamespace) -> None:
    empty = Scheduler().schedule(b.deployment(), b.estimate(b.one_gpu(1)), [])
    assert empty.placement is None
    assert "the cluster has no workers" in empty.explanation.summary
    w = b.worker("w1", b.device(0, 80))
    no_claim = Scheduler().schedule(b.deployment(gpus_per_replica=4), b.estimate(b.one_gpu(1)), [w])
    assert no_claim.placement is None
    assert no_claim.explanation.rejections[0].candidate == "w1"
    assert "asks for 4 GPU(s)" in no_claim.explanation.rejections[0].reason


def test_cluster_state_indexes_stay_consistent_as_placements_change() -> None:
    workers, placements = simulate_cluster(40, seed=5)
    state = ClusterState(workers, placements[: len(placements) // 2])
    for p in placements[len(placements) // 2 :]:
        state.add(p)
    state.remove(placements[0].deployment, placements[0].replica)
    for w, devs in enumerate(state.worker_devices):
        frees = [state.dev_free[d] for d in devs]
        if frees:
            assert state.worker_max_free[w] == max(frees)
            assert state.worker_best_device[w] == devs[frees.index(max(frees))]


class _VetoAllPlugin:
    """An in-process scheduler plugin whose policy rejects everything."""

    @hookimpl
    def gpustack_register_scheduler_policies(self, register: Callable[[SchedulerPolicy], None]) -> None:
        register(_NoOddDevices())


class _BrokenPlugin:
    @hookimpl
    def gpustack_register_scheduler_policies(self, register: Callable[[SchedulerPolicy], None]) -> None:
        raise RuntimeError("boom")


def test_host_plugins_are_applied_and_failed_ones_noted(b: SimpleNamespace, clean_plugin_env: None) -> None:
    host = PluginHost(
        plugins=[("scheduler", "veto", _VetoAllPlugin()), ("scheduler", "broken", _BrokenPlugin())]
    )
    scheduler = Scheduler.from_host(host)
    assert "no_odd_devices" in [p.name for p in scheduler.policies]
    result = scheduler.schedule(b.deployment(), b.estimate(b.one_gpu(1)), [b.worker("w1", b.device(1, 80))])
    assert result.placement is None
    assert result.explanation.rejections[0].policy == "no_odd_devices"
    assert any("'broken' failed" in note and "boom" in note for note in result.explanation.notes)
