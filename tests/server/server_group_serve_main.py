"""Run the server with the instance-group test plugins, without an embedded worker, as a separate
process (for the network-namespace test).

Usage: python server_group_serve_main.py DATA_DIR HOST PORT DEVICE_BYTES
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_group_plugins import make_group_host
from server_helpers import fast_config

from gpustack_core.server.serving import serve


def main() -> None:
    """Serve until SIGTERM."""
    logging.basicConfig(level=logging.INFO)
    data_dir, host, port, device_bytes = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    config = fast_config(data_dir, host=host, port=port, embedded_worker=False, heartbeat_timeout_s=15.0)
    plugins = make_group_host(device_bytes, "server")
    anyio.run(lambda: serve(config, host=plugins, log_level="warning", on_started=print))


if __name__ == "__main__":
    main()
