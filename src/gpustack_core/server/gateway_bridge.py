"""The server's side of the OpenAI gateway: route table, key authenticator and usage sink on the store.

The route table is an in-memory snapshot (the gateway reads it on every request) that the
controllers refresh after each reconcile pass; the same pass sets the gateway's cluster gauges
(instances by state, worker heartbeat age, device memory and utilization).

Keeping the database off each request's path: a key is checked against the database once and
then served from a short-lived cache (``auth_cache_ttl_s``, cleared at once when this server
revokes a key or changes a user); usage records are added up in memory and written in one batch
every ``usage_flush_interval_s`` (and before the usage API answers, and at shutdown).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import anyio.to_thread

from gpustack_core.gateway import DeviceSample, GatewayMetrics, ModelEntry, Principal, Upstream, UsageRecord
from gpustack_core.server.auth import Caller, authenticate_key
from gpustack_core.server.limiter import StoreLimiter
from gpustack_core.server.scale_to_zero import ScaleToZero
from gpustack_core.server.store import Store
from gpustack_core.server.store._sql import new_id, read_retrying, utcnow
from gpustack_core.server.store.accounts import UsageKey
from gpustack_core.server.store.governance import GovernanceStore
from gpustack_core.server.store.records import InstanceRecord, InstanceState, WorkerRecord

__all__ = [
    "GatewayBridge",
    "StoreFallbacks",
    "StoreKeyAuthenticator",
    "StoreRouteTable",
    "StoreUsageSink",
    "caller_access",
]

logger = logging.getLogger(__name__)


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


class _Lookup:
    """One database check of a token that concurrent requests with the same token wait for."""

    __slots__ = ("done", "generation", "ok", "principal")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.done = anyio.Event()
        self.ok = False  # the check finished (``principal`` None then means an unknown token)
        self.principal: Principal | None = None


class StoreKeyAuthenticator:
    """API keys and login sessions from the store, as gateway principals, cached briefly.

    A key that checked out is remembered for ``ttl_s`` seconds (never past its own expiry) by the
    SHA-256 of the token, so the gateway does not go to the database on every request. Revoking a
    key or changing a user through this server clears the cache at once (:meth:`invalidate`);
    another server sharing the database notices within ``ttl_s``. Unknown tokens are not cached.
    Requests with the same token that arrive while it is being checked wait for that one check
    (when its entry expires under load, one query instead of one per request in flight), unless
    the cache was cleared since the check began.
    """

    def __init__(self, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        """``ttl_s`` 0 disables the cache."""
        self.store: Store | None = None
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()
        self._lookups: dict[bytes, _Lookup] = {}
        self._generation = 0  # bumped by invalidate: a lookup that overlapped it is not cached

    def invalidate(self) -> None:
        """Forget every cached principal (a key was revoked or a user changed)."""
        self._generation += 1
        self._cache.clear()

    async def authenticate(self, token: str) -> Principal | None:
        """The principal of ``token``, or ``None``."""
        if self.store is None:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None:
            if hit[0] > now:
                self._cache.move_to_end(digest)
                return hit[1]
            del self._cache[digest]
        pending = self._lookups.get(digest)
        if pending is not None and pending.generation == self._generation:
            await pending.done.wait()
            if pending.ok:
                return pending.principal
            # that check failed or was cancelled: check again below
        lookup = _Lookup(self._generation)
        if self.ttl_s > 0:
            self._lookups[digest] = lookup
        try:
            lookup.principal = await self._check(self.store, token, digest, now, lookup.generation)
            lookup.ok = True
        finally:
            if self._lookups.get(digest) is lookup:
                del self._lookups[digest]
            lookup.done.set()
        return lookup.principal

    async def _check(
        self, store: Store, token: str, digest: bytes, now: float, generation: int
    ) -> Principal | None:
        """Ask the database; cache what it says unless :meth:`invalidate` ran meanwhile."""
        found = await anyio.to_thread.run_sync(_authenticate_with_access, store, token)
        if found is None:
            return None
        caller, teams, allowed = found
        principal = Principal(
            user_id=caller.user.id,
            key_id=caller.key.id if caller.key.kind == "key" else None,
            scopes=caller.scopes,
            allowed_models=allowed,
            is_admin=caller.is_admin,
            teams=teams,
        )
        if self.ttl_s > 0 and generation == self._generation:
            deadline = now + self.ttl_s
            expires = caller.key.expires_at
            if expires is not None:
                left = (expires - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).total_seconds()
                deadline = min(deadline, now + left)
            self._cache[digest] = (deadline, principal)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return principal


def caller_access(store: Store, caller: Caller) -> tuple[frozenset[str], frozenset[str] | None]:
    """The caller's teams and the models they may call (``None``: every model), blocking.

    The user's and their teams' access rules give the models the user may call; the key's own
    ``allowed_models`` narrows that further (a key never widens its owner's access).
    """
    governance = GovernanceStore(store.engine)
    teams = read_retrying(governance.teams_of, caller.user.id)
    granted = read_retrying(governance.allowed_models, caller.user.id, teams)
    key_models = caller.key.allowed_models
    if key_models is None:
        return teams, granted
    narrowed = frozenset(key_models)
    return teams, narrowed if granted is None else narrowed & granted


def _authenticate_with_access(
    store: Store, token: str
) -> tuple[Caller, frozenset[str], frozenset[str] | None] | None:
    caller = authenticate_key(store, token)
    if caller is None:
        return None
    teams, allowed = caller_access(store, caller)
    return caller, teams, allowed


class StoreFallbacks:
    """Fallback chains from the store, as an in-memory snapshot refreshed with the route table."""

    def __init__(self) -> None:
        self._chains: dict[str, tuple[str, ...]] = {}

    def refresh(self, store: Store) -> None:
        """Re-read every chain (blocking)."""
        self._chains = GovernanceStore(store.engine).all_fallbacks()

    def fallbacks(self, model: str) -> Sequence[str]:
        """The fallback models of ``model``, in order."""
        return self._chains.get(model, ())


#: How long the ids of written usage batches are kept (a batch is retried within seconds; a
#: process holding one unconfirmed for a week is not expected).
USAGE_BATCH_RETENTION = dt.timedelta(days=7)


class StoreUsageSink:
    """Adds up each request's tokens in memory and writes them to the usage tables in batches.

    :meth:`record` never waits for the database, so metering adds no latency to a request.
    :meth:`run` writes the batch every ``flush_interval_s``; :meth:`flush` writes it now (the
    usage API calls it so that its answer includes every finished request; the server's lifespan
    calls it at shutdown). A batch is written in one transaction under a batch id
    (:meth:`Store.add_usage_batch`); one that failed is kept with its id and retried, alone, before
    anything newer, so a commit that reached the database although the connection died before its
    answer is not added twice, and records arriving meanwhile wait in the next batch. A process
    killed outright loses at most ``flush_interval_s`` of counts.
    """

    def __init__(self, flush_interval_s: float = 0.5) -> None:
        """Write every ``flush_interval_s`` seconds (0: write each record before returning)."""
        self.store: Store | None = None
        self.flush_interval_s = flush_interval_s
        self._pending: dict[UsageKey, list[int]] = {}
        self._unconfirmed: tuple[str, dict[UsageKey, list[int]]] | None = None
        self._pruned_at: float | None = None
        self._flushing = anyio.Lock()

    async def record(self, usage: UsageRecord) -> None:
        """Add one request's tokens to the pending batch."""
        if self.store is None:
            return
        hour = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0)
        if hour.date() != usage.day:
            hour = dt.datetime.combine(usage.day, dt.time())
        key = (usage.user_id, usage.key_id, usage.model, usage.day, hour)
        counts = self._pending.get(key)
        if counts is None:
            self._pending[key] = [usage.prompt_tokens, usage.completion_tokens, usage.requests]
        else:
            counts[0] += usage.prompt_tokens
            counts[1] += usage.completion_tokens
            counts[2] += usage.requests
        if self.flush_interval_s <= 0:
            await self.flush()

    @property
    def pending(self) -> int:
        """Rows waiting to be written (a failed batch's and the next batch's)."""
        unconfirmed = len(self._unconfirmed[1]) if self._unconfirmed is not None else 0
        return len(self._pending) + unconfirmed

    async def flush(self) -> None:
        """Write the failed batch (if any) again, then every pending row; errors are raised and
        what was not written stays pending."""
        async with self._flushing:
            store = self.store
            if store is None:
                return
            if self._unconfirmed is not None:
                batch_id = self._unconfirmed[0]
                if not await anyio.to_thread.run_sync(store.add_usage_batch, *self._unconfirmed):
                    logger.info(
                        "usage batch %s was written before its connection was lost; not added again", batch_id
                    )
                self._unconfirmed = None
            if not self._pending:
                return
            batch, self._pending = (new_id(), self._pending), {}
            try:
                await anyio.to_thread.run_sync(store.add_usage_batch, *batch)
            except BaseException:
                self._unconfirmed = batch  # retried under the same id: written at most once
                raise

    async def flush_at_exit(self, attempts: int = 3) -> None:
        """Flush at shutdown, trying again (on a fresh connection) after a failure: a connection
        lost under the first try would otherwise lose the last counts; the last error is raised."""
        for attempt in range(attempts):
            try:
                await self.flush()
                return
            except Exception:
                if attempt == attempts - 1:
                    raise
                logger.warning("writing %d usage rows at shutdown failed; trying again", self.pending)

    async def prune(self) -> None:
        """Forget the ids of batches written more than :data:`USAGE_BATCH_RETENTION` ago (at most
        once an hour per process; a failure is logged)."""
        store = self.store
        if store is None or (self._pruned_at is not None and time.monotonic() - self._pruned_at < 3600):
            return
        self._pruned_at = time.monotonic()
        older_than = utcnow() - USAGE_BATCH_RETENTION
        try:
            await anyio.to_thread.run_sync(store.prune_usage_batches, older_than)
        except Exception:
            logger.exception("forgetting usage batch ids older than %s failed", older_than)

    async def run(self) -> None:
        """Flush every ``flush_interval_s`` until cancelled; failures are logged and retried."""
        while True:
            await anyio.sleep(self.flush_interval_s if self.flush_interval_s > 0 else 1.0)
            try:
                await self.flush()
            except Exception:
                logger.exception("writing %d usage rows failed; they stay pending", self.pending)
            await self.prune()


@dataclass
class GatewayBridge:
    """The gateway objects of one server application; bound to the store in the lifespan."""

    routes: StoreRouteTable = field(default_factory=StoreRouteTable)
    auth: StoreKeyAuthenticator = field(default_factory=StoreKeyAuthenticator)
    usage: StoreUsageSink = field(default_factory=StoreUsageSink)
    limiter: StoreLimiter = field(default_factory=StoreLimiter)
    fallbacks: StoreFallbacks = field(default_factory=StoreFallbacks)
    scale_to_zero: ScaleToZero = field(default_factory=ScaleToZero)

    def bind(self, store: Store) -> None:
        """Point authentication, limits and usage at ``store``; take first snapshots (blocking)."""
        self.auth.store = store
        self.usage.store = store
        self.limiter.store = GovernanceStore(store.engine)
        self.scale_to_zero.store = store
        self.routes.refresh(store)
        self.fallbacks.refresh(store)
        self.scale_to_zero.refresh(store)

    def refresh(self, store: Store) -> None:
        """Rebuild the route and fallback snapshots (blocking; after each reconcile pass)."""
        self.routes.refresh(store)
        self.fallbacks.refresh(store)
