"""Value types of the supervisor: restart policy and the status of one supervised process."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gpustack_core.types._base import ValueModel

__all__ = ["ProcessState", "ProcessStatus", "RestartPolicy"]

#: ``starting``: spawned, readiness not yet seen. ``ready``: readiness (then health) passes.
#: ``unhealthy``: was ready, health checks now fail. ``crashed``: exited without being asked to.
#: ``restarting``: waiting out the backoff before the next start. ``stopped``: stopped on request.
#: ``failed``: gave up (could not spawn, or the restart cap was reached).
ProcessState = Literal["starting", "ready", "unhealthy", "crashed", "restarting", "stopped", "failed"]


class RestartPolicy(ValueModel):
    """When and how fast a crashed (or persistently unhealthy) engine is restarted.

    The delay before restart ``n`` (1-based) is ``initial_backoff_s * 2**(n-1)``, capped at
    ``max_backoff_s``; it starts again from ``initial_backoff_s`` once a process has been ready.
    """

    initial_backoff_s: float = Field(default=1.0, ge=0)
    max_backoff_s: float = Field(default=60.0, ge=0)
    max_restarts: int | None = Field(
        default=None,
        ge=0,
        description="restarts in a row (without a stable run between them) before giving up; None: forever",
    )
    stable_after_s: float = Field(
        default=300.0,
        ge=0,
        description="a process ready this long before it crashes starts the max_restarts count afresh",
    )
    restart_on_unhealthy: bool = Field(
        default=True, description="kill and restart a process whose health check keeps failing"
    )
    health_interval_s: float = Field(default=5.0, gt=0, description="between health checks once ready")
    health_failure_threshold: int = Field(
        default=3, ge=1, description="consecutive failed health checks that make a process unhealthy"
    )

    def backoff(self, restart_number: int) -> float:
        """Seconds to wait before restart number ``restart_number`` (1-based)."""
        exponent = max(0, restart_number - 1)
        return float(min(self.max_backoff_s, self.initial_backoff_s * (2.0 ** min(exponent, 62))))


class ProcessStatus(ValueModel):
    """A snapshot of one supervised engine process."""

    instance_id: str
    state: ProcessState
    pid: int | None = None
    pgid: int | None = None
    restarts: int = 0
    last_exit_code: int | None = Field(default=None, description="negative: killed by that signal")
    message: str = ""
    log_path: str
    adopted: bool = Field(default=False, description="found running after a supervisor restart")
