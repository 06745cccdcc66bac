"""Scale to zero: deployments with a policy stop after an idle timeout and start on the next request.

A policy (``PUT /api/v1/scale-to-zero/{deployment}``) names the idle timeout and how many replicas
a wake starts. :class:`ScaleToZero` is the gateway's :class:`~gpustack_core.gateway.ColdStarter`:
it counts requests in flight per model and when each model was last used, and :meth:`run` sets
an idle deployment's replicas to 0 (the controllers stop its instances). A request for it then
wakes it: its replicas go back to ``wake_replicas`` (compare-and-set, so several servers waking it
at once start it once) while the gateway holds the request.

The idle clock is kept in each server process's memory: with several server processes, each one
sees only its own requests, so a deployment is stopped when *one* process has seen it idle for
the timeout while another may still be serving it; run scale-to-zero deployments behind one
server process (or accept the restart) until the activity is shared through the database.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import anyio
import anyio.to_thread

from .store import Store
from .store.governance import GovernanceStore

__all__ = ["ScaleToZero"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Policy:
    deployment_id: str
    replicas: int
    idle_timeout_s: float
    wake_replicas: int


class ScaleToZero:
    """The server's cold starter and idle stopper (bound to the store in the lifespan)."""

    def __init__(self, check_interval_s: float = 1.0) -> None:
        """Check for idle deployments every ``check_interval_s`` seconds."""
        self.store: Store | None = None
        self.check_interval_s = check_interval_s
        self._policies: dict[str, _Policy] = {}
        self._in_flight: dict[str, int] = {}
        self._last_used: dict[str, float] = {}

    def refresh(self, store: Store) -> None:
        """Re-read the policies and the deployments' replicas (blocking)."""
        policies = {}
        for dep_id, model, replicas, idle, wake in GovernanceStore(store.engine).scale_to_zero_policies():
            policies[model] = _Policy(dep_id, replicas, idle, wake)
        self._policies = policies

    def can_wake(self, model: str) -> bool:
        """``model`` has a policy (it may be at zero now, or about to be)."""
        return model in self._policies

    async def wake(self, model: str) -> None:
        """Set the model's deployment back to its wake replicas when it is at zero."""
        policy = self._policies.get(model)
        store = self.store
        if policy is None or store is None:
            return
        self._last_used[model] = time.monotonic()
        gov = GovernanceStore(store.engine)
        if await anyio.to_thread.run_sync(gov.set_replicas_if, policy.deployment_id, 0, policy.wake_replicas):
            logger.info("woke %s: %d replica(s) starting for a held request", model, policy.wake_replicas)
            await anyio.to_thread.run_sync(self.refresh, store)

    def begin(self, model: str) -> None:
        """A request for ``model`` started."""
        self._in_flight[model] = self._in_flight.get(model, 0) + 1
        self._last_used[model] = time.monotonic()

    def end(self, model: str) -> None:
        """A request for ``model`` ended."""
        self._in_flight[model] = max(0, self._in_flight.get(model, 0) - 1)
        self._last_used[model] = time.monotonic()

    def idle_models(self, now: float | None = None) -> list[str]:
        """Models with replicas, no request in flight, unused for longer than their idle timeout."""
        now = time.monotonic() if now is None else now
        out = []
        for model, policy in self._policies.items():
            if policy.replicas == 0 or self._in_flight.get(model, 0) > 0:
                continue
            last = self._last_used.setdefault(model, now)  # first seen now: its clock starts now
            if now - last >= policy.idle_timeout_s:
                out.append(model)
        return out

    async def stop_idle(self) -> list[str]:
        """Scale idle deployments to zero; returns the models stopped."""
        store = self.store
        if store is None:
            return []
        await anyio.to_thread.run_sync(self.refresh, store)
        gov = GovernanceStore(store.engine)
        stopped = []
        for model in self.idle_models():
            policy = self._policies[model]
            if await anyio.to_thread.run_sync(gov.set_replicas_if, policy.deployment_id, policy.replicas, 0):
                logger.info("%s idle for %.0f s: scaled to zero", model, policy.idle_timeout_s)
                stopped.append(model)
        if stopped:
            await anyio.to_thread.run_sync(self.refresh, store)
        return stopped

    async def run(self) -> None:
        """Stop idle deployments every ``check_interval_s`` until cancelled; failures are logged."""
        while True:
            await anyio.sleep(self.check_interval_s)
            try:
                await self.stop_idle()
            except Exception:
                logger.exception("the scale-to-zero check failed; retrying")
