"""Scale from zero: holding requests for a model while its first replica starts.

A host gives the gateway a :class:`ColdStarter`. When a request names a model with no running
instance that the cold starter can wake, the gateway asks it to :meth:`~ColdStarter.wake` the
model and holds the request — at most ``max_held`` requests per model, for at most
``hold_timeout_s``, and only while the client stays connected — until the route table shows a
running instance; then it is served as usual. The answer carries ``x-gpustack-cold-start-ms``
(how long it was held) and ``gpustack_gateway_cold_start_wait_seconds{model}`` observes it. A
request that cannot be held (queue full, or the wait ran out) gets 503 with ``Retry-After``.

The gateway also tells the cold starter when each request for a model begins and ends, so that
it can stop idle models.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["ColdStarter"]


@runtime_checkable
class ColdStarter(Protocol):
    """Starts models that run no replica on demand, and tracks their activity."""

    def can_wake(self, model: str) -> bool:
        """``model`` may be started by :meth:`wake` (it is scaled to zero). Called on the request path."""
        ...

    async def wake(self, model: str) -> None:
        """Ask for ``model``'s replicas to start (idempotent; returns without waiting for them)."""
        ...

    def begin(self, model: str) -> None:
        """A request for ``model`` started (cheap, in memory)."""
        ...

    def end(self, model: str) -> None:
        """A request for ``model`` ended (cheap, in memory)."""
        ...
