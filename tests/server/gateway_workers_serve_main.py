"""Run the server with the fake engine and several gateway processes (for the gateway workers test).

Usage: python gateway_workers_serve_main.py DATA_DIR PORT GATEWAY_WORKERS [DATABASE_URL]
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_fake_engine import make_host
from server_helpers import fast_config

from gpustack_core._platform import event_loop_options
from gpustack_core.server.serving import serve


def main() -> None:
    """Serve until SIGINT/SIGTERM; engines stop with the server."""
    logging.basicConfig(level=logging.WARNING)
    data_dir, port, workers = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    url = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None
    config = fast_config(
        data_dir, url, port=port, gateway_workers=workers, heartbeat_timeout_s=5.0, request_body_timeout_s=5.0
    )
    anyio.run(
        lambda: serve(
            config, host=make_host(), log_level="warning", on_started=lambda banner: print(banner, flush=True)
        ),
        backend_options=event_loop_options(),  # as `gpustack-core serve` runs
    )


if __name__ == "__main__":
    main()
