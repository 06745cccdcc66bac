"""Deployments (create, update, scale, delete) and their instances."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from pydantic import BaseModel, Field, ValidationError, field_validator

from gpustack_core.errors import GPUStackError, PluginNotFoundError
from gpustack_core.server.planning import detect_deployment_category
from gpustack_core.server.store import ConflictError
from gpustack_core.server.store.records import DeploymentRecord, InstanceRecord, Page
from gpustack_core.types import Deployment, DeviceRef, LabelRequirement, ModelRef

from ._common import PAGE_QUERY, not_found, page, page_args
from ._framework import ApiError, Endpoint, Query, Request, validation_detail

__all__ = [
    "ENDPOINTS",
    "ENV_MASK",
    "DeploymentCreate",
    "DeploymentPatch",
    "DeploymentView",
    "ScaleRequest",
    "check_engine",
    "masked",
]

#: What the API shows instead of a deployment's ``env`` values: they are write-only (tokens such as
#: ``HF_TOKEN`` live there) and reach only the worker that starts the engine. A PATCH that sends
#: this value back for a variable keeps the stored value.
ENV_MASK = "********"


def masked(dep: DeploymentRecord) -> DeploymentRecord:
    """``dep`` with its ``env`` values replaced by :data:`ENV_MASK`."""
    if not dep.spec.env:
        return dep
    spec = dep.spec.model_copy(update={"env": dict.fromkeys(dep.spec.env, ENV_MASK)})
    return dep.model_copy(update={"spec": spec})


def _parse_ref(value: Any) -> Any:
    return ModelRef.parse(value) if isinstance(value, str) else value


class DeploymentCreate(Deployment):
    """A deployment; ``model`` may be the text form ``SOURCE:ID[@REVISION][#SELECTOR]``."""

    @field_validator("model", mode="before")
    @classmethod
    def _model_text(cls, value: Any) -> Any:
        return _parse_ref(value)


class DeploymentPatch(BaseModel):
    """Fields of a deployment to change; every field of the create body except ``name``."""

    model_config = {"extra": "forbid"}

    model: ModelRef | str | None = None
    engine: str | None = None
    engine_version: str | None = None
    replicas: int | None = Field(default=None, ge=0)
    extra_args: tuple[str, ...] | None = None
    env: dict[str, str] | None = None
    served_model_name: str | None = None
    context_length: int | None = Field(default=None, ge=1)
    gpus_per_replica: int | None = Field(default=None, ge=0)
    placement_strategy: str | None = None
    category: str | None = None
    label_selector: tuple[LabelRequirement, ...] | None = None
    gpu_selector: tuple[DeviceRef, ...] | None = None
    allow_cpu_offload: bool | None = None
    allow_multi_worker: bool | None = None


class ScaleRequest(BaseModel):
    """The new replica count."""

    replicas: int = Field(ge=0, le=1000)


class DeploymentView(BaseModel):
    """A deployment with its instances."""

    deployment: DeploymentRecord
    instances: list[InstanceRecord]


def check_engine(req: Request, spec: Deployment) -> None:
    """Refuse (422 on the field) an unknown engine or model source, or engine flags it owns."""
    host = req.services.host
    try:
        engine = host.engine(spec.engine)
    except PluginNotFoundError as exc:
        names = sorted(e.name for e in host.engines())
        raise ApiError(
            422,
            [
                {
                    "loc": ["body", "engine"],
                    "msg": f"unknown engine {spec.engine!r}; installed: {names}",
                    "type": "engine",
                }
            ],
        ) from exc
    try:
        engine.validate_extra_args(spec.extra_args)
    except GPUStackError as exc:
        raise ApiError(
            422, [{"loc": ["body", "extra_args"], "msg": str(exc), "type": "engine_args"}]
        ) from exc
    if spec.model.source not in {s.name for s in host.model_sources()}:
        names = sorted(s.name for s in host.model_sources())
        raise ApiError(
            422,
            [
                {
                    "loc": ["body", "model"],
                    "msg": f"unknown model source {spec.model.source!r}; installed: {names}",
                    "type": "source",
                }
            ],
        )


async def _get(req: Request) -> DeploymentRecord:
    ref = req.path_params["deployment"]
    dep = await req.db(req.services.store.get_deployment, ref)
    if dep is None:
        raise not_found("deployment", ref)
    return dep


async def list_deployments(req: Request) -> Page:
    """List deployments."""
    limit, offset = page_args(req)
    items, total = await req.db(req.services.store.list_deployments, limit, offset, req.query["name"])
    return page(([masked(d) for d in items], total), req)


async def create_deployment(req: Request) -> DeploymentRecord:
    """Create a deployment; the controllers create and schedule its instances. Without a
    ``category`` in the body, the model's own (GGUF pooling type or architecture, ``config.json``)
    is used."""
    spec = Deployment.model_validate(req.body.model_dump())
    _refuse_masked_env(spec.env, {})
    check_engine(req, spec)
    if "category" not in req.body.model_fields_set:
        cache = req.services.config.data_dir / "models"
        detected = await anyio.to_thread.run_sync(detect_deployment_category, req.services.host, spec, cache)
        if detected is not None and detected != spec.category:
            spec = spec.model_copy(update={"category": detected})
    try:
        return masked(await req.db(req.services.store.create_deployment, spec))
    except ConflictError as exc:
        raise ApiError(409, str(exc)) from exc


def _refuse_masked_env(env: dict[str, str], stored: dict[str, str]) -> None:
    """422 for an ``env`` value that is the mask but names no stored variable (a duplicated
    deployment's secrets are not copied: the client must send their values)."""
    unknown = sorted(name for name, value in env.items() if value == ENV_MASK and name not in stored)
    if unknown:
        raise ApiError(
            422,
            f"env {', '.join(unknown)}: {ENV_MASK!r} is the mask the API shows for stored values; "
            "send the real value (values are not copied from another deployment)",
        )


async def get_deployment(req: Request) -> DeploymentView:
    """A deployment with its instances."""
    dep = await _get(req)
    instances, _ = await req.db(req.services.store.list_instances, deployment_id=dep.id)
    return DeploymentView(deployment=masked(dep), instances=instances)


async def update_deployment(req: Request) -> DeploymentRecord:
    """Change a deployment. A change other than ``replicas`` replaces its instances."""
    dep = await _get(req)
    if dep.deleting:
        raise ApiError(409, f"deployment {dep.name!r} is being deleted")
    body: DeploymentPatch = req.body
    changes = body.model_dump(exclude_unset=True)
    if isinstance(changes.get("model"), str):
        changes["model"] = ModelRef.parse(changes["model"]).model_dump()
    if changes.get("env") is not None:
        stored = dep.spec.env
        _refuse_masked_env(changes["env"], stored)
        changes["env"] = {
            name: stored[name] if value == ENV_MASK and name in stored else value
            for name, value in changes["env"].items()
        }
    merged = {**dep.spec.model_dump(mode="json"), **changes}
    try:
        spec = Deployment.model_validate(merged)
    except ValidationError as exc:
        raise ApiError(422, validation_detail(exc, "body")) from exc
    check_engine(req, spec)
    updated = await req.db(req.services.store.update_deployment, dep.id, spec)
    if set(changes) - {"replicas"}:
        await req.db(req.services.store.restart_deployment, dep.id)
    if updated is None:
        raise not_found("deployment", dep.id)
    return masked(updated)


async def scale_deployment(req: Request) -> DeploymentRecord:
    """Set the number of replicas."""
    dep = await _get(req)
    if dep.deleting:
        raise ApiError(409, f"deployment {dep.name!r} is being deleted")
    spec = dep.spec.model_copy(update={"replicas": req.body.replicas})
    updated = await req.db(req.services.store.update_deployment, dep.id, spec)
    if updated is None:
        raise not_found("deployment", dep.id)
    return masked(updated)


async def delete_deployment(req: Request) -> DeploymentRecord:
    """Delete a deployment: its instances are stopped, then it is removed (202)."""
    dep = await _get(req)
    await req.db(req.services.store.mark_deployment_deleting, dep.id)
    return masked(dep.model_copy(update={"deleting": True, "replicas": 0}))


async def list_instances(req: Request) -> Page:
    """List instances, filtered by deployment, worker and state."""
    store = req.services.store
    dep_id = None
    if req.query["deployment"] is not None:
        dep = await req.db(store.get_deployment, req.query["deployment"])
        if dep is None:
            raise not_found("deployment", req.query["deployment"])
        dep_id = dep.id
    states = None if req.query["state"] is None else [req.query["state"]]
    limit, offset = page_args(req)
    return page(
        await req.db(
            store.list_instances,
            limit,
            offset,
            deployment_id=dep_id,
            worker_id=req.query["worker_id"],
            states=states,
        ),
        req,
    )


async def get_instance(req: Request) -> InstanceRecord:
    """One instance: state, message, placement and (when pending) the scheduler's explanation."""
    inst = await req.db(req.services.store.get_instance, req.path_params["instance_id"])
    if inst is None:
        raise not_found("instance", req.path_params["instance_id"])
    return inst


_D = "/deployments/{deployment}"
ENDPOINTS = (
    Endpoint(
        "GET",
        "/deployments",
        list_deployments,
        "list deployments",
        "deployments",
        list_of=DeploymentRecord,
        query=(*PAGE_QUERY, Query("name", "str", "name contains")),
    ),
    Endpoint(
        "POST",
        "/deployments",
        create_deployment,
        "create a deployment",
        "deployments",
        auth="admin",
        body=DeploymentCreate,
        response=DeploymentRecord,
        status=201,
    ),
    Endpoint(
        "GET",
        _D,
        get_deployment,
        "get a deployment and its instances",
        "deployments",
        response=DeploymentView,
    ),
    Endpoint(
        "PATCH",
        _D,
        update_deployment,
        "update a deployment",
        "deployments",
        auth="admin",
        body=DeploymentPatch,
        response=DeploymentRecord,
    ),
    Endpoint(
        "POST",
        f"{_D}/scale",
        scale_deployment,
        "scale a deployment",
        "deployments",
        auth="admin",
        body=ScaleRequest,
        response=DeploymentRecord,
    ),
    Endpoint(
        "DELETE",
        _D,
        delete_deployment,
        "delete a deployment (stops its instances)",
        "deployments",
        auth="admin",
        response=DeploymentRecord,
        status=202,
    ),
    Endpoint(
        "GET",
        "/instances",
        list_instances,
        "list instances",
        "instances",
        list_of=InstanceRecord,
        query=(
            *PAGE_QUERY,
            Query("deployment", "str", "deployment name or id"),
            Query("worker_id", "str", "worker id"),
            Query("state", "str", "e.g. running"),
        ),
        errors=((404, "the deployment named in the query does not exist"),),
    ),
    Endpoint(
        "GET",
        "/instances/{instance_id}",
        get_instance,
        "get an instance",
        "instances",
        response=InstanceRecord,
    ),
)
