"""Free-memory indexes that let a one-GPU decision skip the O(workers) scan.

A :class:`FreeIndex` covers the workers that pass one set of worker-level filters (the key of
``ClusterState.eligible_cache``), grouped by the allocatable memory of their devices (every device
of a worker has the same; the fast path requires it). Each group keeps two sorted lists:

- workers by their most free device, ``(max free, -worker)``: spread picks the worker whose best
  device ends up least used, which within one group is the one with the most free memory;
- devices by free memory, ``(free, device)``: binpack picks the device that ends up fullest,
  which within one group is the one with the least free memory that still fits.

Scores are monotone in free memory within a group, so the best of a group is found by walking
one list from the right end; rounding can make neighbours score equal, so the walk continues
while the score stays equal and keeps the first worker, exactly as the linear scan does. Workers
whose score has another term (replicas of this deployment, the model cached) are few and scored
one by one. :class:`ClusterState` keeps the lists current on every :meth:`ClusterState.add` and
:meth:`ClusterState.remove`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._state import ClusterState

__all__ = ["FreeIndex"]


class _Group:
    __slots__ = ("alloc", "devices", "workers")

    def __init__(self, alloc: int) -> None:
        self.alloc = alloc
        self.workers: list[tuple[int, int]] = []  # (max free, -worker), ascending
        self.devices: list[tuple[int, int]] | None = None  # (free, device), built on first binpack use


def _remove(items: list[tuple[int, int]], item: tuple[int, int]) -> None:
    i = bisect_left(items, item)
    if i < len(items) and items[i] == item:
        del items[i]


class FreeIndex:
    """Sorted free memory of one eligible set of workers (see the module docstring)."""

    def __init__(self, state: ClusterState, workers: Iterable[int]) -> None:
        self.state = state
        self.member = bytearray(len(state.workers))
        self.groups: dict[int, _Group] = {}
        self.group_of: dict[int, _Group] = {}
        for w in workers:
            devs = state.worker_devices[w]
            if not devs:
                continue
            self.member[w] = 1
            alloc = state.dev_alloc[devs.start]
            group = self.groups.get(alloc)
            if group is None:
                group = self.groups[alloc] = _Group(alloc)
            self.group_of[w] = group
            group.workers.append((state.worker_max_free[w], -w))
        for group in self.groups.values():
            group.workers.sort()

    def _device_list(self, group: _Group) -> list[tuple[int, int]]:
        if group.devices is None:
            state = self.state
            lists: dict[int, list[tuple[int, int]]] = {alloc: [] for alloc in self.groups}
            for w, g in self.group_of.items():
                items = lists[g.alloc]
                for d in state.worker_devices[w]:
                    items.append((state.dev_free[d], d))
            for alloc, items in lists.items():
                items.sort()
                self.groups[alloc].devices = items
        assert group.devices is not None
        return group.devices

    def changed(self, w: int, d: int, old_free: int, old_max: int) -> None:
        """Device ``d`` of worker ``w`` went from ``old_free`` (worker max ``old_max``) to now."""
        if not self.member[w]:
            return
        state = self.state
        group = self.group_of[w]
        new_max = state.worker_max_free[w]
        if new_max != old_max:
            _remove(group.workers, (old_max, -w))
            insort(group.workers, (new_max, -w))
        new_free = state.dev_free[d]
        if group.devices is not None and new_free != old_free:
            _remove(group.devices, (old_free, d))
            insort(group.devices, (new_free, d))

    def usable(self) -> bool:
        """Scores are monotone in free memory only where allocatable memory is positive."""
        return all(alloc > 0 for alloc in self.groups)

    def best_spread(
        self,
        need: int,
        skip: Callable[[int], bool],
        score: Callable[[int, int], float],
    ) -> tuple[float, int] | None:
        """Highest ``score(worker, device)`` among members not ``skip``ped; first worker on ties.

        ``score`` must decrease (weakly) as the worker's most free device has less free memory.
        """
        state = self.state
        best: tuple[float, int] | None = None
        for group in self.groups.values():
            items = group.workers
            i = len(items) - 1
            found: tuple[float, int] | None = None
            while i >= 0:
                free, neg_w = items[i]
                if free < need:
                    break
                w = -neg_w
                if skip(w):
                    i -= 1
                    continue
                s = score(w, state.worker_best_device[w])
                if found is not None and s < found[0]:
                    break
                if found is None or w < found[1]:
                    found = (s, w)
                # a run of equal free memory scores equal and its last entry is its first worker
                i = bisect_left(items, (free, -(1 << 62))) - 1
            if found is not None and (
                best is None or found[0] > best[0] or (found[0] == best[0] and found[1] < best[1])
            ):
                best = found
        return best

    def best_binpack(
        self,
        need: int,
        skip: Callable[[int], bool],
        score: Callable[[int, int], float],
    ) -> tuple[float, int, int] | None:
        """Highest ``score(worker, device)`` over fitting devices of members; first worker on ties.

        ``score`` must decrease (weakly) as the device has more free memory. Returns
        ``(score, worker, device)``, the device being the worker's first one with the least free
        memory that fits.
        """
        state = self.state
        dev_worker = state.dev_worker
        best: tuple[float, int, int] | None = None
        for group in self.groups.values():
            items = self._device_list(group)
            i = bisect_left(items, (need, -1))
            found: tuple[float, int, int] | None = None
            seen: set[int] = set()
            while i < len(items):
                free, d = items[i]
                w = dev_worker[d]
                i += 1
                if w in seen or not self.member[w] or skip(w):
                    continue
                seen.add(w)  # a worker's first fitting device in this order is its pick
                s = score(w, d)
                if found is not None and s < found[0]:
                    break
                if found is None or w < found[1]:
                    found = (s, w, d)
                # a run of equal free memory scores equal; devices follow worker order in it
                i = bisect_right(items, (free, 1 << 62))
            if found is not None and (
                best is None or found[0] > best[0] or (found[0] == best[0] and found[1] < best[1])
            ):
                best = found
        return best
