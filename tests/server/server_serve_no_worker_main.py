"""Run the server without an embedded worker (``serve --no-worker``) as a process of its own, with
the fake engine plugin installed so that deployments on it validate (for the governance test of
two servers on one database).

Usage: python server_serve_no_worker_main.py DATA_DIR PORT DATABASE_URL
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
    """Serve until SIGTERM or killed."""
    logging.basicConfig(level=logging.WARNING)
    data_dir, port, url = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    config = fast_config(data_dir, url, port=port, embedded_worker=False, keep_engines_on_exit=False)
    anyio.run(lambda: serve(config, host=make_host(), log_level="warning"))


if __name__ == "__main__":
    main()
