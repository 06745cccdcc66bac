"""The scheduler: claims in strategy order, filters then scorers, and explanations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpustack_core.contracts import SchedulerPolicy
from gpustack_core.errors import SchedulingError
from gpustack_core.types import (
    Candidate,
    Deployment,
    DeviceRef,
    EngineCapabilities,
    Placement,
    PolicyContext,
    Rejection,
    ResourceClaim,
    ResourceEstimate,
    WorkerInfo,
)

from ._explain import STRATEGY_PHRASES, Explanation, claim_phrase, failure_summary
from ._fast import fast_single
from ._options import enumerate_options, is_single_device
from ._state import ClusterState, Option, format_gib
from ._view import DecisionView
from .policies import (
    Binpack,
    BuiltinPolicy,
    EngineCompatibility,
    ModelCached,
    ResourceFit,
    Spread,
    builtin_policies,
)

if TYPE_CHECKING:
    from gpustack_core.plugins import PluginHost

__all__ = ["STRATEGY_ORDER", "ScheduleResult", "Scheduler"]

#: Claim strategies in the order the scheduler tries them.
STRATEGY_ORDER: tuple[str, ...] = (
    "single_device",
    "multi_device",
    "multi_worker",
    "partial_offload",
    "cpu_only",
)


@dataclass(frozen=True)
class ScheduleResult:
    """The outcome for one replica: a placement, or ``None`` with the explanation of why not."""

    deployment: str
    replica: int
    placement: Placement | None
    explanation: Explanation

    @property
    def placed(self) -> bool:
        """True when the replica got a placement."""
        return self.placement is not None


# per worker: (policy position, closeness, policy name, option, reason)
# (reason None: a built-in policy's reason, formatted only if the decision fails)
_Miss = tuple[int, int, SchedulerPolicy, Option, str | None]


def _overrides(obj: object, method: str, base: type) -> bool:
    return getattr(type(obj), method) is not getattr(base, method)


class Scheduler:
    """Places replicas with a pipeline of policies: filters veto candidates, scorers rank survivors.

    Built-in policies (:mod:`gpustack_core.scheduler.policies`) run through a fast index-form path;
    third-party policies see :class:`~gpustack_core.types.Candidate` objects only for candidates
    every built-in filter accepted. Built-in filters run before third-party ones.
    """

    def __init__(
        self,
        policies: Sequence[SchedulerPolicy] | None = None,
        *,
        host: PluginHost | None = None,
        notes: Sequence[str] = (),
        fast_path: bool = True,
    ) -> None:
        """Parameters:
        policies: the pipeline; ``None`` means every built-in policy.
        host: when given, third-party policy calls are isolated by the plugin host.
        notes: facts every explanation repeats (e.g. policy plugins that failed to load).
        fast_path: use the specialised one-GPU loop when only built-in policies are present
            (turn off to cross-check it against the general path).
        """
        self.policies: tuple[SchedulerPolicy, ...] = tuple(
            builtin_policies() if policies is None else policies
        )
        names = [p.name for p in self.policies]
        if len(set(names)) != len(names) or "" in names:
            raise SchedulingError(f"scheduler policies need unique, non-empty names; got {names}")
        self._host = host
        self._notes = tuple(notes)
        self._builtin = [p for p in self.policies if isinstance(p, BuiltinPolicy)]
        self._position = {p.name: i for i, p in enumerate(self.policies)}
        self._builtin_filters = [
            p
            for p in self._builtin
            if _overrides(p, "check", BuiltinPolicy) or _overrides(p, "check_claim", BuiltinPolicy)
        ]
        self._builtin_scorers = [p for p in self._builtin if _overrides(p, "value", BuiltinPolicy)]
        others = [p for p in self.policies if not isinstance(p, BuiltinPolicy)]
        self._other_filters = [p for p in others if _overrides(p, "filter", SchedulerPolicy)]
        self._other_scorers = [p for p in others if _overrides(p, "score", SchedulerPolicy)]
        self._scorers = [p for p in self.policies if p in self._builtin_scorers or p in self._other_scorers]
        fast_scorers = all(type(p) in (ModelCached, Binpack, Spread) for p in self._scorers)
        self._fast_path = fast_path and not others and fast_scorers

    @classmethod
    def from_host(cls, host: PluginHost) -> Scheduler:
        """A scheduler with the host's policies (built-ins first); failed policy plugins become notes."""
        failed = [r for r in host.failed() if r.area == "scheduler"]
        notes = [f"scheduler plugin {r.name!r} failed and is not applied: {r.error}" for r in failed]
        return cls(host.scheduler_policies(), host=host, notes=notes)

    # ------------------------------------------------------------------ public API

    def schedule(
        self,
        deployment: Deployment,
        estimate: ResourceEstimate,
        workers: Sequence[WorkerInfo],
        placements: Sequence[Placement] = (),
        replica: int = 0,
        *,
        engine_capabilities: EngineCapabilities | None = None,
    ) -> ScheduleResult:
        """Place one replica of ``deployment`` among ``workers``, given existing ``placements``.

        Raises:
            SchedulingError: invalid input (duplicate worker names, replica already placed).
        """
        state = ClusterState(workers, placements)
        return self.schedule_in(state, deployment, estimate, replica, engine_capabilities=engine_capabilities)

    def schedule_replicas(
        self,
        deployment: Deployment,
        estimate: ResourceEstimate,
        workers: Sequence[WorkerInfo],
        placements: Sequence[Placement] = (),
        *,
        engine_capabilities: EngineCapabilities | None = None,
    ) -> list[ScheduleResult]:
        """Place every missing replica index below ``deployment.replicas``, lowest first.

        Each new placement counts for the next decision. Stops after the first replica that fits
        nowhere (its result, with the explanation, is the last one returned).
        """
        state = ClusterState(workers, placements)
        results: list[ScheduleResult] = []
        for replica in range(deployment.replicas):
            if (deployment.name, replica) in state.placements:
                continue
            result = self.schedule_in(
                state, deployment, estimate, replica, engine_capabilities=engine_capabilities
            )
            results.append(result)
            if result.placement is None:
                break
            state.add(result.placement)
        return results

    def scale_down(
        self,
        deployment: Deployment,
        placements: Sequence[Placement],
        workers: Sequence[WorkerInfo],
        count: int,
    ) -> list[Placement]:
        """Choose ``count`` replicas of ``deployment`` to remove, in removal order.

        Replicas on missing or not-ready workers go first. Then, for ``spread``, replicas on the
        worker holding the most replicas of this deployment, then the most loaded worker; for
        ``binpack``, the worker holding the fewest, then the least loaded (emptying workers). Ties go
        to the highest replica index. Deterministic.

        Raises:
            SchedulingError: ``count`` is negative.
        """
        if count < 0:
            raise SchedulingError(f"cannot remove {count} replicas; count must be 0 or more")
        state = ClusterState(workers, placements)
        mine = sorted((p for p in placements if p.deployment == deployment.name), key=lambda p: p.replica)
        victims: list[Placement] = []
        binpack = deployment.placement_strategy == "binpack"
        while mine and len(victims) < count:

            def key(p: Placement) -> tuple[int, float, float, int]:
                w = state.worker_index.get(p.worker)
                if w is None or not state.worker_ready[w]:
                    return (0, 0.0, 0.0, -p.replica)
                here = float(state.replicas_on(deployment.name, w))
                load = state.worker_load(w)
                if binpack:
                    return (1, here, load, -p.replica)
                return (1, -here, -load, -p.replica)

            victim = min(mine, key=key)
            mine.remove(victim)
            victims.append(victim)
            state.remove(victim.deployment, victim.replica)
        return victims

    def schedule_in(
        self,
        state: ClusterState,
        deployment: Deployment,
        estimate: ResourceEstimate,
        replica: int = 0,
        *,
        engine_capabilities: EngineCapabilities | None = None,
    ) -> ScheduleResult:
        """Like :meth:`schedule`, on a prepared :class:`ClusterState` (left unchanged).

        Keep one state and :meth:`ClusterState.add` each placement to avoid re-indexing the cluster
        for every decision.
        """
        if (deployment.name, replica) in state.placements:
            where = state.placements[(deployment.name, replica)].worker
            raise SchedulingError(f"replica {replica} of {deployment.name!r} is already placed on {where}")
        view = DecisionView(state, deployment, engine_capabilities)
        claims, notes = self._plan(view, estimate)
        notes = [*self._notes, *notes]
        considered = 0
        misses_by_claim: list[tuple[ResourceClaim, dict[int, _Miss]]] = []
        deferred: list[ResourceClaim] = []
        for claim in claims:
            found: tuple[Option, float] | None = None
            if self._fast_path and is_single_device(claim):
                found, n = fast_single(view, claim, self._builtin_filters, self._scorers)
                considered += n
                if found is None:
                    deferred.append(claim)  # its reasons are collected only if nothing fits at all
            else:
                found, n, misses = self._general(view, claim)
                considered += n
                if found is None:
                    misses_by_claim.append((claim, misses))
            if found is not None:
                option, score = found
                placement = self._placement(view, option, replica)
                summary = (
                    f"placed replica {replica} of {deployment.name!r} on {state.option_label(option)} "
                    f"({self._claim_phrase(claim)}; score {score:.1f}; {considered} candidates considered)"
                )
                return ScheduleResult(
                    deployment.name, replica, placement, Explanation(summary, (), considered, tuple(notes))
                )
        for claim in deferred:
            _, _, misses = self._general(view, claim)
            misses_by_claim.append((claim, misses))
        misses_by_claim.sort(key=lambda cm: claims.index(cm[0]))
        return self._failure(view, replica, claims, misses_by_claim, considered, notes)

    # ------------------------------------------------------------------ planning

    def _plan(self, view: DecisionView, estimate: ResourceEstimate) -> tuple[list[ResourceClaim], list[str]]:
        deployment = view.deployment
        order = {s: i for i, s in enumerate(STRATEGY_ORDER)}
        # a split over several workers' CPUs comes after every claim of one worker
        last = len(STRATEGY_ORDER)
        ranked = sorted(
            enumerate(estimate.claims),
            key=lambda ic: (last if ic[1].spans_worker_hosts else order.get(ic[1].strategy, 99), ic[0]),
        )
        claims: list[ResourceClaim] = []
        notes: list[str] = []
        for _, claim in ranked:
            label = self._claim_phrase(claim)
            if claim.strategy == "multi_worker" and not deployment.allow_multi_worker:
                notes.append(f"skipped {label}: the deployment does not allow multi-worker placement")
                continue
            on_cpu = claim.strategy in ("partial_offload", "cpu_only") or claim.spans_worker_hosts
            if on_cpu and not deployment.allow_cpu_offload:
                notes.append(f"skipped {label}: the deployment does not allow CPU offload")
                continue
            reason = next(
                (r for p in self._builtin_filters if (r := p.check_claim(view, claim)) is not None), None
            )
            if reason is not None:
                notes.append(f"skipped {label}: {reason}")
                continue
            claims.append(claim)
        if not estimate.claims:
            notes.append("the estimate has no claims")
        return claims, notes

    @staticmethod
    def _claim_phrase(claim: ResourceClaim) -> str:
        phrase = STRATEGY_PHRASES.get(claim.strategy, claim.strategy)
        if claim.devices:
            per = max(s.memory_bytes for s in claim.devices)
            phrase += f", {len(claim.devices)} x {format_gib(per)}"
            if claim.tensor_parallel_size > 1:
                phrase += f", tp={claim.tensor_parallel_size}"
        if claim.spans_worker_hosts:
            shares = claim.worker_host_memory_bytes
            return f"{phrase}, the CPUs of {len(shares)} workers, host {format_gib(max(shares))} each"
        if claim.host_memory_bytes:
            phrase += f", host {format_gib(claim.host_memory_bytes)}"
        return phrase

    # ------------------------------------------------------------------ evaluation

    def _score(
        self, view: DecisionView, option: Option, candidate: Candidate | None, context: PolicyContext | None
    ) -> float:
        total = 0.0
        for p in self._scorers:
            if isinstance(p, BuiltinPolicy):
                value = p.value(view, option)
            else:
                assert candidate is not None
                assert context is not None
                if self._host is not None:
                    with self._host.guard("scheduler", p.name, "score"):
                        value = p.score(candidate, context)
                else:
                    value = p.score(candidate, context)
            if value is not None:
                total += p.weight * value
        return total

    def _general(
        self, view: DecisionView, claim: ResourceClaim
    ) -> tuple[tuple[Option, float] | None, int, dict[int, _Miss]]:
        """Every option through every filter; third-party policies see Candidates of survivors only."""
        state = view.state
        active = [p for p in self._builtin_filters if p.active(view)]
        worker_checks = [p for p in active if p.worker_level]
        device_checks = [p for p in active if not p.worker_level]
        worker_cache: dict[tuple[int, ...], tuple[BuiltinPolicy, str] | None] = {}

        def worker_rejection(workers: tuple[int, ...]) -> tuple[BuiltinPolicy, str] | None:
            if workers not in worker_cache:
                probe = Option(workers[0], (), claim, workers[1:])
                worker_cache[workers] = next(
                    ((p, r) for p in worker_checks if (r := p.check(view, probe)) is not None), None
                )
            return worker_cache[workers]

        prefilters = [p for p in device_checks if not isinstance(p, ResourceFit)]

        def device_ok(d: int) -> bool:
            if not prefilters:
                return True
            probe = Option(state.dev_worker[d], (d,), claim)
            return all(p.check(view, probe) is None for p in prefilters)

        def worker_ok(w: int) -> bool:
            engine_ok = all(
                p.check_worker(view, w) is None for p in device_checks if isinstance(p, EngineCompatibility)
            )
            return engine_ok and worker_rejection((w,)) is None

        context: PolicyContext | None = None
        misses: dict[int, _Miss] = {}
        best: tuple[Option, float] | None = None
        considered = 0
        for option in enumerate_options(view, claim, device_ok, worker_ok):
            considered += 1
            rejected: tuple[SchedulerPolicy, str | None] | None = worker_rejection(
                (option.worker, *option.subordinates)
            )
            if rejected is None:
                rejected = next(((p, None) for p in device_checks if p.rejects(view, option)), None)
            candidate: Candidate | None = None
            if rejected is None and (self._other_filters or self._other_scorers):
                candidate = self._candidate(state, option)
                if context is None:
                    context = PolicyContext(
                        deployment=view.deployment,
                        workers=state.workers,
                        placements=tuple(state.placements[k] for k in sorted(state.placements)),
                        engine_capabilities=view.capabilities,
                    )
                for p in self._other_filters:
                    rejection = self._third_party_filter(p, candidate, context)
                    if rejection is not None:
                        rejected = (p, rejection.reason)
                        break
            if rejected is not None:
                policy, reason = rejected
                position = self._position.get(policy.name, 0)
                if option.devices:
                    closeness = sum(state.dev_free[d] for d in option.devices)
                else:  # a worker without usable devices is never the closest for a GPU claim
                    closeness = -(1 << 62) if claim.devices else state.host_free[option.worker]
                miss = (position, closeness, policy, option, reason)
                prior = misses.get(option.worker)
                if prior is None or (position, closeness) > (prior[0], prior[1]):
                    misses[option.worker] = miss
                continue
            score = self._score(view, option, candidate, context)
            if best is None or score > best[1]:
                best = (option, score)
        return best, considered, misses

    def _third_party_filter(
        self, policy: SchedulerPolicy, candidate: Candidate, context: PolicyContext
    ) -> Rejection | None:
        if self._host is not None:
            with self._host.guard("scheduler", policy.name, "filter"):
                return policy.filter(candidate, context)
        return policy.filter(candidate, context)

    @staticmethod
    def _candidate(state: ClusterState, option: Option) -> Candidate:
        return Candidate.model_construct(
            worker=state.workers[option.worker],
            devices=tuple(state.dev_device[d] for d in option.devices),
            claim=option.claim,
            subordinate_workers=tuple(state.workers[s] for s in option.subordinates),
        )

    # ------------------------------------------------------------------ results

    @staticmethod
    def _placement(view: DecisionView, option: Option, replica: int) -> Placement:
        state = view.state
        claim = option.claim
        refs = []
        claimed: dict[str, int] = {}
        for i, d in enumerate(option.devices):
            device = state.dev_device[d]
            refs.append(
                DeviceRef(
                    worker=state.workers[state.dev_worker[d]].name,
                    accelerator=device.accelerator,
                    index=device.index,
                )
            )
            claimed[state.dev_ref[d]] = claim.devices[i].memory_bytes
        worker = state.workers[option.worker].name
        hosts = {worker: claim.host_memory_bytes} if claim.host_memory_bytes else {}
        if claim.spans_worker_hosts:
            names = [worker, *(state.workers[s].name for s in option.subordinates)]
            hosts = dict(zip(names, claim.worker_host_memory_bytes, strict=True))
        return Placement(
            deployment=view.deployment.name,
            replica=replica,
            worker=worker,
            devices=tuple(refs),
            claim=claim,
            subordinate_workers=tuple(state.workers[s].name for s in option.subordinates),
            claimed_device_memory_bytes=claimed,
            claimed_host_memory_bytes=hosts,
        )

    def _failure(
        self,
        view: DecisionView,
        replica: int,
        claims: list[ResourceClaim],
        misses_by_claim: list[tuple[ResourceClaim, dict[int, _Miss]]],
        considered: int,
        notes: list[str],
    ) -> ScheduleResult:
        state = view.state
        rejections: list[Rejection] = []
        sections: list[tuple[str, int]] = []
        first: list[Rejection] = []
        best_memory: str | None = None
        for index, (claim, misses) in enumerate(misses_by_claim):
            sections.append((claim_phrase(claim), len(misses)))
            best_fit: tuple[int, str] | None = None
            for w in range(len(state.workers)):
                miss = misses.get(w)
                if miss is None:
                    continue
                _, closeness, policy, option, reason = miss
                if reason is None and isinstance(policy, BuiltinPolicy):
                    reason = policy.check(view, option)
                rejection = Rejection(
                    policy=policy.name,
                    candidate=state.option_label(option),
                    reason=reason or "rejected",
                    claim_strategy=claim.strategy,
                )
                rejections.append(rejection)
                if index == 0:
                    first.append(rejection)
                    if policy.name == "resource_fit" and (best_fit is None or closeness > best_fit[0]):
                        best_fit = (closeness, rejection.reason)
            if index == 0 and best_fit is not None:
                best_memory = best_fit[1]
        if not claims:
            reason = "; ".join(notes) or "the estimate has no claims"
            for worker in state.workers:
                rejection = Rejection(
                    policy="scheduler", candidate=worker.name, reason=f"no allowed claim: {reason}"
                )
                rejections.append(rejection)
                first.append(rejection)
            sections.append(("no allowed claim", len(state.workers)))
        tried = [claim_phrase(claim) for claim in claims]
        summary = failure_summary(
            view.deployment.name, replica, tried, first, best_memory, len(state.workers)
        )
        if not state.workers:
            summary = (
                f"no worker fits replica {replica} of {view.deployment.name!r}: the cluster has no workers"
            )
        explanation = Explanation(summary, tuple(rejections), considered, tuple(notes), tuple(sections))
        return ScheduleResult(view.deployment.name, replica, None, explanation)
