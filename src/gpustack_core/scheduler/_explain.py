"""Explanations: why a replica went where it went, or why it fits nowhere.

Bounded for large clusters: ``rejections`` holds one entry per worker per claim tried (the candidate
of that worker that got furthest through the filters), never one per device, so its size is
O(workers x claims). :meth:`Explanation.lines` prints at most ``max_details`` detailed lines per
claim and then names every remaining worker once, grouped by the policy that rejected it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpustack_core.types import Rejection, ResourceClaim


__all__ = ["STRATEGY_PHRASES", "Explanation", "claim_phrase", "failure_summary", "policy_phrase"]

#: How summaries name claim strategies.
STRATEGY_PHRASES: dict[str, str] = {
    "single_device": "one GPU",
    "multi_device": "several GPUs of one worker",
    "multi_worker": "several workers",
    "partial_offload": "partial CPU offload",
    "cpu_only": "CPU only",
}

_POLICY_PHRASES: dict[str, str] = {
    "worker_ready": "not ready",
    "label_selector": "do not match the label selector",
    "gpu_selector": "have no selected GPU",
    "engine_compatibility": "cannot run the engine",
    "resource_fit": "lack memory",
    "scheduler": "have no allowed claim",
}


def claim_phrase(claim: ResourceClaim) -> str:
    """Short name of a claim: ``one GPU``, ``2 GPUs of one worker``, ``CPU only``..."""
    n = len(claim.devices)
    if claim.strategy == "multi_device":
        return f"{n} GPUs of one worker"
    if claim.spans_worker_hosts:
        return f"the CPUs of {len(claim.worker_host_memory_bytes)} workers"
    if claim.strategy == "multi_worker":
        return f"{n} GPUs over several workers"
    return STRATEGY_PHRASES.get(claim.strategy, claim.strategy)


def policy_phrase(policy: str) -> str:
    """``'lack memory'`` for ``resource_fit``; ``'rejected by <policy>'`` for third-party policies."""
    return _POLICY_PHRASES.get(policy, f"rejected by {policy}")


@dataclass(frozen=True)
class Explanation:
    """The reasoning behind one scheduling decision.

    Attributes:
        summary: one line a person understands.
        rejections: for an unplaced replica, one rejection per worker per claim tried (every worker
            is named); for a placed one, usually empty.
        candidates_considered: candidate placements (device sets) examined.
        notes: claims skipped and why, policies that failed to load, and similar facts.
    """

    summary: str
    rejections: tuple[Rejection, ...] = ()
    candidates_considered: int = 0
    notes: tuple[str, ...] = field(default=())
    #: (claim phrase, number of rejections) for each claim tried, in order; splits ``rejections``
    sections: tuple[tuple[str, int], ...] = field(default=())

    def lines(self, max_details: int = 20) -> list[str]:
        """Human-readable lines: summary, notes, then per claim up to ``max_details`` reasons.

        Workers beyond the cap are still named, grouped by the policy that rejected them.
        """
        out = [self.summary]
        out.extend(f"note: {note}" for note in self.notes)
        sections = self.sections or (("candidates", len(self.rejections)),)
        start = 0
        for phrase, count in sections:
            rejections = self.rejections[start : start + count]
            start += count
            out.append(f"{phrase}: {len(rejections)} worker(s) rejected")
            for rejection in rejections[:max_details]:
                out.append(f"  {rejection.candidate}: {rejection.reason} [{rejection.policy}]")
            rest = rejections[max_details:]
            if rest:
                grouped: dict[str, list[str]] = {}
                for rejection in rest:
                    grouped.setdefault(rejection.policy, []).append(rejection.candidate.split(":")[0])
                more = "more " if max_details else ""
                for policy, names in grouped.items():
                    out.append(f"  {len(names)} {more}{policy_phrase(policy)} [{policy}]: {', '.join(names)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "summary": self.summary,
            "candidates_considered": self.candidates_considered,
            "notes": list(self.notes),
            "rejections": [r.model_dump(mode="json") for r in self.rejections],
        }


def failure_summary(
    deployment: str,
    replica: int,
    strategies: Sequence[str],
    first: Sequence[Rejection],
    best_memory: str | None,
    worker_count: int,
) -> str:
    """One line: ``no worker fits replica 0 of 'x' (...): 3 workers not ready, 5 lack memory (best: ...)``."""
    counts: dict[str, int] = {}
    for rejection in first:
        counts[rejection.policy] = counts.get(rejection.policy, 0) + 1
    parts = [
        f"{n} worker{'s' if n != 1 else ''} {policy_phrase(policy)}"
        for policy, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    tried = ", ".join(strategies) or "nothing"
    text = f"no worker fits replica {replica} of {deployment!r} (of {worker_count} workers; tried: {tried})"
    if parts:
        text += ": " + ", ".join(parts)
    if best_memory:
        text += f" (best: {best_memory})"
    return text
