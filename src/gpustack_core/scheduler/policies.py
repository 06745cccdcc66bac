"""Built-in scheduler policies, registered through the scheduler hook as the ``builtin`` plugin.

Filters, in order: :class:`WorkerReady`, :class:`LabelSelector`, :class:`GpuSelector`,
:class:`EngineCompatibility`, :class:`ResourceFit`. Scorers: :class:`ModelCached`,
:class:`Binpack`, :class:`Spread`.

Each built-in implements the public :class:`~gpustack_core.contracts.SchedulerPolicy` contract
(``filter``/``score`` on a :class:`~gpustack_core.types.Candidate`) and, for speed, the same logic
on index-form options (:meth:`BuiltinPolicy.check`, :meth:`BuiltinPolicy.value`), which the
scheduler calls without building a pydantic object per candidate. Both paths share one
implementation, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from gpustack_core.contracts import SchedulerPolicy
from gpustack_core.hookspecs import hookimpl

from ._state import Option, format_gib
from ._view import DecisionView, option_from_candidate, view_from_context

if TYPE_CHECKING:
    from gpustack_core.types import Candidate, LabelRequirement, PolicyContext, Rejection, ResourceClaim


__all__ = [
    "Binpack",
    "BuiltinPolicy",
    "EngineCompatibility",
    "GpuSelector",
    "LabelSelector",
    "ModelCached",
    "ResourceFit",
    "Spread",
    "WorkerReady",
    "binpack_value",
    "builtin_policies",
    "cached_value",
    "gpustack_register_scheduler_policies",
    "spread_value",
    "usage_after",
]


class BuiltinPolicy(SchedulerPolicy):
    """A policy with a fast index-form implementation the scheduler uses directly."""

    #: True when :meth:`check` depends only on the option's workers (not its devices or claim).
    worker_level: ClassVar[bool] = False

    def active(self, view: DecisionView) -> bool:
        """False when the policy cannot reject anything for this deployment (lets the scheduler skip it)."""
        return True

    def check_claim(self, view: DecisionView, claim: ResourceClaim) -> str | None:
        """Reject a whole claim (every candidate for it) regardless of where it would go."""
        return None

    def check(self, view: DecisionView, option: Option) -> str | None:
        """Index-form filter: a reason with numbers, or ``None`` to accept."""
        return self.check_claim(view, option.claim)

    def rejects(self, view: DecisionView, option: Option) -> bool:
        """Whether :meth:`check` rejects, without formatting the reason (override when cheaper)."""
        return self.check(view, option) is not None

    def value(self, view: DecisionView, option: Option) -> float | None:
        """Index-form score in ``[0, 100]``, or ``None`` for no opinion."""
        return None

    def filter(self, candidate: Candidate, context: PolicyContext) -> Rejection | None:
        """Contract form of :meth:`check` (builds the cluster state from ``context``: slow)."""
        from gpustack_core.types.scheduling import Rejection

        view = view_from_context(context)
        reason = self.check(view, option_from_candidate(view, candidate))
        if reason is None:
            return None
        return Rejection(
            policy=self.name,
            candidate=candidate.label,
            reason=reason,
            claim_strategy=candidate.claim.strategy,
        )

    def score(self, candidate: Candidate, context: PolicyContext) -> float | None:
        """Contract form of :meth:`value`."""
        view = view_from_context(context)
        return self.value(view, option_from_candidate(view, candidate))


def _workers_of(option: Option) -> tuple[int, ...]:
    return (option.worker, *option.subordinates)


class WorkerReady(BuiltinPolicy):
    """Only workers in state ``ready`` (head and subordinates) take placements."""

    name = "worker_ready"
    worker_level = True

    def check(self, view: DecisionView, option: Option) -> str | None:
        """Reject when a worker of the option is not ready."""
        state = view.state
        for w in _workers_of(option):
            if not state.worker_ready[w]:
                worker = state.workers[w]
                return f"{worker.name} is {worker.state.value.replace('_', ' ')}"
        return None


def _label_matches(labels: dict[str, str], req: LabelRequirement) -> bool:
    value = labels.get(req.key)
    if req.operator == "exists":
        return value is not None
    if req.operator == "in":
        return value in req.values
    expected = req.values[0] if req.values else ""
    if req.operator == "equals":
        return value == expected
    return value != expected


def _describe_requirement(req: LabelRequirement) -> str:
    if req.operator == "exists":
        return f"label {req.key!r} to exist"
    if req.operator == "in":
        return f"{req.key} in ({', '.join(req.values)})"
    symbol = "=" if req.operator == "equals" else "!="
    return f"{req.key}{symbol}{req.values[0] if req.values else ''}"


class LabelSelector(BuiltinPolicy):
    """Worker labels must satisfy every term of ``Deployment.label_selector``."""

    name = "label_selector"
    worker_level = True

    def active(self, view: DecisionView) -> bool:
        """Active only when the deployment has a label selector."""
        return bool(view.deployment.label_selector)

    def check(self, view: DecisionView, option: Option) -> str | None:
        """Reject when a worker of the option misses a term; names the term and the worker's value."""
        for w in _workers_of(option):
            worker = view.state.workers[w]
            for req in view.deployment.label_selector:
                if not _label_matches(worker.labels, req):
                    actual = worker.labels.get(req.key)
                    shown = "unset" if actual is None else repr(actual)
                    return f"needs {_describe_requirement(req)}; {worker.name} has {req.key} {shown}"
        return None


class GpuSelector(BuiltinPolicy):
    """Explicit devices (``Deployment.gpu_selector``) and the GPU count per replica."""

    name = "gpu_selector"

    def active(self, view: DecisionView) -> bool:
        """Active when the deployment selects devices or fixes the GPU count."""
        return bool(view.selected_refs) or view.deployment.gpus_per_replica is not None

    def check_claim(self, view: DecisionView, claim: ResourceClaim) -> str | None:
        """Reject claims whose device count differs from ``gpus_per_replica``."""
        wanted = view.deployment.gpus_per_replica
        if wanted is not None and claim.device_count != wanted:
            return f"deployment asks for {wanted} GPU(s) per replica; this claim uses {claim.device_count}"
        return None

    def check(self, view: DecisionView, option: Option) -> str | None:
        """Reject devices outside the selector, and workers the selector does not name."""
        reason = self.check_claim(view, option.claim)
        if reason is not None or not view.selected_refs:
            return reason
        state = view.state
        for w in _workers_of(option):
            name = state.workers[w].name
            if name not in view.selected_workers:
                return f"{name} has no device in the GPU selector ({', '.join(sorted(view.selected_refs))})"
        for d in option.devices:
            if state.dev_ref[d] not in view.selected_refs:
                return (
                    f"{state.dev_ref[d]} is not in the GPU selector ({', '.join(sorted(view.selected_refs))})"
                )
        return None


class EngineCompatibility(BuiltinPolicy):
    """The worker must run the deployment's engine; devices must be of a vendor the engine supports.

    Data-driven: ``WorkerInfo.engines`` (empty means not reported, so not checked) and, when the
    caller supplies them, ``PolicyContext.engine_capabilities`` (vendors, tensor parallelism,
    multi-worker, CPU offload).
    """

    name = "engine_compatibility"

    def active(self, view: DecisionView) -> bool:
        """Active when capabilities are known or some worker reports its engines."""
        return view.capabilities is not None or view.state.any_engines

    def check_claim(self, view: DecisionView, claim: ResourceClaim) -> str | None:
        """Reject strategies the engine cannot run (tensor parallel, multi-worker, offload, CPU) and
        performance presets it does not claim (mode, speculative method, KV-cache extension)."""
        from gpustack_core.types.performance import preset_refusal

        caps = view.capabilities
        if caps is None:
            return None
        engine = view.deployment.engine
        refusal = preset_refusal(engine, caps, view.deployment.performance)
        if refusal is not None:
            return refusal
        if claim.strategy == "multi_device" and claim.tensor_parallel_size > 1 and not caps.tensor_parallel:
            return f"engine {engine} does not support tensor parallelism"
        splits = caps.pipeline_parallel or caps.tensor_parallel
        if claim.strategy == "multi_device" and claim.tensor_parallel_size == 1 and not splits:
            # tensor_parallel_size 1 over several devices: a layer (pipeline) split
            return f"engine {engine} cannot split a model over several GPUs"
        if claim.strategy == "multi_worker" and not caps.multi_worker:
            return f"engine {engine} cannot spread one replica over several workers"
        if claim.strategy == "partial_offload" and not caps.cpu_offload:
            return f"engine {engine} cannot offload layers to the CPU"
        if (claim.strategy == "cpu_only" or claim.spans_worker_hosts) and "cpu" not in caps.vendors:
            return f"engine {engine} does not run on the CPU"
        return None

    def check_worker(self, view: DecisionView, w: int) -> str | None:
        """Reject a worker that reports its engines and lacks this one."""
        worker = view.state.workers[w]
        engine = view.deployment.engine
        if worker.engines and engine not in worker.engines:
            return f"{worker.name} runs engines {', '.join(worker.engines)}; not {engine}"
        return None

    def allowed_vendors(self, view: DecisionView) -> frozenset[str] | None:
        """Device vendors the engine supports, or ``None`` when unknown (all allowed)."""
        return None if view.capabilities is None else frozenset(view.capabilities.vendors)

    def check(self, view: DecisionView, option: Option) -> str | None:
        """Claim support, then each worker's engines, then each device's vendor."""
        reason = self.check_claim(view, option.claim)
        if reason is not None:
            return reason
        for w in _workers_of(option):
            reason = self.check_worker(view, w)
            if reason is not None:
                return reason
        vendors = self.allowed_vendors(view)
        if vendors is not None:
            state = view.state
            for d in option.devices:
                if state.dev_vendor[d] not in vendors:
                    return (
                        f"{state.dev_ref[d]} is {state.dev_vendor[d]}; engine {view.deployment.engine} "
                        f"runs on {', '.join(sorted(vendors))}"
                    )
        return None


def _free_list(view: DecisionView, w: int, limit: int = 8) -> str:
    state = view.state
    devs = sorted(state.worker_devices[w], key=lambda d: (-state.dev_free[d], d))
    shown = [
        f"{state.dev_device[d].accelerator}:{state.dev_device[d].index} {format_gib(state.dev_free[d])}"
        for d in devs[:limit]
    ]
    more = f", +{len(devs) - limit} more" if len(devs) > limit else ""
    return ", ".join(shown) + more


class ResourceFit(BuiltinPolicy):
    """Every device share and the host share must fit in free memory (see ``_state`` for the formula)."""

    name = "resource_fit"

    def rejects(self, view: DecisionView, option: Option) -> bool:
        """The numeric test of :meth:`check`, without building the reason."""
        state = view.state
        if option.claim.spans_worker_hosts:
            return _host_shares_short(view, option) is not None
        shares = option.claim.devices
        if len(option.devices) < len(shares):
            return True
        free = state.dev_free
        for i, d in enumerate(option.devices):
            if i < len(shares) and free[d] < shares[i].memory_bytes:
                return True
        host_need = option.claim.host_memory_bytes
        return host_need > 0 and state.host_free[option.worker] < host_need

    def check(self, view: DecisionView, option: Option) -> str | None:
        """Reject when a device or the host lacks memory; the reason carries needed and free bytes."""
        state = view.state
        claim = option.claim
        if claim.spans_worker_hosts:
            return _host_shares_short(view, option)
        shares = claim.devices
        worker = state.workers[option.worker]
        if len(option.devices) < len(shares):
            need = max(s.memory_bytes for s in shares)
            if claim.strategy == "multi_worker":
                return (
                    f"needs {len(shares)} GPUs with {format_gib(need)} free across workers; "
                    f"only {len(option.devices)} fit in the cluster"
                )
            if not state.worker_devices[option.worker]:
                where = "one GPU" if len(shares) == 1 else f"each of {len(shares)} GPUs"
                return f"needs {format_gib(need)} on {where}; {worker.name} has no GPU"
            return (
                f"needs {len(shares)} GPUs with {format_gib(need)} free on one worker; {worker.name} has "
                f"{len(option.devices)} usable (free: {_free_list(view, option.worker)})"
            )
        for i, d in enumerate(option.devices):
            need = shares[i].memory_bytes if i < len(shares) else 0
            free = state.dev_free[d]
            if free < need:
                if len(shares) == 1:
                    return (
                        f"needs {format_gib(need)} on one GPU; {state.dev_ref[d]} has {format_gib(free)} free"
                    )
                return (
                    f"needs {len(shares)} GPUs with {format_gib(need)} free; {state.dev_ref[d]} has "
                    f"{format_gib(free)} free (worker free: {_free_list(view, state.dev_worker[d])})"
                )
        host_need = claim.host_memory_bytes
        if host_need > 0 and state.host_free[option.worker] < host_need:
            return (
                f"needs {format_gib(host_need)} host memory; {worker.name} has "
                f"{format_gib(state.host_free[option.worker])} free"
            )
        return None


def _host_shares_short(view: DecisionView, option: Option) -> str | None:
    """Why a split over workers' CPUs does not fit (each worker's host share), or ``None``."""
    state = view.state
    shares = option.claim.worker_host_memory_bytes
    workers = (option.worker, *option.subordinates)
    if len(workers) < len(shares):
        return (
            f"needs {len(shares)} workers with {format_gib(max(shares[1:]))} host memory free besides "
            f"{format_gib(shares[0])} on {state.workers[option.worker].name}; only {len(workers)} fit in "
            "the cluster"
        )
    for w, need in zip(workers, shares, strict=False):
        if state.host_free[w] < need:
            return (
                f"needs {format_gib(need)} host memory on {state.workers[w].name}, which has "
                f"{format_gib(state.host_free[w])} free"
            )
    return None


def usage_after(alloc: int, free: int, need: int) -> float:
    """Fraction of ``alloc`` in use once ``need`` more is taken (1.0 when nothing is allocatable)."""
    if alloc <= 0:
        return 1.0
    return min(1.0, max(0.0, (alloc - free + need) / alloc))


def _mean_usage_after(view: DecisionView, option: Option) -> float:
    state = view.state
    if not option.devices:
        return usage_after(
            state.host_alloc[option.worker], state.host_free[option.worker], option.claim.host_memory_bytes
        )
    shares = option.claim.devices
    if len(option.devices) == 1:
        d = option.devices[0]
        return usage_after(state.dev_alloc[d], state.dev_free[d], shares[0].memory_bytes if shares else 0)
    total = 0.0
    for i, d in enumerate(option.devices):
        need = shares[i].memory_bytes if i < len(shares) else 0
        total += usage_after(state.dev_alloc[d], state.dev_free[d], need)
    return total / len(option.devices)


def cached_value(cached_models: tuple[str, ...], keys: frozenset[str]) -> float:
    """:class:`ModelCached`'s score: 100 when any of ``cached_models`` is one of ``keys``."""
    for key in cached_models:
        if key in keys:
            return 100.0
    return 0.0


def binpack_value(usage: float) -> float:
    """:class:`Binpack`'s score from the mean usage fraction after placing."""
    return 100.0 * usage


def spread_value(usage: float, replicas_here: int) -> float:
    """:class:`Spread`'s score from the mean usage after placing and the replicas already there."""
    return 100.0 * (1.0 - usage) / (1 + replicas_here)


class ModelCached(BuiltinPolicy):
    """Prefers workers that already hold the model's files (no download)."""

    name = "model_cached"
    weight = 0.5

    def value(self, view: DecisionView, option: Option) -> float | None:
        """100 when the head worker lists the model in ``cached_models``, else 0."""
        return cached_value(view.state.workers[option.worker].cached_models, view.cached_keys)


class Binpack(BuiltinPolicy):
    """For ``placement_strategy='binpack'``: prefers devices that end up fullest."""

    name = "binpack"

    def value(self, view: DecisionView, option: Option) -> float | None:
        """100 x mean fraction of the devices (or host) in use after placing; ``None`` for spread."""
        if view.deployment.placement_strategy != "binpack":
            return None
        return binpack_value(_mean_usage_after(view, option))


class Spread(BuiltinPolicy):
    """For ``placement_strategy='spread'``: prefers empty devices and workers without this deployment."""

    name = "spread"

    def value(self, view: DecisionView, option: Option) -> float | None:
        """100 x mean free fraction after placing, divided by 1 + replicas already on the worker."""
        if view.deployment.placement_strategy != "spread":
            return None
        return spread_value(
            _mean_usage_after(view, option), view.state.replicas_on(view.deployment.name, option.worker)
        )


def builtin_policies() -> list[SchedulerPolicy]:
    """Fresh instances of every built-in policy, filters first, in pipeline order."""
    return [
        WorkerReady(),
        LabelSelector(),
        GpuSelector(),
        EngineCompatibility(),
        ResourceFit(),
        ModelCached(),
        Binpack(),
        Spread(),
    ]


@hookimpl
def gpustack_register_scheduler_policies(register: Callable[[SchedulerPolicy], None]) -> None:
    """Register the built-in policies (entry point ``builtin`` in group ``gpustack_core.scheduler``)."""
    for policy in builtin_policies():
        register(policy)
