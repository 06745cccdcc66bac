"""The HTTP protocol between a worker and the server (pydantic bodies), shared by both sides.

Worker routes live under ``/api/v1/worker`` and authenticate with the worker join token:

``POST /worker/register``                         :class:`Registration` -> :class:`Registered`
``POST /worker/{id}/heartbeat``                   :class:`Heartbeat` -> :class:`Registered`
``GET  /worker/{id}/assignments``                 -> :class:`Assignments`
``POST /worker/{id}/instances/{iid}/report``      :class:`InstanceReport`
``POST /worker/{id}/model-files``                 :class:`ModelFileReport`
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from gpustack_core.types import Deployment, WorkerInfo

__all__ = [
    "Assignment",
    "Assignments",
    "Heartbeat",
    "InstanceReport",
    "ModelFileReport",
    "Registered",
    "Registration",
]

ReportedState = Literal["downloading", "starting", "running", "error", "stopped"]


class Registration(BaseModel):
    """A worker introduces itself (again, after every restart)."""

    info: WorkerInfo


class Registered(BaseModel):
    """The server's answer: the worker's id and how often to call back."""

    worker_id: str
    heartbeat_interval_s: float
    poll_interval_s: float


class Heartbeat(BaseModel):
    """Periodic status: devices, memory, engines."""

    info: WorkerInfo


class Assignment(BaseModel):
    """One instance the server wants on this worker, with everything needed to run it."""

    instance_id: str
    deployment_id: str
    deployment: Deployment
    replica: int
    desired: Literal["running", "stopped"]
    state: str
    version: int
    placement: dict[str, Any] | None = None
    port: int | None = None


class Assignments(BaseModel):
    """Every instance placed on the worker (running ones and ones to stop)."""

    items: list[Assignment]


class InstanceReport(BaseModel):
    """A state transition (or progress) of one instance."""

    state: ReportedState
    message: str = ""
    port: int | None = Field(default=None, ge=1, le=65535)
    pid: int | None = Field(default=None, ge=1)
    download: dict[str, Any] | None = Field(default=None, description="file, downloaded_bytes, total_bytes")


class ModelFileReport(BaseModel):
    """Download progress of a model's files on the worker."""

    model: str
    state: Literal["downloading", "ready", "error"]
    downloaded_bytes: int = Field(default=0, ge=0)
    total_bytes: int | None = Field(default=None, ge=0)
    paths: tuple[str, ...] = ()
    message: str = ""
