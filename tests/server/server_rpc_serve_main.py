"""Run the server with the installed plugins and without an embedded worker, as a separate process
(for the network-namespace test of llama.cpp over RPC).

Usage: python server_rpc_serve_main.py DATA_DIR HOST PORT
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_helpers import fast_config

from gpustack_core.plugins import PluginHost
from gpustack_core.server.serving import serve


def main() -> None:
    """Serve until SIGTERM."""
    logging.basicConfig(level=logging.INFO)
    data_dir, host, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    config = fast_config(data_dir, host=host, port=port, embedded_worker=False, heartbeat_timeout_s=15.0)
    anyio.run(lambda: serve(config, host=PluginHost(environ={}), log_level="warning", on_started=print))


if __name__ == "__main__":
    main()
