"""Run the server with the fake engine as a separate process (for the server-restart test).

Usage: python server_serve_main.py DATA_DIR PORT [DATABASE_URL]
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_fake_engine import make_host
from server_helpers import fast_config

from gpustack_core.server.serving import serve


def main() -> None:
    """Serve until SIGTERM; engines are left running for the next start to adopt."""
    logging.basicConfig(level=logging.INFO)
    data_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    url = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
    config = fast_config(data_dir, url, port=port, keep_engines_on_exit=True, heartbeat_timeout_s=5.0)
    anyio.run(lambda: serve(config, host=make_host(), log_level="warning", on_started=print))


if __name__ == "__main__":
    main()
