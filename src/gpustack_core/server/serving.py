"""Serving the application with uvicorn, and the banner that says where to log in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import uvicorn

from gpustack_core.plugins import PluginHost
from gpustack_core.server.app import create_app
from gpustack_core.server.config import ServerConfig

__all__ = ["login_banner", "serve", "uvicorn_config"]


def login_banner(config: ServerConfig, app: Any) -> str:
    """Lines telling a person where the server listens and how to log in."""
    boot = app.state.bootstrap
    url = f"http://{config.host}:{config.port}"
    lines = [
        f"gpustack-core server listening on {url} (API: {url}/api/v1, OpenAPI: {url}/api/v1/openapi.json)"
    ]
    if boot.admin_password_file is not None:
        lines.append(f"first start: log in as 'admin' with the password in {boot.admin_password_file}:")
        lines.append(f"  gpustack-core login --password-stdin < {boot.admin_password_file}")
    else:
        lines.append(f"log in as 'admin' (first password: {config.data_dir / 'initial_admin_password'})")
    lines.append(
        f"workers join with: gpustack-core worker --server-url {url} --token $(cat {boot.token_file})"
    )
    if not config.embedded_worker:
        lines.append("no embedded worker (--no-worker): start workers to run models")
    return "\n".join(lines)


def uvicorn_config(config: ServerConfig, app: Any, log_level: str = "info") -> uvicorn.Config:
    """uvicorn's settings for ``app``: proxy headers only from ``config.forwarded_allow_ips``.

    uvicorn believes ``X-Forwarded-For`` from 127.0.0.1 by default; the server does not, so a
    client on the same host cannot pick the address the login rate limit counts against.
    """
    allowed = config.forwarded_allow_ips.strip()
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=log_level,
        lifespan="on",
        proxy_headers=bool(allowed),
        forwarded_allow_ips=allowed or None,
        # a connection half-open since a network partition must not hold the shutdown forever
        timeout_graceful_shutdown=10,
        # uvicorn's lines go through the caller's logging configuration (one timestamped format);
        # one access line per request (workers poll every second) only at debug
        log_config=None,
        access_log=log_level == "debug",
    )


async def serve(
    config: ServerConfig,
    *,
    host: PluginHost | None = None,
    log_level: str = "info",
    on_started: Callable[[str], None] | None = None,
) -> None:
    """Run the server until cancelled or signalled; ``on_started`` gets the login banner."""
    app = create_app(config, host=host)
    server = uvicorn.Server(uvicorn_config(config, app, log_level))
    async with anyio.create_task_group() as group:

        async def announce() -> None:
            while not server.started:
                if server.should_exit:
                    return
                await anyio.sleep(0.05)
            if on_started is not None:
                on_started(login_banner(config, app))

        group.start_soon(announce)
        await server.serve()
        group.cancel_scope.cancel()
