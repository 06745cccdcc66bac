"""The scheduler-policy interface: filters veto candidates, scorers rank the survivors."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # the value types (pydantic) load on use: listing plugins does not need them
    from ..types import Candidate, PolicyContext, Rejection

__all__ = ["SchedulerPolicy"]


class SchedulerPolicy:
    """A filter, a scorer, or both, applied by the scheduler to every candidate placement.

    Register instances through :func:`gpustack_core.hookspecs.gpustack_register_scheduler_policies`.
    Policies must be pure: the same candidate and context give the same answer.
    """

    #: Unique plugin-object name, e.g. ``"resource_fit"``.
    name: ClassVar[str] = ""
    #: Multiplier applied to :meth:`score` when scores of several policies are summed.
    weight: ClassVar[float] = 1.0

    def filter(self, candidate: Candidate, context: PolicyContext) -> Rejection | None:
        """Decide whether ``candidate`` may be used at all.

        Parameters:
            candidate: a worker, a device set on it, and the claim to satisfy.
            context: the deployment, all workers and existing placements.

        Returns:
            ``None`` to accept, or a :class:`Rejection` whose ``reason`` carries numbers a person can
            act on. Filters run in registration order; the first rejection ends the candidate.
        """
        return None

    def score(self, candidate: Candidate, context: PolicyContext) -> float | None:
        """Rank an accepted candidate.

        Parameters:
            candidate: a candidate every filter accepted.
            context: as for :meth:`filter`.

        Returns:
            A score in ``[0, 100]`` (higher is better), or ``None`` for no opinion. The scheduler sums
            ``weight * score`` over policies and picks the highest; ties go to the candidate that
            comes first in the scheduler's fixed order (workers by name, devices by accelerator
            and index), so the result is deterministic.
        """
        return None
