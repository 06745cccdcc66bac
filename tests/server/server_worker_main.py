"""Run a worker agent with the fake engine as a separate process (for the second-worker test).

Usage: python server_worker_main.py SERVER_URL TOKEN NAME DATA_DIR
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_fake_engine import make_host

from gpustack_core.worker.agent import WorkerAgent, WorkerConfig


def main() -> None:
    """Run until killed."""
    logging.basicConfig(level=logging.INFO)
    url, token, name, data_dir = sys.argv[1:5]
    agent = WorkerAgent(
        WorkerConfig(server_url=url, token=token, name=name, data_dir=Path(data_dir)), make_host()
    )
    anyio.run(agent.run)


if __name__ == "__main__":
    main()
