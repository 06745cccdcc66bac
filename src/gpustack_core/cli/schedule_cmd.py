"""``gpustack-core schedule``: run the scheduler on a JSON description of a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpustack_core.errors import GPUStackError
from gpustack_core.scheduler import Scheduler, ScheduleResult
from gpustack_core.types import Deployment, EngineCapabilities, Placement, ResourceEstimate, WorkerInfo

from ._common import console, make_host, print_json

__all__ = ["ClusterDescription", "register"]


class ClusterDescription(BaseModel):
    """The input file: the cluster, existing placements, and the deployment to place."""

    model_config = ConfigDict(extra="forbid")

    workers: tuple[WorkerInfo, ...]
    placements: tuple[Placement, ...] = ()
    deployment: Deployment
    estimate: ResourceEstimate
    engine_capabilities: EngineCapabilities | None = Field(
        default=None, description="of the deployment's engine"
    )


def _load(path: Path) -> ClusterDescription:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{path} is not valid JSON: {exc}") from exc
    try:
        return ClusterDescription.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()[:10]
        )
        raise typer.BadParameter(
            f"{path} does not describe a cluster ({problems}); see docs/examples/cluster.json for the format"
        ) from exc


def _placement_line(result: ScheduleResult) -> str:
    placement = result.placement
    assert placement is not None
    devices = ", ".join(str(ref) for ref in placement.devices) or "CPU only"
    subs = (
        f" + subordinates {', '.join(placement.subordinate_workers)}" if placement.subordinate_workers else ""
    )
    return f"replica {result.replica}: {placement.worker} [{devices}]{subs} ({placement.claim.strategy})"


def schedule(
    cluster: Annotated[Path, typer.Argument(help="JSON file: workers, placements, deployment, estimate.")],
    explain: bool = typer.Option(False, "--explain", help="Print the reasoning for every decision."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    max_details: int = typer.Option(
        20, "--max-details", min=0, help="Detailed reasons per claim in text output."
    ),
) -> None:
    """Place the missing replicas of the described deployment; explain any that fit nowhere.

    Exits 1 when a replica could not be placed.
    """
    description = _load(cluster)
    scheduler = Scheduler.from_host(make_host())
    try:
        results = scheduler.schedule_replicas(
            description.deployment,
            description.estimate,
            description.workers,
            description.placements,
            engine_capabilities=description.engine_capabilities,
        )
    except GPUStackError as exc:
        raise typer.BadParameter(str(exc)) from exc
    failed = any(r.placement is None for r in results)
    if as_json:
        print_json(
            {
                "deployment": description.deployment.name,
                "results": [
                    {
                        "replica": r.replica,
                        "placement": None if r.placement is None else r.placement.model_dump(mode="json"),
                        "explanation": r.explanation.to_dict(),
                    }
                    for r in results
                ],
            }
        )
    else:
        out = console()
        if not results:
            out.print(f"every replica of {description.deployment.name!r} is already placed")
        for result in results:
            if result.placement is not None:
                out.print(_placement_line(result), highlight=False, markup=False)
                if explain:
                    out.print(f"  {result.explanation.summary}", highlight=False, markup=False)
            else:
                lines = result.explanation.lines(max_details if explain else 0)
                for line in lines:
                    out.print(line, highlight=False, markup=False)
    if failed:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the ``schedule`` command."""
    app.command("schedule")(schedule)
