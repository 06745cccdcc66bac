"""Candidate enumeration: the device sets each claim strategy may use, in index form.

Every worker yields at least one option per claim (an empty device set where it has no usable
device), so that an unplaceable deployment's explanation names every worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice

from gpustack_core.types import ResourceClaim

from ._state import ClusterState, Option
from ._view import DecisionView

__all__ = ["DevicePredicate", "WorkerPredicate", "enumerate_options", "is_single_device"]

#: True when a device index may be used at all (selector, vendor), memory aside.
DevicePredicate = Callable[[int], bool]
#: True when a worker index passes every worker-level built-in filter.
WorkerPredicate = Callable[[int], bool]


def is_single_device(claim: ResourceClaim) -> bool:
    """A claim placed on exactly one device of one worker."""
    return len(claim.devices) == 1 and claim.strategy != "multi_worker"


def _assign(claim: ResourceClaim, chosen_by_free_desc: list[int]) -> tuple[int, ...]:
    """Order devices so that position i gets ``claim.devices[i]``: largest share on most free device."""
    order = sorted(range(len(claim.devices)), key=lambda i: (-claim.devices[i].memory_bytes, i))
    slots: list[int] = [-1] * len(claim.devices)
    for position, device in zip(order, chosen_by_free_desc, strict=False):
        slots[position] = device
    return tuple(d for d in slots if d >= 0)


def _pick_devices(state: ClusterState, usable: list[int], claim: ResourceClaim, binpack: bool) -> list[int]:
    """Choose ``len(claim.devices)`` of ``usable``, most free first (best fit first for binpack)."""
    k = len(claim.devices)
    by_free = sorted(usable, key=lambda d: (-state.dev_free[d], d))
    if not binpack or len(by_free) < k:
        return by_free[:k]
    shares = sorted((s.memory_bytes for s in claim.devices), reverse=True)
    remaining = sorted(usable, key=lambda d: (state.dev_free[d], d))
    chosen: list[int] = []
    for share in shares:
        fit = next((d for d in remaining if state.dev_free[d] >= share), None)
        if fit is None:
            return by_free[:k]
        chosen.append(fit)
        remaining.remove(fit)
    return sorted(chosen, key=lambda d: (-state.dev_free[d], d))


def _multi_device(view: DecisionView, claim: ResourceClaim, device_ok: DevicePredicate) -> Iterator[Option]:
    state = view.state
    binpack = view.deployment.placement_strategy == "binpack"
    for w, devs in enumerate(state.worker_devices):
        groups: dict[str, list[int]] = {}
        for d in devs:
            if device_ok(d):
                groups.setdefault(state.dev_device[d].accelerator, []).append(d)
        if not groups:
            yield Option(w, (), claim)
            continue
        best = max(sorted(groups), key=lambda a: len(groups[a]))
        yield Option(w, _assign(claim, _pick_devices(state, groups[best], claim, binpack)), claim)


def _multi_worker(
    view: DecisionView, claim: ResourceClaim, device_ok: DevicePredicate, worker_ok: WorkerPredicate
) -> Iterator[Option]:
    state = view.state
    k = len(claim.devices)
    need = max((s.memory_bytes for s in claim.devices), default=0)
    tp = claim.tensor_parallel_size
    contribution: dict[int, list[int]] = {}
    for w, devs in enumerate(state.worker_devices):
        if not worker_ok(w):
            continue
        fitting = sorted(
            (d for d in devs if device_ok(d) and state.dev_free[d] >= need),
            key=lambda d: (-state.dev_free[d], d),
        )
        if tp > 1:
            fitting = fitting[:tp] if len(fitting) >= tp else []
        if fitting:
            contribution[w] = fitting
    pool = sorted(contribution, key=lambda w: (-len(contribution[w]), w))
    for w in range(len(state.workers)):
        if w not in contribution:
            yield Option(w, (), claim)
            continue
        chosen = list(contribution[w][:k])
        subs: list[int] = []
        for s in pool:
            if len(chosen) >= k:
                break
            if s == w:
                continue
            chosen.extend(contribution[s][: k - len(chosen)])
            subs.append(s)
        yield Option(w, _assign(claim, chosen) if len(chosen) >= k else tuple(chosen), claim, tuple(subs))


def _multi_worker_hosts(
    view: DecisionView, claim: ResourceClaim, worker_ok: WorkerPredicate
) -> Iterator[Option]:
    """A split over workers' CPUs: per head worker, the subordinates with the most free host
    memory among those that fit the largest subordinate share (ties by name)."""
    state = view.state
    shares = claim.worker_host_memory_bytes
    need = max(shares[1:])
    fitting = sorted(
        (w for w in range(len(state.workers)) if worker_ok(w) and state.host_free[w] >= need),
        key=lambda w: (-state.host_free[w], w),
    )
    for w in range(len(state.workers)):  # the first len(shares) - 1 other than w: O(shares), not O(workers)
        subs = tuple(islice((s for s in fitting if s != w), len(shares) - 1))
        yield Option(w, (), claim, subs)


def enumerate_options(
    view: DecisionView, claim: ResourceClaim, device_ok: DevicePredicate, worker_ok: WorkerPredicate
) -> Iterator[Option]:
    """Every candidate for ``claim``, workers in name order, devices in accelerator/index order.

    One GPU: one option per device. Several GPUs of one worker: one option per worker (the devices
    chosen by free memory among those ``device_ok`` accepts). Several workers: one option per head
    worker, subordinates taken greedily from the workers with the most fitting devices. No devices
    (CPU only): one option per worker; over several workers' CPUs, one per head worker with the
    subordinates that have the most free host memory.
    """
    state = view.state
    if claim.spans_worker_hosts:
        yield from _multi_worker_hosts(view, claim, worker_ok)
    elif not claim.devices:
        for w in range(len(state.workers)):
            yield Option(w, (), claim)
    elif claim.strategy == "multi_worker":
        yield from _multi_worker(view, claim, device_ok, worker_ok)
    elif len(claim.devices) == 1:
        for w, devs in enumerate(state.worker_devices):
            if not devs:
                yield Option(w, (), claim)
            for d in devs:
                yield Option(w, (d,), claim)
    else:
        yield from _multi_device(view, claim, device_ok)
