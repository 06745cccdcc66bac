"""The worker's side of instance groups: when a rank may start, what the head waits for, and how a
part's process state is reported.

A multi-worker instance is one group. With ``subordinates_first`` engines (llama.cpp RPC) ranks
1.. start at once and the head starts once every part runs, with their ``host:port`` as
``rpc_servers``; with ``head_first`` engines (Ray, torch distributed) the head publishes a
``head_address``, starts, and the other ranks join it. Any rank whose process exits fails the whole
group: the server restarts it with backoff (a half group serves nothing).
"""

from __future__ import annotations

from gpustack_core.supervisor import ProcessStatus
from gpustack_core.types import EngineCapabilities

from .protocol import Assignment, PartReport

__all__ = ["GroupChanged", "group_failure", "may_start", "part_report", "ready_rpc_servers"]


class GroupChanged(Exception):
    """The group was restarted or stopped while the head waited for its parts."""


_PART_STATES = {"starting": "starting", "ready": "running", "unhealthy": "error", "crashed": "error"}


def may_start(assignment: Assignment, capabilities: EngineCapabilities | None) -> bool:
    """Whether this worker may start its rank now: a rank >= 1 of a ``head_first`` engine waits for
    the head's address; everything else may start (the head of a ``subordinates_first`` group
    downloads, then waits for its parts in :func:`ready_rpc_servers`)."""
    if assignment.rank == 0 or capabilities is None:
        return True
    return capabilities.multi_worker_order != "head_first" or assignment.head_address is not None


def ready_rpc_servers(assignment: Assignment) -> tuple[str, ...] | None:
    """The parts' ``host:port`` in rank order once every part runs, else ``None``.

    Raises:
        GroupChanged: the instance is no longer being started (restarted, failed or stopped).
    """
    if assignment.desired != "running" or assignment.state not in {"scheduled", "downloading", "starting"}:
        raise GroupChanged(f"instance {assignment.instance_id} is now {assignment.state}")
    parts = sorted(assignment.parts, key=lambda p: p.rank)
    if len(parts) != assignment.node_count - 1:
        return None
    if all(p.state == "running" and p.address and p.port for p in parts):
        return tuple(f"{p.address}:{p.port}" for p in parts)
    return None


def group_failure(status: ProcessStatus) -> str | None:
    """Why a group member's process fails the group, or ``None`` while it is fine: it exited,
    became unhealthy, or was restarted by the local supervisor (its peers lost their connection)."""
    if status.state in {"crashed", "restarting", "failed", "unhealthy"}:
        return status.message or f"the process is {status.state}"
    if status.restarts > 0:
        return f"the process exited and was restarted ({status.restarts}x): {status.message}".rstrip(": ")
    return None


def part_report(status: ProcessStatus, address: str, port: int | None) -> PartReport | None:
    """The report of a part's process state (``None`` for a stopped process: nothing to say)."""
    if status.state == "stopped":
        return None
    failure = group_failure(status)
    if failure is not None:
        return PartReport(state="error", message=failure, pid=status.pid)
    state = _PART_STATES.get(status.state, "starting")
    if state == "running":
        return PartReport(state="running", address=address, port=port, pid=status.pid)
    return PartReport(state="starting", message=status.message, pid=status.pid, port=port)
