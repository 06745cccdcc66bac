"""What built-in policies read while judging candidates for one deployment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gpustack_core.errors import SchedulingError

from ._state import ClusterState, Option

if TYPE_CHECKING:
    from gpustack_core.types import Candidate, Deployment, EngineCapabilities, PolicyContext


__all__ = ["DecisionView", "model_keys", "option_from_candidate", "view_from_context"]


def model_keys(deployment: Deployment) -> frozenset[str]:
    """Keys under which a worker may list the deployment's model in ``cached_models``.

    The full reference text (``huggingface:org/repo@rev#Q4_K_M``) and ``source:id`` both count.
    """
    model = deployment.model
    return frozenset({str(model), f"{model.source}:{model.id}"})


@dataclass
class DecisionView:
    """The cluster state plus the deployment being placed and what is known of its engine."""

    state: ClusterState
    deployment: Deployment
    capabilities: EngineCapabilities | None = None
    cached_keys: frozenset[str] = field(init=False)
    selected_refs: frozenset[str] = field(init=False)
    selected_workers: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.cached_keys = model_keys(self.deployment)
        self.selected_refs = frozenset(str(ref) for ref in self.deployment.gpu_selector)
        self.selected_workers = frozenset(ref.worker for ref in self.deployment.gpu_selector)


def view_from_context(context: PolicyContext) -> DecisionView:
    """A view built from a policy context (the slow, contract path: O(devices + placements))."""
    return DecisionView(
        ClusterState(context.workers, context.placements), context.deployment, context.engine_capabilities
    )


def option_from_candidate(view: DecisionView, candidate: Candidate) -> Option:
    """The index form of ``candidate`` in ``view``'s state.

    Raises:
        SchedulingError: the candidate's worker or devices are not in the context.
    """
    state = view.state
    w = state.worker_index.get(candidate.worker.name)
    if w is None:
        raise SchedulingError(
            f"candidate worker {candidate.worker.name!r} is not among the context's workers"
        )
    subs: list[int] = []
    for sub in candidate.subordinate_workers:
        s = state.worker_index.get(sub.name)
        if s is None:
            raise SchedulingError(f"subordinate worker {sub.name!r} is not among the context's workers")
        subs.append(s)
    devices = state.option_for_devices(
        candidate.worker.name, candidate.devices, [s.name for s in candidate.subordinate_workers]
    )
    return Option(w, tuple(devices), candidate.claim, tuple(subs))
