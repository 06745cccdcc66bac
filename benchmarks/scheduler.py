"""Scheduler benchmark: decisions on simulated clusters of 10 to 10,000 workers x 8 GPUs.

``python -m benchmarks scheduler [-- --sizes 10,100,1000,10000 --decisions 200]``

Clusters mix five device kinds of three vendors (NVIDIA, AMD, Ascend), about half of the devices
hold an existing placement, 10 % report memory used by foreign processes and 2 % of the workers are
not ready (see :func:`gpustack_core.scheduler.simulate.simulate_cluster`). Rows:

- ``one-GPU (state kept)``: a server keeps a :class:`ClusterState` and adds each new placement
  to it; time per ``schedule_in`` decision, and placements per second including ``state.add``.
- ``one-GPU binpack (state kept)``: the same with ``placement_strategy='binpack'``.
- ``... scan (no index)``: the same on a state made with ``free_index=False``: every decision scans
  the eligible workers in Python, O(workers), as before the index existed (same run, for ratios).
- ``... first 2 decisions``: the first two decisions on a kept state: the first filters the workers
  and scans them, the second builds the free-memory index (:mod:`gpustack_core.scheduler._index`)
  that later decisions reuse (a state used for one decision never builds it).
- ``one-GPU (from scratch)``: ``Scheduler.schedule(...)`` with plain lists (indexes the cluster
  on every call).
- ``4 GPUs tp=4 (state kept)``: a model too large for one GPU, placed on 4 GPUs of one worker.
- ``unplaceable + explanation``: a model that fits nowhere; time to build the full explanation.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Protocol

from gpustack_core.scheduler import ClusterState, Scheduler
from gpustack_core.scheduler.simulate import simple_deployment, simple_estimate, simulate_cluster
from gpustack_core.types import Placement

__all__ = ["main"]


class _Row(Protocol):
    def __call__(
        self, workers: int, scenario: str, samples: list[float], cpu: list[float], total: float, placed: int
    ) -> None: ...


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _run(
    decide: Callable[[int], Placement | None], count: int
) -> tuple[list[float], list[float], float, int]:
    samples: list[float] = []
    cpu: list[float] = []
    placed = 0
    start = time.perf_counter()
    for i in range(count):
        t0, c0 = time.perf_counter(), time.process_time()
        placement = decide(i)
        samples.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        placed += placement is not None
    return samples, cpu, time.perf_counter() - start, placed


def _bench_size(
    size: int, gpus: int, decisions: int, scheduler: Scheduler, row: _Row, one_gpu_only: bool = False
) -> None:
    """All scenarios for one cluster size."""
    workers, placements = simulate_cluster(size, gpus, seed=size)
    n = decisions if size < 10_000 else max(20, decisions // 5)
    t0, c0 = time.perf_counter(), time.process_time()
    ClusterState(workers, placements)
    build, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    row(size, "index cluster (ClusterState)", [build], [build_cpu], build, 0)

    for strategy, indexed in (("spread", False), ("spread", True), ("binpack", False), ("binpack", True)):
        state = ClusterState(workers, placements, free_index=indexed)
        dep = simple_deployment(f"bench-{strategy}", placement_strategy=strategy)
        est = simple_estimate(20)

        def kept(
            i: int, state: ClusterState = state, dep: object = dep, est: object = est
        ) -> Placement | None:
            result = scheduler.schedule_in(state, dep, est, i)  # type: ignore[arg-type]
            if result.placement is not None:
                state.add(result.placement)
            return result.placement

        label = "one-GPU (state kept)" if strategy == "spread" else "one-GPU binpack (state kept)"
        if not indexed:
            row(size, f"{label[:-13]} scan (no index)", *_run(kept, n))
            continue
        # the first decision on a kept state filters the workers (and scans them), the second builds
        # the free-memory index that later decisions reuse
        row(size, f"{label[:-13]} first 2 decisions", *_run(lambda i, kept=kept: kept(n + i), 2))
        row(size, label, *_run(kept, n))
    if one_gpu_only:
        return

    dep = simple_deployment("bench-scratch")
    est = simple_estimate(20)
    row(
        size,
        "one-GPU (from scratch)",
        *_run(lambda i: scheduler.schedule(dep, est, workers, placements, i).placement, max(5, n // 10)),
    )

    state = ClusterState(workers, placements)
    big = simple_deployment("bench-tp4")
    big_est = simple_estimate(400, tp_sizes=(4,))

    def tp4(i: int) -> Placement | None:
        result = scheduler.schedule_in(state, big, big_est, i)
        if result.placement is not None:
            state.add(result.placement)
        return result.placement

    row(size, "4 GPUs tp=4 (state kept)", *_run(tp4, max(5, n // 4)))

    state = ClusterState(workers, placements)
    huge = simple_deployment("bench-huge")
    huge_est = simple_estimate(1000)
    row(
        size,
        "unplaceable + explanation",
        *_run(lambda i: scheduler.schedule_in(state, huge, huge_est, i).placement, 3),
    )


def main(argv: list[str]) -> None:
    """Print one table row per cluster size and scenario."""
    parser = argparse.ArgumentParser(prog="benchmarks scheduler", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000", help="worker counts, comma-separated")
    parser.add_argument("--decisions", type=int, default=200, help="decisions per scenario (fewer at 10,000)")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs per worker")
    parser.add_argument(
        "--one-gpu-only", action="store_true", help="only the kept-state one-GPU rows (skip the slow ones)"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    scheduler = Scheduler()
    header = (
        f"| {'workers':>7} | {'GPUs':>6} | {'scenario':<30} | {'n':>4} | {'p50 ms':>8} | {'p99 ms':>8} "
        f"| {'CPU p50 ms':>10} | {'placements/s':>12} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")

    def row(
        workers: int, scenario: str, samples: list[float], cpu: list[float], total: float, placed: int
    ) -> None:
        rate = f"{placed / total:,.0f}" if placed else "-"
        print(
            f"| {workers:>7,} | {workers * args.gpus:>6,} | {scenario:<30} | {len(samples):>4} | "
            f"{_percentile(samples, 0.5) * 1e3:>8.2f} | {_percentile(samples, 0.99) * 1e3:>8.2f} | "
            f"{_percentile(cpu, 0.5) * 1e3:>10.2f} | {rate:>12} |",
            flush=True,
        )

    for size in sizes:
        _bench_size(size, args.gpus, args.decisions, scheduler, row, args.one_gpu_only)
