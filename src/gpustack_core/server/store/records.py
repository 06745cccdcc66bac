"""What the store returns and the REST API sends: one pydantic model per stored thing."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_serializer

from gpustack_core.types import Deployment, WorkerInfo

__all__ = [
    "ACTIVE_STATES",
    "ApiKeyRecord",
    "DeploymentRecord",
    "InstanceEventRecord",
    "InstancePartRecord",
    "InstanceRecord",
    "InstanceState",
    "ModelFileRecord",
    "Page",
    "Role",
    "Scope",
    "UsageRow",
    "UserRecord",
    "WorkerRecord",
]

Role = Literal["admin", "user"]
Scope = Literal["management", "inference"]


class InstanceState(str, Enum):
    """Lifecycle of one replica: pending -> scheduled -> downloading -> [installing] -> starting ->
    running, or error. ``installing``: the worker installs the engine version first (a pip install
    or a build), distinct from ``downloading`` the model.

    ``stopped`` is reported by a worker once it stopped an instance whose desired state is ``stopped``;
    the controller then deletes the row.
    """

    PENDING = "pending"
    SCHEDULED = "scheduled"
    DOWNLOADING = "downloading"
    INSTALLING = "installing"
    STARTING = "starting"
    RUNNING = "running"
    ERROR = "error"
    STOPPED = "stopped"


#: States in which an instance is placed on a worker and holds (or will hold) its resources.
ACTIVE_STATES = frozenset(
    {
        InstanceState.SCHEDULED,
        InstanceState.DOWNLOADING,
        InstanceState.INSTALLING,
        InstanceState.STARTING,
        InstanceState.RUNNING,
    }
)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)

    @field_serializer("*", mode="wrap", when_used="json")
    def _utc_timestamps(self, value: Any, handler: SerializerFunctionWrapHandler) -> Any:
        # the database keeps naive UTC; the API says so (RFC 3339 needs the offset)
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return handler(value)


class UserRecord(_Record):
    """A user; the password hash never leaves the store through this record."""

    id: str
    username: str
    role: Role
    disabled: bool = False
    created_at: dt.datetime


class ApiKeyRecord(_Record):
    """An API key or a login session, without its secret."""

    id: str
    user_id: str
    name: str
    kind: Literal["key", "session"]
    scopes: tuple[Scope, ...]
    allowed_models: tuple[str, ...] | None = None
    expires_at: dt.datetime | None = None
    created_at: dt.datetime
    last_used_at: dt.datetime | None = None


class WorkerRecord(_Record):
    """A registered worker with what it last reported."""

    id: str
    name: str
    address: str
    state: str
    info: WorkerInfo
    last_heartbeat_at: dt.datetime
    created_at: dt.datetime


class DeploymentRecord(_Record):
    """A stored deployment: the user's spec plus bookkeeping."""

    id: str
    name: str
    spec: Deployment
    replicas: int
    deleting: bool = False
    created_at: dt.datetime
    updated_at: dt.datetime


class InstancePartRecord(_Record):
    """One subordinate part (rank >= 1) of a multi-worker instance: the process its worker runs
    for that rank (an RPC server, a Ray node, an engine rank), with where it listens."""

    rank: int = Field(ge=1)
    worker_id: str
    worker: str | None = Field(default=None, description="worker name")
    state: InstanceState
    message: str = ""
    address: str | None = Field(default=None, description="host the part listens on")
    port: int | None = None
    pid: int | None = None
    state_changed_at: dt.datetime


class InstanceRecord(_Record):
    """One replica of a deployment, where it is placed and in which state."""

    id: str
    deployment_id: str
    deployment: str = Field(description="deployment name")
    replica: int
    state: InstanceState
    desired: Literal["running", "stopped"]
    message: str = ""
    worker_id: str | None = None
    worker: str | None = Field(default=None, description="worker name")
    placement: dict[str, Any] | None = None
    explanation: dict[str, Any] | None = Field(
        default=None, description="the scheduler's explanation while the instance cannot be placed"
    )
    port: int | None = None
    pid: int | None = None
    download: dict[str, Any] | None = None
    progress: dict[str, Any] | None = Field(
        default=None,
        description="what the current state is waiting for: downloading: downloaded_bytes, total_bytes, "
        "percent, bytes_per_second, eta_seconds; installing: phase, log_tail (last lines of the install log)",
    )
    restarts: int = 0
    version: int = 0
    state_changed_at: dt.datetime
    created_at: dt.datetime
    head_address: str | None = Field(
        default=None, description="multi-worker: host:port the other ranks join (Ray, torch distributed)"
    )
    parts: tuple[InstancePartRecord, ...] = Field(
        default=(), description="multi-worker: the subordinate parts (rank 0 is this record itself)"
    )

    @property
    def node_count(self) -> int:
        """Workers the instance spans: 1 plus its subordinate parts."""
        return 1 + len(self.parts)


class ModelFileRecord(_Record):
    """A model's files on one worker, with download progress."""

    id: str
    worker_id: str
    model: str
    state: Literal["downloading", "ready", "error"]
    downloaded_bytes: int = 0
    total_bytes: int | None = None
    paths: tuple[str, ...] = ()
    message: str = ""
    updated_at: dt.datetime


class UsageRow(_Record):
    """Token usage of one user (and key) for one model on one day."""

    user_id: str
    key_id: str | None
    model: str
    day: dt.date
    prompt_tokens: int
    completion_tokens: int
    requests: int


class Page(_Record):
    """One page of a list: items plus the total count that matched the filters."""

    items: list[Any]
    total: int
    limit: int
    offset: int


class InstanceEventRecord(_Record):
    """One entry of an instance's state timeline: the state it entered (or a new reason while it
    stayed pending), when, and why."""

    id: int = Field(description="increasing: orders events that share a timestamp")
    instance_id: str
    at: dt.datetime = Field(description="when the instance entered this state (UTC)")
    state: InstanceState
    message: str = Field(default="", description="the reason or the worker's message")
