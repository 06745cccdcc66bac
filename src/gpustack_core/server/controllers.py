"""Controllers: keep the stored desired state true, one reconcile pass at a time.

Each pass (in a worker thread, since the store and scheduler are blocking):

1. workers silent for ``heartbeat_timeout_s`` become unreachable, and their instances go back to
   pending (rescheduled elsewhere). Not during the first ``heartbeat_timeout_s`` after the server
   started, so that workers get time to reconnect after a server restart: their running instances
   are adopted, not restarted.
2. every deployment gets one instance per replica number below ``replicas``; instances above it
   are asked to stop; deleting deployments lose their unplaced instances and, once empty, the row.
3. an instance in ``error`` goes back to pending after a backoff that doubles per restart.
4. pending instances are scheduled; a placement is one compare-and-set UPDATE, so an instance is
   never placed twice; an unplaceable one keeps the scheduler's explanation.
5. the gateway's route table snapshot is refreshed from the store.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import anyio
import anyio.to_thread

from gpustack_core.errors import GPUStackError
from gpustack_core.scheduler import ClusterState, Scheduler
from gpustack_core.types import Placement

from .gateway_bridge import StoreRouteTable
from .planning import EstimateCache
from .services import Services
from .store import utcnow
from .store.records import ACTIVE_STATES, InstanceRecord, InstanceState

__all__ = ["Controllers"]

logger = logging.getLogger(__name__)


class Controllers:
    """The reconcile loop of one server."""

    def __init__(self, services: Services, routes: StoreRouteTable | None = None) -> None:
        self.services = services
        self.routes = routes
        self.scheduler = Scheduler.from_host(services.host)
        self.estimates = EstimateCache(services.host, services.config.data_dir / "models")
        self._started = time.monotonic()

    async def run(self) -> None:
        """Reconcile forever, every ``reconcile_interval_s``; errors are logged, never fatal."""
        while True:
            try:
                await anyio.to_thread.run_sync(self.reconcile_once)
            except Exception:
                logger.exception("reconcile pass failed; retrying")
            await anyio.sleep(self.services.config.reconcile_interval_s)

    def reconcile_once(self) -> None:
        """One pass of every controller (blocking)."""
        self.check_workers()
        self.reconcile_deployments()
        self.retry_errors()
        self.schedule_pending()
        if self.routes is not None:
            self.routes.refresh(self.services.store)

    # ---------------------------------------------------------------- workers

    def check_workers(self) -> None:
        """Mark silent workers unreachable and requeue their instances."""
        cfg = self.services.config
        store = self.services.store
        if time.monotonic() - self._started >= cfg.heartbeat_timeout_s:
            cutoff = utcnow() - dt.timedelta(seconds=cfg.heartbeat_timeout_s)
            for worker_id in store.mark_unreachable(cutoff):
                logger.warning("worker %s stopped sending heartbeats; rescheduling its instances", worker_id)
        unreachable, _ = store.list_workers(state="unreachable")
        for worker in unreachable:
            moved = store.requeue_workers(
                [worker.id], f"rescheduled: worker {worker.name} stopped sending heartbeats"
            )
            if moved:
                logger.info("requeued %d instance(s) of unreachable worker %s", moved, worker.name)

    # ---------------------------------------------------------------- deployments

    def reconcile_deployments(self) -> None:
        """Create missing replicas, stop extra ones, finish deletions (writes only what changed)."""
        store = self.services.store
        deployments, _ = store.list_deployments(limit=1_000_000)
        instances, _ = store.list_instances(limit=1_000_000)
        by_deployment: dict[str, list[InstanceRecord]] = {}
        for inst in instances:
            by_deployment.setdefault(inst.deployment_id, []).append(inst)
            if inst.desired == "stopped" and inst.worker_id is None:
                store.delete_instance(inst.id)
        changed: list[tuple[str, int]] = []
        for dep in deployments:
            mine = by_deployment.get(dep.id, [])
            if not dep.deleting:
                replicas = {i.replica for i in mine}
                missing = any(r not in replicas for r in range(dep.replicas))
                extra = any(i.replica >= dep.replicas and i.desired == "running" for i in mine)
                if missing or extra:
                    changed.append((dep.id, dep.replicas))
            elif store.delete_deployment_row(dep.id):
                logger.info("deployment %s deleted", dep.name)
        if changed:
            store.ensure_replicas_many(changed)

    # ---------------------------------------------------------------- restarts

    def retry_errors(self) -> None:
        """Send errored instances back to pending after an exponential backoff."""
        cfg = self.services.config
        store = self.services.store
        now = utcnow()
        store.forget_old_restarts(now - dt.timedelta(seconds=cfg.restart_stable_s))
        errored, _ = store.list_instances(states=[InstanceState.ERROR.value])
        for inst in errored:
            if inst.desired != "running":
                continue
            delay = min(cfg.restart_backoff_max_s, cfg.restart_backoff_s * 2**inst.restarts)
            if (now - inst.state_changed_at).total_seconds() >= delay:
                reason = f"retrying after error (restart {inst.restarts + 1}): {inst.message}"
                if store.retry_instance(inst.id, inst.version, reason):
                    logger.info(
                        "instance %s (deployment %s replica %d): error -> pending: %s",
                        inst.id,
                        inst.deployment,
                        inst.replica,
                        reason.splitlines()[0],
                    )

    # ---------------------------------------------------------------- scheduling

    def schedule_pending(self) -> None:
        """Place pending instances, or record why they cannot be placed."""
        store = self.services.store
        # pending instances and those holding resources, in one read
        states = [InstanceState.PENDING.value, *(s.value for s in ACTIVE_STATES)]
        instances, _ = store.list_instances(1_000_000, states=states)
        pending = [i for i in instances if i.state == InstanceState.PENDING and i.desired == "running"]
        if not pending:
            return
        workers, _ = store.list_workers(limit=1_000_000)
        ready = [w for w in workers if w.state == "ready"]
        by_name = {w.name: w for w in ready}
        placements: list[Placement] = []
        for inst in instances:
            if inst.state in ACTIVE_STATES and inst.placement is not None:
                try:
                    placements.append(Placement.model_validate(inst.placement))
                except ValueError:
                    logger.warning("instance %s has an unreadable placement; ignoring it", inst.id)
        ready_names = set(by_name)
        # One cluster view for the whole pass; each new placement is added to it.
        state = ClusterState([w.info for w in ready], [p for p in placements if p.worker in ready_names])
        deployments = {d.id: d for d in store.list_deployments(limit=1_000_000)[0]}
        for inst in pending:
            dep = deployments.get(inst.deployment_id)
            if dep is None or dep.deleting:
                continue
            try:
                estimate = self.estimates.estimate(dep.spec, [d for w in ready for d in w.info.devices])
            except GPUStackError as exc:
                msg = f"cannot estimate the model's resources: {exc}"
                store.explain_pending(inst.id, inst.version, msg, {"summary": msg, "rejections": []})
                continue
            capabilities = None
            try:
                capabilities = self.services.host.engine(dep.spec.engine).capabilities()
            except GPUStackError:
                capabilities = None
            try:
                result = self.scheduler.schedule_in(
                    state, dep.spec, estimate, inst.replica, engine_capabilities=capabilities
                )
            except GPUStackError as exc:
                msg = f"scheduler refused the input: {exc}"
                store.explain_pending(inst.id, inst.version, msg, {"summary": msg, "rejections": []})
                continue
            if result.placement is None:
                explanation = result.explanation.to_dict()
                summary = result.explanation.summary if ready else "no ready workers"
                store.explain_pending(inst.id, inst.version, f"unschedulable: {summary}", explanation)
                continue
            worker = by_name.get(result.placement.worker)
            if worker is None:  # pragma: no cover - the scheduler only picks given workers
                continue
            if store.place(inst.id, inst.version, worker.id, result.placement.model_dump(mode="json")):
                state.add(result.placement)
                logger.info(
                    "instance %s (deployment %s replica %d): pending -> scheduled: placed on %s",
                    inst.id,
                    dep.name,
                    inst.replica,
                    worker.name,
                )
