"""The reference server: a starlette application over a SQL store, with controllers and a worker.

::

    from gpustack_core.server import ServerConfig, create_app
    app = create_app(ServerConfig(data_dir=Path("./data")))   # any ASGI server can run it

See docs/server.md.
"""

from __future__ import annotations

from .app import API_PREFIX, create_app
from .config import ServerConfig, default_data_dir

__all__ = ["API_PREFIX", "ServerConfig", "create_app", "default_data_dir"]
