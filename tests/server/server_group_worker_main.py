"""Run a worker agent with the instance-group test plugins as a separate process.

Usage: python server_group_worker_main.py SERVER_URL TOKEN NAME DATA_DIR DEVICE_BYTES [ADDRESS]
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_group_plugins import make_group_host

from gpustack_core.supervisor import RestartPolicy
from gpustack_core.worker.agent import WorkerAgent, WorkerConfig


def main() -> None:
    """Run until killed."""
    logging.basicConfig(level=logging.INFO)
    url, token, name, data_dir, device_bytes = sys.argv[1:6]
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
    anyio.run(WorkerAgent(config, make_group_host(int(device_bytes), f"testgpu-{name}")).run)


if __name__ == "__main__":
    main()
