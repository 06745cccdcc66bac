"""Workers and devices (management), and the worker protocol (worker join token)."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ValidationError

from gpustack_core.server.store.records import InstanceState, ModelFileRecord, Page, WorkerRecord
from gpustack_core.types import Device, GroupMember, Placement
from gpustack_core.worker.protocol import (
    Assignment,
    Assignments,
    Heartbeat,
    InstanceReport,
    ModelFileReport,
    ModelPeer,
    PartAssignment,
    PartReport,
    Registered,
    Registration,
)

from ._common import PAGE_QUERY, not_found, page, page_args
from ._framework import ApiError, Endpoint, Query, Request

__all__ = ["ENDPOINTS", "WorkerDevice"]

logger = logging.getLogger(__name__)


class WorkerDevice(BaseModel):
    """A device with the worker it belongs to."""

    worker: str
    worker_id: str
    device: Device


async def list_workers(req: Request) -> Page:
    """List workers."""
    limit, offset = page_args(req)
    return page(await req.db(req.services.store.list_workers, limit, offset, req.query["state"]), req)


async def get_worker(req: Request) -> WorkerRecord:
    """One worker, by id or name."""
    worker = await req.db(req.services.store.get_worker, req.path_params["worker_id"])
    if worker is None:
        raise not_found("worker", req.path_params["worker_id"])
    return worker


async def delete_worker(req: Request) -> None:
    """Forget a worker; its instances are rescheduled."""
    worker = await get_worker(req)
    await req.db(req.services.store.delete_worker, worker.id)


async def list_devices(req: Request) -> Page:
    """Devices of every worker, filtered by worker or vendor."""
    workers, _ = await req.db(req.services.store.list_workers, 10000, 0)
    rows = [
        WorkerDevice(worker=w.name, worker_id=w.id, device=d)
        for w in workers
        if req.query["worker"] in (None, w.name, w.id)
        for d in w.info.devices
        if req.query["vendor"] in (None, d.vendor)
    ]
    limit, offset = page_args(req)
    return Page(items=list(rows[offset : offset + limit]), total=len(rows), limit=limit, offset=offset)


async def list_model_files(req: Request) -> Page:
    """Model files on workers with their download progress."""
    limit, offset = page_args(req)
    return page(await req.db(req.services.store.list_model_files, limit, offset, req.query["worker_id"]), req)


# ---------------------------------------------------------------- worker protocol


def _registered(req: Request, worker_id: str) -> Registered:
    cfg = req.services.config
    return Registered(
        worker_id=worker_id,
        heartbeat_interval_s=cfg.worker_heartbeat_interval_s,
        poll_interval_s=cfg.worker_poll_interval_s,
    )


async def register(req: Request) -> Registered:
    """A worker registers (or re-registers after a restart)."""
    body: Registration = req.body
    worker = await req.db(req.services.store.register_worker, body.info)
    return _registered(req, worker.id)


async def heartbeat(req: Request) -> Registered:
    """A worker's periodic status; 404 tells it to register again."""
    body: Heartbeat = req.body
    worker_id = req.path_params["worker_id"]
    if not await req.db(req.services.store.heartbeat, worker_id, body.info):
        raise ApiError(404, "unknown worker: register again")
    return _registered(req, worker_id)


async def assignments(req: Request) -> Assignments:
    """Instances placed on this worker."""
    worker_id = req.path_params["worker_id"]
    store = req.services.store
    if await req.db(store.get_worker, worker_id) is None:
        raise ApiError(404, "unknown worker: register again")
    placed = await req.db(store.worker_assignments, worker_id)
    peers = await req.db(_model_peers, store, worker_id, {str(spec.model) for _, spec, _ in placed})
    groups = await req.db(
        _groups, store, {inst.id: inst.placement for inst, _, _ in placed if inst.node_count > 1}
    )
    return Assignments(
        items=[
            Assignment(
                instance_id=inst.id,
                deployment_id=inst.deployment_id,
                deployment=spec,
                replica=inst.replica,
                desired=inst.desired,
                state=inst.state.value,
                version=inst.version,
                placement=inst.placement,
                port=inst.port,
                rank=rank,
                node_count=inst.node_count,
                head_address=inst.head_address,
                parts=[
                    PartAssignment(
                        rank=p.rank, worker=p.worker, state=p.state.value, address=p.address, port=p.port
                    )
                    for p in inst.parts
                ],
                peers=peers.get(str(spec.model), []),
                group=groups.get(inst.id, []),
            )
            for inst, spec, rank in placed
        ]
    )


def _groups(store: Any, placements: dict[str, dict[str, Any] | None]) -> dict[str, list[GroupMember]]:
    """For each multi-worker instance (by id, with its placement): its workers in rank order with their
    addresses and the facts of their placed devices, from the workers' last reports. Empty when a
    worker of the group is unknown (an engine that needs the group then refuses, naming it)."""
    out: dict[str, list[GroupMember]] = {}
    if not placements:
        return out
    workers = {w.name: w for w in store.list_workers(limit=1_000_000)[0]}
    for instance_id, raw in placements.items():
        if raw is None:
            continue
        try:
            placement = Placement.model_validate(raw)
        except ValidationError:
            continue  # not a placement the worker can launch either; it reports that
        members: list[GroupMember] = []
        for rank, name in enumerate((placement.worker, *placement.subordinate_workers)):
            worker = workers.get(name)
            if worker is None:
                break
            refs = {(d.accelerator, d.index) for d in placement.devices if d.worker == name}
            devices = tuple(d for d in worker.info.devices if (d.accelerator, d.index) in refs)
            members.append(GroupMember(rank=rank, worker=name, address=worker.info.address, devices=devices))
        else:
            out[instance_id] = members
    return out


def _model_peers(store: Any, worker_id: str, models: set[str]) -> dict[str, list[ModelPeer]]:
    """For each model: the other ready workers that reported its files ``ready`` and serve an API."""
    if not models:
        return {}
    files, _ = store.list_model_files(1_000_000, 0)
    holders: dict[str, list[str]] = {}
    for f in files:
        if f.model in models and f.state == "ready" and f.worker_id != worker_id:
            holders.setdefault(f.model, []).append(f.worker_id)
    if not holders:
        return {}
    workers = {w.id: w for w in store.list_workers(limit=1_000_000, state="ready")[0]}
    return {
        model: [
            ModelPeer(worker=w.name, address=w.info.address, api_port=w.info.api_port)
            for wid in sorted(ids)
            if (w := workers.get(wid)) is not None and w.info.api_port is not None
        ]
        for model, ids in holders.items()
    }


async def report(req: Request) -> dict[str, Any]:
    """A worker reports a state transition or the progress of one instance (logged at INFO on a change)."""
    body: InstanceReport = req.body
    worker_id, instance_id = req.path_params["worker_id"], req.path_params["instance_id"]
    store = req.services.store
    state = InstanceState(body.state)
    before = await req.db(store.get_instance, instance_id)
    if (
        state == InstanceState.STOPPED
        and before is not None
        and before.worker_id == worker_id
        and before.desired == "stopped"
    ):
        await req.db(store.delete_instance, instance_id)
        return {"accepted": True, "deleted": True}
    updated = await req.db(
        store.report,
        instance_id,
        worker_id,
        state,
        message=body.message,
        port=body.port,
        pid=body.pid,
        download=body.download,
        head_address=body.head_address,
        version=body.version,
        progress=body.progress,
    )
    if updated is not None and (before is None or before.state != updated.state):
        logger.info(
            "instance %s (deployment %s replica %d) on %s: %s -> %s%s",
            instance_id,
            updated.deployment,
            updated.replica,
            updated.worker or worker_id,
            before.state.value if before is not None else "?",
            updated.state.value,
            f": {body.message}" if body.message else "",
        )
    running = InstanceState.RUNNING
    changed = (
        updated is not None and before is not None and (before.state == running) != (updated.state == running)
    )
    if changed and req.services.on_routes_changed is not None:
        await req.db(req.services.on_routes_changed)
    return {"accepted": updated is not None, "deleted": False}


async def part_report(req: Request) -> dict[str, Any]:
    """A worker reports the state (and, once running, the address) of its part of a multi-worker
    instance; a part in error fails the whole group (it restarts with backoff)."""
    body: PartReport = req.body
    try:
        rank = int(req.path_params["rank"])
    except ValueError:
        raise ApiError(422, f"rank must be an integer, got {req.path_params['rank']!r}") from None
    store = req.services.store
    accepted = await req.db(
        store.report_part,
        req.path_params["instance_id"],
        rank,
        req.path_params["worker_id"],
        InstanceState(body.state),
        message=body.message,
        address=body.address,
        port=body.port,
        pid=body.pid,
        version=body.version,
    )
    return {"accepted": accepted}


async def model_file_report(req: Request) -> None:
    """A worker reports the download state of a model's files."""
    body: ModelFileReport = req.body
    worker = await req.db(req.services.store.get_worker, req.path_params["worker_id"])
    if worker is None:
        raise ApiError(404, "unknown worker: register again")
    await req.db(
        req.services.store.put_model_file,
        worker.id,
        body.model,
        body.state,
        body.downloaded_bytes,
        body.total_bytes,
        body.paths,
        body.message,
    )


_W = "/worker/{worker_id}"
ENDPOINTS = (
    Endpoint(
        "GET",
        "/workers",
        list_workers,
        "list workers",
        "workers",
        list_of=WorkerRecord,
        query=(*PAGE_QUERY, Query("state", "str", "ready, not_ready or unreachable")),
    ),
    Endpoint("GET", "/workers/{worker_id}", get_worker, "get a worker", "workers", response=WorkerRecord),
    Endpoint(
        "DELETE",
        "/workers/{worker_id}",
        delete_worker,
        "remove a worker",
        "workers",
        auth="admin",
        status=204,
    ),
    Endpoint(
        "GET",
        "/devices",
        list_devices,
        "list devices of all workers",
        "workers",
        list_of=WorkerDevice,
        query=(
            *PAGE_QUERY,
            Query("worker", "str", "worker name or id"),
            Query("vendor", "str", "e.g. nvidia"),
        ),
    ),
    Endpoint(
        "GET",
        "/model-files",
        list_model_files,
        "model files and download progress",
        "models",
        list_of=ModelFileRecord,
        query=(*PAGE_QUERY, Query("worker_id", "str", "filter by worker")),
    ),
    Endpoint(
        "POST",
        "/worker/register",
        register,
        "worker: register",
        "worker-protocol",
        auth="worker",
        body=Registration,
        response=Registered,
    ),
    Endpoint(
        "POST",
        f"{_W}/heartbeat",
        heartbeat,
        "worker: heartbeat",
        "worker-protocol",
        auth="worker",
        body=Heartbeat,
        response=Registered,
    ),
    Endpoint(
        "GET",
        f"{_W}/assignments",
        assignments,
        "worker: instances placed on it",
        "worker-protocol",
        auth="worker",
        response=Assignments,
    ),
    Endpoint(
        "POST",
        f"{_W}/instances/{{instance_id}}/report",
        report,
        "worker: report an instance state",
        "worker-protocol",
        auth="worker",
        body=InstanceReport,
    ),
    Endpoint(
        "POST",
        f"{_W}/instances/{{instance_id}}/parts/{{rank}}/report",
        part_report,
        "worker: report the state of its part of a multi-worker instance",
        "worker-protocol",
        auth="worker",
        body=PartReport,
    ),
    Endpoint(
        "POST",
        f"{_W}/model-files",
        model_file_report,
        "worker: report model download progress",
        "worker-protocol",
        auth="worker",
        body=ModelFileReport,
        status=204,
    ),
)
