"""The HTTP protocol between a worker and the server (pydantic bodies), shared by both sides.

Worker routes live under ``/api/v1/worker`` and authenticate with the worker join token:

``POST /worker/register``                         :class:`Registration` -> :class:`Registered`
``POST /worker/{id}/heartbeat``                   :class:`Heartbeat` -> :class:`Registered`
``GET  /worker/{id}/assignments``                 -> :class:`Assignments`
``POST /worker/{id}/instances/{iid}/report``      :class:`InstanceReport`
``POST /worker/{id}/instances/{iid}/parts/{rank}/report``  :class:`PartReport`
``POST /worker/{id}/model-files``                 :class:`ModelFileReport`

The other way, the server (and, later, peer workers) call the worker's own HTTP API
(:mod:`gpustack_core.worker.api`) at ``http://<info.address>:<info.api_port>``. Those calls carry a
short-lived token that any holder of the join token's SHA-256 can mint (:func:`mint_api_token`),
so the server needs only the hash it already stores, and nothing long-lived crosses the wire.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from gpustack_core.types import Deployment, GroupMember, WorkerInfo

__all__ = [
    "API_TOKEN_TTL_S",
    "Assignment",
    "Assignments",
    "Heartbeat",
    "InstanceReport",
    "ModelFileReport",
    "ModelPeer",
    "PartAssignment",
    "PartReport",
    "Registered",
    "Registration",
    "mint_api_token",
    "token_sha256",
    "verify_api_token",
]

#: Seconds a minted worker-API token stays valid.
API_TOKEN_TTL_S = 120


def token_sha256(token: str) -> str:
    """Hex SHA-256 of the join token: the key worker-API tokens are signed with (the server stores it)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _api_signature(token_sha256: str, worker_name: str, expires: int) -> str:
    message = f"gpustack-worker-api:{worker_name}:{expires}".encode()
    return hmac.new(token_sha256.encode(), message, hashlib.sha256).hexdigest()


def mint_api_token(token_sha256: str, worker_name: str, now: float | None = None) -> str:
    """A bearer token for one worker's HTTP API, valid for :data:`API_TOKEN_TTL_S` seconds.

    Parameters:
        token_sha256: hex SHA-256 of the cluster's worker join token (what the server stores).
        worker_name: the worker being called (a token for one worker is refused by the others).
        now: the current time (seconds since the epoch); default: the clock.
    """
    expires = int(now if now is not None else time.time()) + API_TOKEN_TTL_S
    return f"{expires}.{_api_signature(token_sha256, worker_name, expires)}"


def verify_api_token(token: str, token_sha256: str, worker_name: str, now: float | None = None) -> bool:
    """Whether ``token`` was minted for ``worker_name`` with this join token and has not expired."""
    expires_text, _, signature = token.partition(".")
    if not expires_text.isdigit() or not signature:
        return False
    expires = int(expires_text)
    current = now if now is not None else time.time()
    if not current <= expires <= current + API_TOKEN_TTL_S + 5:
        return False
    return hmac.compare_digest(signature, _api_signature(token_sha256, worker_name, expires))


ReportedState = Literal["downloading", "installing", "starting", "running", "error", "stopped"]


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


class ModelPeer(BaseModel):
    """Another worker that holds the assignment's model files and serves its cache
    (``http://<address>:<api_port>/models/cache``); tried before the model's source."""

    worker: str
    address: str
    api_port: int = Field(ge=1, le=65535)


class PartAssignment(BaseModel):
    """A subordinate part of a multi-worker instance as the server last heard of it."""

    rank: int = Field(ge=1)
    worker: str | None = None
    state: str
    address: str | None = None
    port: int | None = None


class Assignment(BaseModel):
    """One instance (or, with ``rank`` >= 1, one part of a multi-worker instance) the server wants
    on this worker, with everything needed to run it.

    A multi-worker instance is one group: rank 0 (the head) serves the model, ranks 1.. run what the
    engine's launch spec gives for their rank (an RPC server, a Ray node). ``parts`` lists every
    subordinate with its state and address, so the head knows when they are ready and where.
    """

    instance_id: str
    deployment_id: str
    deployment: Deployment
    replica: int
    desired: Literal["running", "stopped"]
    state: str
    version: int
    placement: dict[str, Any] | None = None
    port: int | None = None
    rank: int = Field(default=0, ge=0, description="0: the head (or a single-worker instance)")
    node_count: int = Field(default=1, ge=1, description="workers the instance spans")
    head_address: str | None = Field(default=None, description="host:port the other ranks join")
    parts: list[PartAssignment] = Field(default_factory=list)
    peers: list[ModelPeer] = Field(
        default_factory=list, description="workers that hold the model's files (download from them first)"
    )
    group: list[GroupMember] = Field(
        default_factory=list,
        description="multi-worker: every worker of the group in rank order with its address and its "
        "placed devices (for engines that need the whole topology, e.g. MindIE's rank table)",
    )

    @property
    def process_id(self) -> str:
        """The supervisor's name for this worker's process of the assignment."""
        return self.instance_id if self.rank == 0 else f"{self.instance_id}.p{self.rank}"

    @property
    def part_state(self) -> str:
        """The state of this worker's part: the instance's for the head, the part's otherwise."""
        if self.rank == 0:
            return self.state
        return next((p.state for p in self.parts if p.rank == self.rank), "stopped")


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
    progress: dict[str, Any] | None = Field(
        default=None,
        description="downloading: downloaded_bytes, total_bytes, percent, bytes_per_second, eta_seconds; "
        "installing: phase, log_tail (the install log's last lines), log",
    )
    head_address: str | None = Field(
        default=None, max_length=255, description="multi-worker head: host:port the other ranks join"
    )
    version: int | None = Field(
        default=None, description="the placement (instance version) the report is about; ignored when stale"
    )


class PartReport(BaseModel):
    """A state transition of a subordinate part, with the address and port it listens on once it
    runs (the head's launch needs them)."""

    state: ReportedState
    message: str = ""
    address: str | None = Field(default=None, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    pid: int | None = Field(default=None, ge=1)
    version: int | None = Field(
        default=None, description="the placement (instance version) the report is about; ignored when stale"
    )


class ModelFileReport(BaseModel):
    """Download progress of a model's files on the worker."""

    model: str = Field(min_length=1, max_length=512)
    state: Literal["downloading", "ready", "error"]
    downloaded_bytes: int = Field(default=0, ge=0, le=2**63 - 1)
    total_bytes: int | None = Field(default=None, ge=0, le=2**63 - 1)
    paths: tuple[Annotated[str, Field(max_length=4096)], ...] = Field(default=(), max_length=10_000)
    message: str = Field(default="", max_length=16_384)
