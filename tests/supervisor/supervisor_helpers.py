"""Helpers of the supervisor tests: a fast restart policy and an independent look at process groups."""

from __future__ import annotations

import os

import psutil

from gpustack_core.supervisor import RestartPolicy

FAST = RestartPolicy(initial_backoff_s=0.1, max_backoff_s=0.4, health_interval_s=0.2)


def group_pids(pgid: int) -> list[int]:
    """Live (not zombie) pids of a process group, found without the supervisor's own helper."""
    pids = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                pids.append(process.pid)
        except ProcessLookupError:
            continue
    return pids
