"""Run a worker agent of the instance-group tests as a separate process, with one of two fakes:

- by default the instance-group test plugins (``server_group_plugins``): one test device of
  ``BYTES`` (too small for the tiny GGUF, so that the scheduler must split it over workers);
- ``--host-memory``: the installed plugins (the real llama.cpp engine), reporting ``BYTES`` of host
  memory, all of it free (so that the scheduler must split a model that is larger over the CPUs of
  several workers; ``test_server_llama_rpc.py``).

Usage: python server_group_worker_main.py [--host-memory] SERVER_URL TOKEN NAME DATA_DIR BYTES [ADDRESS]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_group_plugins import make_group_host

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host-memory", action="store_true", help="installed plugins, BYTES of host memory")
    for name in ("server_url", "token", "name", "data_dir"):
        parser.add_argument(name)
    parser.add_argument("bytes", type=int, help="the test device's size, or the host memory")
    parser.add_argument("address", nargs="?", default="127.0.0.1", help="the address the worker reports")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    config = WorkerConfig(
        server_url=args.server_url,
        token=args.token,
        name=args.name,
        data_dir=Path(args.data_dir),
        address=args.address,
        keep_engines_on_exit=False,
        restart=RestartPolicy(max_restarts=3, initial_backoff_s=0.2),
    )
    if args.host_memory:
        agent: WorkerAgent = SmallHostWorker(config, PluginHost(environ={}), args.bytes)
    else:
        agent = WorkerAgent(config, make_group_host(args.bytes, f"testgpu-{args.name}"))
    anyio.run(agent.run)


if __name__ == "__main__":
    main()
