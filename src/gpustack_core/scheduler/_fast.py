"""The specialised one-GPU decision: built-in policies inlined over flat arrays.

Used only when every policy is a built-in one; ``Scheduler(fast_path=False)`` runs the general path
instead, and a property test checks that both give the same placements and explanations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from gpustack_core.contracts import SchedulerPolicy
from gpustack_core.types import ResourceClaim

from ._index import FreeIndex
from ._state import Option
from ._view import DecisionView
from .policies import (
    Binpack,
    BuiltinPolicy,
    EngineCompatibility,
    GpuSelector,
    LabelSelector,
    ModelCached,
    ResourceFit,
    Spread,
    WorkerReady,
    usage_after,
)

__all__ = ["fast_single"]


def _indexed(
    view: DecisionView, claim: ResourceClaim, index: FreeIndex, codes: list[tuple[int, float]], mode: str
) -> tuple[Option, float] | None:
    """The decision of the scan below, found through ``index`` (same scores, same tie-breaks).

    Workers with a score term beyond free memory (the model cached there; for spread, replicas of
    this deployment there) are scored one by one; the others come from the sorted lists.
    """
    state = view.state
    need = claim.devices[0].memory_bytes
    host_need = claim.host_memory_bytes
    free, alloc, host_free, workers = state.dev_free, state.dev_alloc, state.host_free, state.workers
    replicas = state.replicas.get(view.deployment.name, {})
    keys = view.cached_keys
    special: set[int] = set()
    if any(code == 0 for code, _ in codes):
        special.update(_cached_workers(view))
    if mode == "spread":
        special.update(w for w, count in replicas.items() if count)
    member = index.member

    def score(w: int, d: int) -> float:
        a, f = alloc[d], free[d]
        u = (a - f + need) / a
        total = 0.0
        for code, weight in codes:
            if code == 0:
                cached = workers[w].cached_models
                total += weight * (100.0 if cached and any(k in keys for k in cached) else 0.0)
            elif code == 1:
                total += weight * (100.0 * u)
            else:
                total += weight * (100.0 * (1.0 - u) / (1 + replicas.get(w, 0)))
        return total

    def host_short(w: int) -> bool:
        return host_need > 0 and host_free[w] < host_need

    def skip(w: int) -> bool:
        return w in special or host_short(w)

    best: tuple[float, int, int] | None = None
    for w in sorted(special):
        if not member[w] or state.worker_max_free[w] < need or host_short(w):
            continue
        if mode == "spread":
            d = state.worker_best_device[w]
        else:
            d = -1
            for e in state.worker_devices[w]:
                if free[e] >= need and (d < 0 or free[e] < free[d]):
                    d = e
        s = score(w, d)
        if best is None or s > best[0]:
            best = (s, w, d)
    if mode == "spread":
        found = index.best_spread(need, skip, score)
        other = None if found is None else (found[0], found[1], state.worker_best_device[found[1]])
    else:
        other = index.best_binpack(need, skip, score)
    if other is not None and (
        best is None or other[0] > best[0] or (other[0] == best[0] and other[1] < best[1])
    ):
        best = other
    if best is None:
        return None
    return Option(best[1], (best[2],), claim), best[0]


def _eligible_workers(
    view: DecisionView,
    claim: ResourceClaim,
    check_ready: bool,
    worker_checks: list[BuiltinPolicy],
    engine: EngineCompatibility | None,
    check_selected: bool,
) -> tuple[object | None, list[int]]:
    """Workers with devices that pass the worker-level filters (ready, labels, engine, selector).

    Returns the key they are cached under (None when not cacheable) and the workers.

    These depend only on the workers (fixed for a state) and a few deployment fields, so the list is
    kept in ``state.eligible_cache`` under those fields when only built-in worker filters are active.
    """
    state = view.state
    deployment = view.deployment
    cacheable = all(type(p) is LabelSelector for p in worker_checks)
    key = (
        check_ready,
        deployment.label_selector if worker_checks else (),
        deployment.engine if engine is not None else None,
        view.selected_workers if check_selected else None,
    )
    if cacheable and key in state.eligible_cache:
        return key, state.eligible_cache[key]
    eligible: list[int] = []
    for w, devs in enumerate(state.worker_devices):
        if not devs or (check_ready and not state.worker_ready[w]):
            continue
        if worker_checks and any(p.check(view, Option(w, (), claim)) is not None for p in worker_checks):
            continue
        if engine is not None and engine.check_worker(view, w) is not None:
            continue
        if check_selected and state.workers[w].name not in view.selected_workers:
            continue
        eligible.append(w)
    if cacheable:
        state.eligible_cache[key] = eligible
    return (key if cacheable else None), eligible


def _cached_workers(view: DecisionView) -> frozenset[int]:
    """Workers listing the deployment's model in ``cached_models`` (kept per state and model)."""
    state = view.state
    key = ("cached", view.cached_keys)
    found = state.eligible_cache.get(key)
    if found is None:
        found = [
            w
            for w, worker in enumerate(state.workers)
            if any(k in view.cached_keys for k in worker.cached_models)
        ]
        state.eligible_cache[key] = found
    return frozenset(found)


def fast_single(
    view: DecisionView,
    claim: ResourceClaim,
    builtin_filters: Sequence[BuiltinPolicy],
    scorers: Sequence[SchedulerPolicy],
) -> tuple[tuple[Option, float] | None, int]:
    """One-GPU decision over flat arrays; only built-in policies are present.

    Equivalent to ``Scheduler._general`` (a property test checks it): the same filters inlined, and
    per worker only the best device is scored, since the other score terms are per worker.
    """
    state = view.state
    need = claim.devices[0].memory_bytes
    host_need = claim.host_memory_bytes
    active = [p for p in builtin_filters if p.active(view)]
    check_ready = any(type(p) is WorkerReady for p in active)
    worker_checks = [p for p in active if p.worker_level and type(p) is not WorkerReady]
    engine = next((p for p in active if isinstance(p, EngineCompatibility)), None)
    vendors = engine.allowed_vendors(view) if engine is not None else None
    gpu = next((p for p in active if isinstance(p, GpuSelector)), None)
    selected = view.selected_refs if gpu is not None and view.selected_refs else None
    fit = any(isinstance(p, ResourceFit) for p in active)
    strategy = view.deployment.placement_strategy
    replicas = state.replicas.get(view.deployment.name, {})
    keys = view.cached_keys
    free, alloc, max_free = state.dev_free, state.dev_alloc, state.worker_max_free
    best_device, uniform, workers = state.worker_best_device, state.worker_uniform_alloc, state.workers
    # score terms in policy order, as _score sums them (0: cached, 1: binpack, 2: spread)
    codes: list[tuple[int, float]] = []
    for p in scorers:
        kind = type(p)
        if kind is ModelCached:
            codes.append((0, p.weight))
        elif kind is Binpack and strategy == "binpack":
            codes.append((1, p.weight))
        elif kind is Spread and strategy == "spread":
            codes.append((2, p.weight))
    active_codes = {code for code, _ in codes}
    mode = "binpack" if 1 in active_codes else "spread" if 2 in active_codes else ""
    unfiltered = selected is None and vendors is None
    best: Option | None = None
    best_score = -math.inf
    worker_devices = state.worker_devices
    key, eligible = _eligible_workers(view, claim, check_ready, worker_checks, engine, selected is not None)
    if (
        key is not None
        and mode
        and unfiltered
        and fit
        and state.all_uniform_alloc
        and all(weight > 0 for code, weight in codes if code)
    ):
        index = state.free_index(key, eligible)
        if index is not None and index.usable():
            found = _indexed(view, claim, index, codes, mode)
            return found, state.single_option_count
    if (
        mode == "spread"
        and unfiltered
        and fit
        and all(uniform)
        and codes in ([(0, 0.5), (2, 1.0)], [(2, 1.0)])
    ):
        # The default pipeline (model_cached then spread, default weights): one tight loop.
        cached_set = _cached_workers(view) if codes[0][0] == 0 else frozenset()
        host_free = state.host_free
        for w in eligible:
            if max_free[w] < need or (host_need > 0 and host_free[w] < host_need):
                continue
            d = best_device[w]
            a, f = alloc[d], free[d]
            u = (a - f + need) / a if a > 0 else usage_after(a, f, need)
            # the same float operations as _score: 0.0 + 0.5 * cached, then + 1.0 * spread
            score = (0.0 + 0.5 * (100.0 if w in cached_set else 0.0)) if codes[0][0] == 0 else 0.0
            score += 1.0 * (100.0 * (1.0 - u) / (1 + replicas.get(w, 0)))
            if score > best_score:
                best, best_score = Option(w, (d,), claim), score
        return (None if best is None else (best, best_score)), state.single_option_count
    for w in eligible:
        devs = worker_devices[w]
        if fit and (max_free[w] < need or (host_need > 0 and state.host_free[w] < host_need)):
            continue
        pick = -1
        pick_usage = 0.0
        if mode == "spread" and unfiltered and uniform[w]:
            # equal allocatable memory: least usage after placing = most free (first on ties)
            pick = best_device[w]
            f, a = free[pick], alloc[pick]
            if fit and f < need:
                continue
            pick_usage = (a - f + need) / a if fit and a > 0 else usage_after(a, f, need)
        elif mode == "binpack" and unfiltered and uniform[w] and fit:
            # equal allocatable memory: most usage after placing = least free that fits (first on ties)
            pick_free = 0
            for d in devs:
                f = free[d]
                if f >= need and (pick < 0 or f < pick_free):
                    pick, pick_free = d, f
            if pick < 0:
                continue
            a = alloc[pick]
            pick_usage = (a - pick_free + need) / a if a > 0 else usage_after(a, pick_free, need)
        else:
            for d in devs:
                if selected is not None and state.dev_ref[d] not in selected:
                    continue
                if vendors is not None and state.dev_vendor[d] not in vendors:
                    continue
                f = free[d]
                if fit and f < need:
                    continue
                a = alloc[d]
                u = (a - f + need) / a if fit and a > 0 else usage_after(a, f, need)
                if (
                    pick < 0
                    or (mode == "binpack" and u > pick_usage)
                    or (mode == "spread" and u < pick_usage)
                ):
                    pick, pick_usage = d, u
                    if not mode:
                        break
            if pick < 0:
                continue
        # the same float operations as cached_value, binpack_value and spread_value
        score = 0.0
        for code, weight in codes:
            if code == 0:
                cached = workers[w].cached_models
                score += weight * (100.0 if cached and any(k in keys for k in cached) else 0.0)
            elif code == 1:
                score += weight * (100.0 * pick_usage)
            else:
                score += weight * (100.0 * (1.0 - pick_usage) / (1 + replicas.get(w, 0)))
        if score > best_score:
            best, best_score = Option(w, (pick,), claim), score
    considered = state.single_option_count
    return (None if best is None else (best, best_score)), considered
