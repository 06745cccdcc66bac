"""Run the server without an embedded worker as a separate process (for the network-namespace
tests of instance groups): with ``DEVICE_BYTES``, with the instance-group test plugins
(``server_group_plugins``, a test device of that size); without, with the installed plugins (the
real llama.cpp engine, for ``test_server_llama_rpc.py``).

Usage: python server_group_serve_main.py DATA_DIR HOST PORT [DEVICE_BYTES]
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_group_plugins import make_group_host
from server_helpers import fast_config

from gpustack_core.plugins import PluginHost
from gpustack_core.server.serving import serve


def main() -> None:
    """Serve until SIGTERM."""
    logging.basicConfig(level=logging.INFO)
    data_dir, host, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    config = fast_config(data_dir, host=host, port=port, embedded_worker=False, heartbeat_timeout_s=15.0)
    plugins = make_group_host(int(sys.argv[4]), "server") if len(sys.argv) > 4 else PluginHost(environ={})
    anyio.run(lambda: serve(config, host=plugins, log_level="warning", on_started=print))


if __name__ == "__main__":
    main()
