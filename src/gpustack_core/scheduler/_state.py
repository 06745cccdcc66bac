"""The cluster as the scheduler counts it: flat per-device arrays of allocatable and free memory.

Free memory of a device (bytes)::

    allocatable = total - worker.reserved_device_memory_bytes
    claimed     = sum of what our placements claim on the device
    reported    = device.memory_used_bytes            (None: unknown -> 0)
    managed     = worker.managed_device_memory_used_bytes[ref]   (unknown -> not used)

    if managed is known:   foreign = max(0, reported - managed)
                           free = allocatable - foreign - max(claimed, managed)
    else:                  free = allocatable - max(reported, claimed)

``reported`` includes our own running engines, so it cannot simply be added to ``claimed`` (that
would count a running engine twice). Without per-process accounting the scheduler takes the larger of
the two. With per-process accounting (``managed``) foreign use is known and always subtracted.

The report is a snapshot taken with the placements given at construction. Placements added later
(:meth:`ClusterState.add`, e.g. the replicas one ``schedule_replicas`` call makes) subtract in full:
``free_now = free_at_snapshot - added_claims``, so a run of decisions can never hand out foreign
memory that the snapshot showed. Removing a placement releases its claim only down to the reported
use (the engine may still run until the next report). Internally, both cases are one formula,
``free = allocatable - max(floor, base + claimed)``, with ``floor`` the reported use and ``base``
fixed at construction to ``max(floor, foreign + existing claims) - existing claims``. Host memory is
counted the same way, per worker, from ``memory_total_bytes``, ``memory_used_bytes`` and
``reserved_memory_bytes``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpustack_core.errors import SchedulingError
from gpustack_core.types import WorkerState

from ._index import FreeIndex

if TYPE_CHECKING:
    from gpustack_core.types import Device, Placement, ResourceClaim, WorkerInfo


__all__ = ["ClusterState", "Option", "format_gib"]

logger = logging.getLogger(__name__)


def format_gib(value: int) -> str:
    """Bytes as ``"14.2 GiB"`` (negative values print as 0.0 GiB: nothing is free)."""
    return f"{max(value, 0) / 2**30:.1f} GiB"


@dataclass(frozen=True, slots=True)
class Option:
    """A candidate in index form: worker index, device indices (any worker's) and the claim."""

    worker: int
    devices: tuple[int, ...]
    claim: ResourceClaim
    subordinates: tuple[int, ...] = ()


class ClusterState:
    """Workers, devices and existing placements, indexed for fast scheduling decisions.

    Build one per decision, or keep one and update it with :meth:`add` and :meth:`remove` as
    placements change (rebuild it when workers change). Workers are ordered by name and devices by
    accelerator and index, which fixes every tie-break. Devices of type ``cpu`` are the host itself
    and are represented by host memory, not listed as devices.
    """

    def __init__(
        self, workers: Sequence[WorkerInfo], placements: Iterable[Placement] = (), *, free_index: bool = True
    ) -> None:
        """Index ``workers`` and count ``placements``.

        ``free_index=False`` turns off the free-memory index of repeated one-GPU decisions (every
        decision scans the eligible workers, as before the index existed; for comparisons).

        Raises:
            SchedulingError: two workers share a name, or two placements share a deployment and replica.
        """
        ordered = sorted(workers, key=lambda w: w.name)
        for a, b in itertools.pairwise(ordered):
            if a.name == b.name:
                raise SchedulingError(f"two workers are named {a.name!r}; worker names must be unique")
        self.workers: tuple[WorkerInfo, ...] = tuple(ordered)
        self.worker_index: dict[str, int] = {w.name: i for i, w in enumerate(ordered)}
        #: some worker reports the engines it can run
        self.any_engines: bool = any(w.engines for w in ordered)
        self.worker_ready: list[bool] = [w.state == WorkerState.READY for w in ordered]
        self.worker_devices: list[range] = []
        self.dev_worker: list[int] = []
        self.dev_device: list[Device] = []
        self.dev_ref: list[str] = []
        self.dev_vendor: list[str] = []
        self.dev_alloc: list[int] = []
        self.dev_floor: list[int] = []
        self.dev_base: list[int] = []
        self.dev_claimed: list[int] = []
        self.dev_free: list[int] = []
        self.dev_index: dict[str, int] = {}
        #: most free memory on one device of the worker (0 without devices)
        self.worker_max_free: list[int] = []
        #: first device of the worker with the most free memory (-1 without devices)
        self.worker_best_device: list[int] = []
        #: all devices of the worker have the same allocatable memory
        self.worker_uniform_alloc: list[bool] = []
        self.host_alloc: list[int] = []
        self.host_floor: list[int] = []
        self.host_base: list[int] = []
        self.host_claimed: list[int] = []
        self.host_free: list[int] = []
        for w, worker in enumerate(ordered):
            start = len(self.dev_device)
            reserve = worker.reserved_device_memory_bytes
            managed_map = worker.managed_device_memory_used_bytes
            devices = sorted(
                (d for d in worker.devices if d.device_type != "cpu"), key=lambda d: (d.accelerator, d.index)
            )
            for device in devices:
                ref = f"{worker.name}:{device.accelerator}:{device.index}"
                if ref in self.dev_index:
                    raise SchedulingError(f"worker {worker.name!r} reports device {ref} twice")
                reported = device.memory_used_bytes or 0
                managed = managed_map.get(ref)
                if managed is None:
                    floor, base = reported, 0
                else:
                    foreign = max(0, reported - managed)
                    floor, base = foreign + managed, foreign
                alloc = max(0, device.memory_total_bytes - reserve)
                self.dev_index[ref] = len(self.dev_device)
                self.dev_worker.append(w)
                self.dev_device.append(device)
                self.dev_ref.append(ref)
                self.dev_vendor.append(device.vendor)
                self.dev_alloc.append(alloc)
                self.dev_floor.append(floor)
                self.dev_base.append(base)
                self.dev_claimed.append(0)
                self.dev_free.append(alloc - floor)
            self.worker_devices.append(range(start, len(self.dev_device)))
            self.worker_max_free.append(max(self.dev_free[start:], default=0))
            self.worker_best_device.append(self._first_max(start, len(self.dev_device)))
            self.worker_uniform_alloc.append(len(set(self.dev_alloc[start:])) <= 1)
            host_alloc = max(0, worker.memory_total_bytes - worker.reserved_memory_bytes)
            self.host_alloc.append(host_alloc)
            self.host_floor.append(worker.memory_used_bytes)
            self.host_base.append(0)
            self.host_claimed.append(0)
            self.host_free.append(host_alloc - worker.memory_used_bytes)
        self.placements: dict[tuple[str, int], Placement] = {}
        #: worker-level filter results by deployment fields (workers never change within a state)
        self.eligible_cache: dict[object, list[int]] = {}
        #: sorted free memory of the workers of an ``eligible_cache`` entry (same key), kept current
        self.free_indexes: dict[object, FreeIndex] = {}
        self._index_requested: set[object] = set()
        self._use_free_index = free_index
        #: deployment name -> worker index -> replicas of it (head or subordinate) on that worker
        self.replicas: dict[str, dict[int, int]] = {}
        #: every worker's devices have equal allocatable memory
        self.all_uniform_alloc: bool = all(self.worker_uniform_alloc)
        self._bulk = True
        for placement in placements:
            self.add(placement)
        self._bulk = False
        for w in range(len(ordered)):
            self._reindex_worker(w)
        # The report is a snapshot: whatever it shows beyond the existing claims stays taken, and
        # every placement added from now on subtracts in full.
        for d, claimed in enumerate(self.dev_claimed):
            self.dev_base[d] = max(self.dev_floor[d], self.dev_base[d] + claimed) - claimed
        #: options a one-GPU claim has: one per device, one per worker without devices
        self.single_option_count: int = sum(len(devs) or 1 for devs in self.worker_devices)
        for w, claimed in enumerate(self.host_claimed):
            self.host_base[w] = max(self.host_floor[w], claimed) - claimed

    # ------------------------------------------------------------------ memory

    def _reindex_worker(self, w: int) -> None:
        devs = self.worker_devices[w]
        if devs:
            self.worker_max_free[w] = max(self.dev_free[devs.start : devs.stop])
            self.worker_best_device[w] = self._first_max(devs.start, devs.stop)

    def _first_max(self, start: int, stop: int) -> int:
        best = -1
        for d in range(start, stop):
            if best < 0 or self.dev_free[d] > self.dev_free[best]:
                best = d
        return best

    def _device_claims(self, placement: Placement) -> list[tuple[str, int]]:
        if placement.claimed_device_memory_bytes:
            return sorted(placement.claimed_device_memory_bytes.items())
        shares = placement.claim.devices
        return [
            (str(ref), shares[i].memory_bytes) for i, ref in enumerate(placement.devices) if i < len(shares)
        ]

    def _host_claims(self, placement: Placement) -> list[tuple[str, int]]:
        if placement.claimed_host_memory_bytes:
            return sorted(placement.claimed_host_memory_bytes.items())
        return [(placement.worker, placement.claim.host_memory_bytes)]

    def _apply(self, placement: Placement, sign: int) -> None:
        for ref, amount in self._device_claims(placement):
            d = self.dev_index.get(ref)
            if d is None:
                logger.debug(
                    "placement %s/%d claims unknown device %s", placement.deployment, placement.replica, ref
                )
                continue
            old_free = self.dev_free[d]
            self.dev_claimed[d] += sign * amount
            self.dev_free[d] = self.dev_alloc[d] - max(
                self.dev_floor[d], self.dev_base[d] + self.dev_claimed[d]
            )
            if not self._bulk:
                owner = self.dev_worker[d]
                old_max = self.worker_max_free[owner]
                self._reindex_worker(owner)
                for index in self.free_indexes.values():
                    index.changed(owner, d, old_free, old_max)
        for name, amount in self._host_claims(placement):
            w = self.worker_index.get(name)
            if w is None:
                continue
            self.host_claimed[w] += sign * amount
            self.host_free[w] = self.host_alloc[w] - max(
                self.host_floor[w], self.host_base[w] + self.host_claimed[w]
            )
        counts = self.replicas.setdefault(placement.deployment, {})
        for name in (placement.worker, *placement.subordinate_workers):
            w = self.worker_index.get(name)
            if w is not None:
                counts[w] = counts.get(w, 0) + sign

    def add(self, placement: Placement) -> None:
        """Count a new placement's claims.

        Raises:
            SchedulingError: that replica of that deployment is already placed.
        """
        key = (placement.deployment, placement.replica)
        if key in self.placements:
            existing = self.placements[key]
            raise SchedulingError(
                f"replica {placement.replica} of {placement.deployment!r} is placed twice "
                f"(on {existing.worker} and {placement.worker}); each replica may have one placement"
            )
        self.placements[key] = placement
        self._apply(placement, 1)

    def remove(self, deployment: str, replica: int) -> Placement:
        """Forget a placement and release its claims; returns it.

        Raises:
            SchedulingError: no such placement.
        """
        placement = self.placements.pop((deployment, replica), None)
        if placement is None:
            raise SchedulingError(f"replica {replica} of {deployment!r} is not placed; nothing to remove")
        self._apply(placement, -1)
        return placement

    # ------------------------------------------------------------------ queries

    def free_index(self, key: object, workers: Sequence[int]) -> FreeIndex | None:
        """The kept :class:`FreeIndex` of ``workers`` (the ``eligible_cache`` entry ``key``).

        ``None`` the first time a key is asked for: building the index costs about one scan, so
        a state used for a single decision (``Scheduler.schedule``) never pays for it; the
        second decision builds it and later ones reuse it.
        """
        if not self._use_free_index:
            return None
        index = self.free_indexes.get(key)
        if index is None:
            if key not in self._index_requested:
                self._index_requested.add(key)
                return None
            index = self.free_indexes[key] = FreeIndex(self, workers)
        return index

    def option_label(self, option: Option) -> str:
        """How explanations name an option: ``worker``, ``worker:cuda:0,1``, ``a:cuda:0+b:cuda:1``,
        or ``a+b`` (the CPUs of several workers)."""
        if not option.devices:
            return "+".join(self.workers[w].name for w in (option.worker, *option.subordinates))
        parts: list[str] = []
        groups: dict[tuple[int, str], list[int]] = {}
        order: list[tuple[int, str]] = []
        for d in option.devices:
            key = (self.dev_worker[d], self.dev_device[d].accelerator)
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(self.dev_device[d].index)
        order.sort(key=lambda key: key[0] != option.worker)  # the head worker first (stable)
        for w, accelerator in order:
            indices = ",".join(str(i) for i in groups[(w, accelerator)])
            parts.append(f"{self.workers[w].name}:{accelerator}:{indices}")
        return "+".join(parts)

    def replicas_on(self, deployment: str, worker: int) -> int:
        """Replicas of ``deployment`` that already use ``worker``."""
        return self.replicas.get(deployment, {}).get(worker, 0)

    def worker_load(self, worker: int) -> float:
        """Fraction in ``[0, 1]`` of the worker's allocatable device memory in use (host memory if none)."""
        devs = self.worker_devices[worker]
        alloc = sum(self.dev_alloc[d] for d in devs)
        if alloc > 0:
            used = sum(self.dev_alloc[d] - max(self.dev_free[d], 0) for d in devs)
            return min(1.0, used / alloc)
        if self.host_alloc[worker] > 0:
            return min(
                1.0, (self.host_alloc[worker] - max(self.host_free[worker], 0)) / self.host_alloc[worker]
            )
        return 0.0

    def option_for_devices(
        self, worker: str, devices: Sequence[Device], subordinates: Sequence[str]
    ) -> list[int]:
        """Device indices of ``devices`` found on ``worker`` or one of ``subordinates`` (by uuid).

        Raises:
            SchedulingError: a device is on none of those workers.
        """
        found: list[int] = []
        names = [worker, *subordinates]
        for device in devices:
            match = None
            for name in names:
                w = self.worker_index.get(name)
                if w is None:
                    continue
                for d in self.worker_devices[w]:
                    candidate = self.dev_device[d]
                    if (candidate.uuid, candidate.accelerator, candidate.index) == (
                        device.uuid,
                        device.accelerator,
                        device.index,
                    ):
                        match = d
                        break
                if match is not None:
                    break
            if match is None:
                raise SchedulingError(
                    f"device {device.accelerator}:{device.index} ({device.uuid}) is not on {', '.join(names)}"
                )
            found.append(match)
        return found
