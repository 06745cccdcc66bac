"""Evaluate a deployment without creating it: the estimate and the scheduler's dry run.

The answer is what the controllers would do with the deployment now, against the stored cluster
(ready workers, placements of running and starting instances): the memory claim per device, the
worker and devices that would take replica 0, or every worker's reason for refusing it, with numbers.
Placements of a deployment of the same name are left out, so that evaluating an edit is not
refused because of the instances the edit replaces.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from pydantic import BaseModel

from gpustack_core.errors import GPUStackError
from gpustack_core.scheduler import ClusterState
from gpustack_core.server.store.records import ACTIVE_STATES
from gpustack_core.types import Deployment, Placement, ResourceEstimate

from ._framework import Endpoint, Request
from .deployments import DeploymentCreate, check_engine

__all__ = ["ENDPOINTS", "Evaluation"]


class Evaluation(BaseModel):
    """Would the deployment fit, where, and why (not)."""

    fits: bool
    summary: str
    estimate: ResourceEstimate | None = None
    placement: Placement | None = None
    explanation: dict[str, Any] | None = None
    ready_workers: list[str]
    error: str | None = None


def _evaluate(req: Request, spec: Deployment) -> Evaluation:
    services = req.services
    controllers = req.raw.app.state.controllers
    workers, _ = services.store.list_workers(limit=1_000_000)
    ready = [w for w in workers if w.state == "ready"]
    names = [w.name for w in ready]
    try:
        estimate: ResourceEstimate = controllers.estimates.estimate(spec)
    except GPUStackError as exc:
        return Evaluation(
            fits=False,
            summary=f"cannot estimate the model's resources: {exc}",
            ready_workers=names,
            error=str(exc),
        )
    instances, _ = services.store.list_instances(1_000_000, states=[s.value for s in ACTIVE_STATES])
    placements = []
    for inst in instances:
        if inst.placement is None or inst.deployment == spec.name:
            continue
        try:
            placement = Placement.model_validate(inst.placement)
        except ValueError:
            continue
        if placement.worker in names:
            placements.append(placement)
    state = ClusterState([w.info for w in ready], placements)
    try:
        capabilities = services.host.engine(spec.engine).capabilities()
    except GPUStackError:
        capabilities = None
    try:
        result = controllers.scheduler.schedule_in(state, spec, estimate, 0, engine_capabilities=capabilities)
    except GPUStackError as exc:
        return Evaluation(
            fits=False,
            summary=f"the scheduler refused the input: {exc}",
            estimate=estimate,
            ready_workers=names,
            error=str(exc),
        )
    explanation = result.explanation.to_dict()
    if result.placement is None:
        summary = result.explanation.summary if ready else "no ready workers"
        return Evaluation(
            fits=False, summary=summary, estimate=estimate, explanation=explanation, ready_workers=names
        )
    devices = ", ".join(str(d) for d in result.placement.devices) or "CPU only"
    return Evaluation(
        fits=True,
        summary=f"fits on worker {result.placement.worker} ({devices}; {result.placement.claim.strategy})",
        estimate=estimate,
        placement=result.placement,
        explanation=explanation,
        ready_workers=names,
    )


async def evaluate_deployment(req: Request) -> Evaluation:
    """Estimate a deployment and dry-run the scheduler on the live cluster; nothing is stored."""
    spec = Deployment.model_validate(req.body.model_dump())
    check_engine(req, spec)
    return await anyio.to_thread.run_sync(_evaluate, req, spec)


ENDPOINTS = (
    Endpoint(
        "POST",
        "/deployment-evaluations",
        evaluate_deployment,
        "evaluate a deployment without creating it (estimate + scheduler dry run)",
        "deployments",
        auth="management",
        body=DeploymentCreate,
        response=Evaluation,
    ),
)
