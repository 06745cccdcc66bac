"""Least-outstanding-requests balancing across the running instances of a model."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from .protocols import Upstream

__all__ = ["LeastOutstandingBalancer"]


class LeastOutstandingBalancer:
    """Picks the instance with the fewest requests in flight through this gateway.

    Ties go round robin: a per-model counter rotates the order in which equal candidates are
    considered, so that sequential requests to an idle model alternate between its instances.
    One balancer belongs to one gateway app; it is used from one event loop and needs no lock.
    """

    def __init__(self) -> None:
        """Start with no request in flight."""
        self._outstanding: dict[str, int] = {}
        self._turn: dict[str, int] = {}

    def outstanding(self, instance_id: str) -> int:
        """Requests in flight on ``instance_id``."""
        return self._outstanding.get(instance_id, 0)

    def pick(
        self, model: str, upstreams: Sequence[Upstream], exclude: Collection[str] = ()
    ) -> Upstream | None:
        """The least busy of ``upstreams`` not in ``exclude`` (instance ids), or ``None`` if none is left."""
        n = len(upstreams)
        if n == 0:
            return None
        turn = self._turn.get(model, 0)
        self._turn[model] = (turn + 1) % n
        best: Upstream | None = None
        best_load = 0
        get = self._outstanding.get
        for i in range(n):
            u = upstreams[(turn + i) % n]
            if u.instance_id in exclude:
                continue
            load = get(u.instance_id, 0)
            if best is None or load < best_load:
                best, best_load = u, load
        return best

    def acquire(self, instance_id: str) -> None:
        """Count one more request in flight on ``instance_id``."""
        self._outstanding[instance_id] = self._outstanding.get(instance_id, 0) + 1

    def release(self, instance_id: str) -> None:
        """Count one request fewer in flight on ``instance_id``."""
        left = self._outstanding.get(instance_id, 0) - 1
        if left > 0:
            self._outstanding[instance_id] = left
        else:
            self._outstanding.pop(instance_id, None)
