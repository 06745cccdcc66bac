"""The server's side of the OpenAI gateway: route table, key authenticator and usage sink on the store.

The route table is an in-memory snapshot (the gateway reads it on every request) that the
controllers refresh after each reconcile pass; the same pass sets the gateway's cluster gauges
(instances by state, worker heartbeat age, device memory and utilization). Authentication and
usage go to the database in a worker thread.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio.to_thread

from gpustack_core.gateway import DeviceSample, GatewayMetrics, ModelEntry, Principal, Upstream, UsageRecord
from gpustack_core.server.auth import authenticate_key
from gpustack_core.server.records import InstanceRecord, InstanceState, UsageRow, WorkerRecord
from gpustack_core.server.store import Store

__all__ = ["GatewayBridge", "StoreKeyAuthenticator", "StoreRouteTable", "StoreUsageSink"]


@dataclass(frozen=True)
class _Snapshot:
    upstreams: dict[str, tuple[Upstream, ...]] = field(default_factory=dict)
    models: tuple[ModelEntry, ...] = ()
    states: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)


class StoreRouteTable:
    """Running instances by public model name (a deployment's ``served_model_name`` or its name)."""

    def __init__(self) -> None:
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()
        self.metrics: GatewayMetrics | None = None
        """When set, each refresh also sets its cluster gauges."""

    def refresh(self, store: Store) -> None:
        """Rebuild the snapshot from the store (blocking); update the cluster gauges."""
        deployments, _ = store.list_deployments(limit=100000)
        instances, _ = store.list_instances(limit=100000)
        workers = {w.id: w for w in store.list_workers(limit=100000)[0]}
        names = {d.id: d.spec.served_model_name or d.name for d in deployments if not d.deleting}
        upstreams: dict[str, list[Upstream]] = {}
        states: dict[str, list[tuple[str, str]]] = {}
        for inst in instances:
            model = names.get(inst.deployment_id)
            if model is None:
                continue
            states.setdefault(model, []).append((inst.id, inst.state.value))
            worker = workers.get(inst.worker_id or "")
            if (
                inst.state == InstanceState.RUNNING
                and inst.desired == "running"
                and inst.port is not None
                and worker is not None
                and worker.state == "ready"
            ):
                upstreams.setdefault(model, []).append(
                    Upstream(
                        instance_id=inst.id,
                        base_url=f"http://{worker.address}:{inst.port}",
                        served_model_name=model,
                        deployment=inst.deployment,
                    )
                )
        models = tuple(
            ModelEntry(
                id=names[d.id],
                owned_by="gpustack-core",
                created=int(d.created_at.timestamp()),
                category=d.spec.category.value,
            )
            for d in deployments
            if d.id in names
        )
        snapshot = _Snapshot(
            upstreams={k: tuple(v) for k, v in upstreams.items()},
            models=models,
            states={k: tuple(v) for k, v in states.items()},
        )
        with self._lock:
            self._snapshot = snapshot
        if self.metrics is not None:
            _publish(self.metrics, instances, list(workers.values()))

    def upstreams(self, model: str) -> Sequence[Upstream]:
        """Running instances serving ``model``."""
        return self._snapshot.upstreams.get(model, ())

    def models(self) -> Sequence[ModelEntry]:
        """Every deployed model."""
        return self._snapshot.models

    def instance_states(self, model: str) -> Sequence[tuple[str, str]]:
        """``(instance id, state)`` of ``model``'s instances."""
        return self._snapshot.states.get(model, ())


def _publish(
    metrics: GatewayMetrics, instances: Sequence[InstanceRecord], workers: Sequence[WorkerRecord]
) -> None:
    """Instances by (deployment, state), heartbeat ages as of now, and every worker's devices."""
    metrics.set_instance_states(Counter((i.deployment, i.state.value) for i in instances))
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # stored times are naive UTC
    metrics.set_worker_heartbeat_ages(
        {w.name: max(0.0, (now - w.last_heartbeat_at).total_seconds()) for w in workers}
    )
    metrics.set_device_samples(
        DeviceSample(
            worker=w.name,
            device=f"{d.accelerator}:{d.index}",
            vendor=d.vendor,
            memory_total_bytes=d.memory_total_bytes,
            memory_used_bytes=d.memory_used_bytes,
            utilization=None if d.utilization_percent is None else d.utilization_percent / 100,
        )
        for w in workers
        for d in w.info.devices
    )


class StoreKeyAuthenticator:
    """API keys and login sessions from the store, as gateway principals."""

    def __init__(self) -> None:
        self.store: Store | None = None

    async def authenticate(self, token: str) -> Principal | None:
        """The principal of ``token``, or ``None``."""
        if self.store is None:
            return None
        caller = await anyio.to_thread.run_sync(authenticate_key, self.store, token)
        if caller is None:
            return None
        allowed = caller.key.allowed_models
        return Principal(
            user_id=caller.user.id,
            key_id=caller.key.id if caller.key.kind == "key" else None,
            scopes=caller.scopes,
            allowed_models=None if allowed is None else frozenset(allowed),
            is_admin=caller.is_admin,
        )


class StoreUsageSink:
    """Adds each request's tokens to the (user, key, model, day) row of the usage table."""

    def __init__(self) -> None:
        self.store: Store | None = None

    async def record(self, usage: UsageRecord) -> None:
        """Upsert-add one usage record."""
        if self.store is None:
            return
        row = UsageRow(
            user_id=usage.user_id,
            key_id=usage.key_id,
            model=usage.model,
            day=usage.day,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            requests=usage.requests,
        )
        await anyio.to_thread.run_sync(self.store.add_usage, row)


@dataclass
class GatewayBridge:
    """The three gateway objects of one server application; bound to the store in the lifespan."""

    routes: StoreRouteTable = field(default_factory=StoreRouteTable)
    auth: StoreKeyAuthenticator = field(default_factory=StoreKeyAuthenticator)
    usage: StoreUsageSink = field(default_factory=StoreUsageSink)

    def bind(self, store: Store) -> None:
        """Point authentication and usage at ``store`` and take a first route snapshot (blocking)."""
        self.auth.store = store
        self.usage.store = store
        self.routes.refresh(store)
