"""What scheduler policies see and return."""

from __future__ import annotations

from pydantic import Field

from ._base import ValueModel
from .deployments import Deployment, Placement
from .devices import Device
from .engines import EngineCapabilities
from .resources import ClaimStrategy, ResourceClaim
from .workers import WorkerInfo

__all__ = ["Candidate", "PolicyContext", "Rejection"]


class Candidate(ValueModel):
    """One way to place a replica: a worker, a set of its devices, and the claim it would satisfy."""

    worker: WorkerInfo
    devices: tuple[Device, ...] = ()
    claim: ResourceClaim
    subordinate_workers: tuple[WorkerInfo, ...] = ()

    @property
    def label(self) -> str:
        """``worker`` or ``worker:acc:0,1``: how explanations name the candidate."""
        if not self.devices:
            return self.worker.name
        indices = ",".join(str(d.index) for d in self.devices)
        return f"{self.worker.name}:{self.devices[0].accelerator}:{indices}"


class PolicyContext(ValueModel):
    """The cluster as a policy sees it while judging candidates for one deployment."""

    deployment: Deployment
    workers: tuple[WorkerInfo, ...]
    placements: tuple[Placement, ...] = Field(default=(), description="existing placements, all deployments")
    engine_capabilities: EngineCapabilities | None = Field(
        default=None, description="capabilities of the deployment's engine, where the caller knows them"
    )


class Rejection(ValueModel):
    """Why a filter policy turned a candidate down, with the numbers a person needs."""

    policy: str
    candidate: str
    reason: str = Field(description="e.g. 'needs 14.2 GiB on one GPU; worker-a:cuda:0 has 9.8 GiB free'")
    claim_strategy: ClaimStrategy | None = Field(
        default=None, description="strategy of the claim the candidate was judged for, where known"
    )
