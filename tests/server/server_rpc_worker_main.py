"""Run a worker agent with the installed plugins (the real llama.cpp engine) as a separate process,
reporting ``HOST_BYTES`` of host memory, all of it free (so that the scheduler must split a model
that is larger over the CPUs of several workers).

Usage: python server_rpc_worker_main.py SERVER_URL TOKEN NAME DATA_DIR HOST_BYTES [ADDRESS]
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import anyio

from gpustack_core.plugins import PluginHost
from gpustack_core.supervisor import RestartPolicy
from gpustack_core.types import WorkerInfo
from gpustack_core.worker.agent import WorkerAgent, WorkerConfig


class SmallHostWorker(WorkerAgent):
    """A worker whose reports say it has ``host_bytes`` of host memory and uses none of it."""

    def __init__(self, config: WorkerConfig, host: PluginHost, host_bytes: int) -> None:
        super().__init__(config, host)
        self.host_bytes = host_bytes

    async def _collect_info(self) -> WorkerInfo:
        info = await super()._collect_info()
        update = {"memory_total_bytes": self.host_bytes, "memory_used_bytes": 0, "reserved_memory_bytes": 0}
        return info.model_copy(update=update)


def main() -> None:
    """Run until killed."""
    logging.basicConfig(level=logging.INFO)
    url, token, name, data_dir, host_bytes = sys.argv[1:6]
    address = sys.argv[6] if len(sys.argv) > 6 else "127.0.0.1"
    config = WorkerConfig(
        server_url=url,
        token=token,
        name=name,
        data_dir=Path(data_dir),
        address=address,
        keep_engines_on_exit=False,
        restart=RestartPolicy(max_restarts=3, initial_backoff_s=0.2),
    )
    anyio.run(SmallHostWorker(config, PluginHost(environ={}), int(host_bytes)).run)


if __name__ == "__main__":
    main()
