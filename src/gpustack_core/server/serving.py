"""Serving the application with uvicorn, and the banner that says where to log in."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Generator
from typing import Any

import anyio
import uvicorn

from gpustack_core.plugins import PluginHost
from gpustack_core.server.app import create_app
from gpustack_core.server.config import ServerConfig
from gpustack_core.server.gateway_workers import (
    GatewayWorkerPool,
    MainProcessFront,
    make_run_dir,
    remove_run_dir,
    reuse_port_socket,
    unix_socket,
)

__all__ = ["login_banner", "serve", "uvicorn_config"]

logger = logging.getLogger(__name__)


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
    """Run the server until cancelled or signalled; ``on_started`` gets the login banner.

    With ``config.gateway_workers`` above 1 the gateway worker processes start once the server
    has started and stop with it (:mod:`gpustack_core.server.gateway_workers`).

    Raises:
        GatewayWorkersUnsupported: more than one gateway process where ``SO_REUSEPORT`` is missing.
        ValueError: ``config.gateway_workers`` below 1, or above 1 without ``mount_gateway``.
    """
    if config.gateway_workers < 1:
        raise ValueError(f"gateway_workers must be 1 or more, not {config.gateway_workers}")
    if config.gateway_workers > 1 and not config.mount_gateway:
        raise ValueError("gateway_workers above 1 needs the gateway mounted (mount_gateway)")
    app = create_app(config, host=host)
    if config.gateway_workers == 1:
        server = uvicorn.Server(uvicorn_config(config, app, log_level))
        await _serve_until_exit(server, config, app, on_started, sockets=None, pool=None)
        return
    shared = reuse_port_socket(config.host, config.port)  # first: it says whether the platform can
    run_dir = make_run_dir()
    try:
        port = int(shared.getsockname()[1])
        pool = GatewayWorkerPool(config, config.gateway_workers - 1, port, run_dir, log_level)
        private = unix_socket(pool.main_socket)
        front = MainProcessFront(app, pool, app.state.metrics_registry)
        server = _SignalsAfterCleanup(uvicorn_config(config, front, log_level))
        try:
            await _serve_until_exit(server, config, app, on_started, sockets=[shared, private], pool=pool)
        finally:
            pool.stop()  # blocking, and so done even while a KeyboardInterrupt unwinds
    finally:
        shared.close()
        remove_run_dir(run_dir)
    for sig in reversed(server.deferred_signals):
        signal.raise_signal(sig)  # as uvicorn would have, now that nothing is left behind


class _SignalsAfterCleanup(uvicorn.Server):
    """A uvicorn server that re-raises a captured SIGTERM/SIGINT only when asked (uvicorn re-raises
    it as ``serve`` ends, which kills the process before the gateway processes are stopped and the
    socket directory is removed)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.deferred_signals: list[int] = []

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            try:
                yield
            finally:
                captured: list[int] = getattr(self, "_captured_signals", [])
                self.deferred_signals = list(captured)
                captured.clear()


async def _serve_until_exit(
    server: uvicorn.Server,
    config: ServerConfig,
    app: Any,
    on_started: Callable[[str], None] | None,
    sockets: list[socket.socket] | None,
    pool: GatewayWorkerPool | None,
) -> None:
    async with anyio.create_task_group() as group:

        async def announce() -> None:
            while not server.started:
                if server.should_exit:
                    return
                await anyio.sleep(0.05)
            if pool is not None:
                await anyio.to_thread.run_sync(pool.start)
                try:
                    await pool.wait_ready()
                except (RuntimeError, TimeoutError):
                    logger.exception("the gateway workers did not start; stopping the server")
                    server.should_exit = True
                    return
            if pool is not None:
                group.start_soon(stop_workers_on_exit, pool)
            if on_started is not None:
                banner = login_banner(config, app)
                if pool is not None:
                    banner += f"\n{pool.count + 1} gateway processes share the port (--gateway-workers)"
                on_started(banner)

        async def stop_workers_on_exit(pool: GatewayWorkerPool) -> None:
            # uvicorn re-raises SIGTERM after its shutdown, which ends this process at once:
            # the workers are told to stop as soon as the server starts its shutdown
            while not server.should_exit:
                await anyio.sleep(0.1)
            await anyio.to_thread.run_sync(pool.stop)

        group.start_soon(announce)
        await server.serve(sockets=sockets)
        group.cancel_scope.cancel()
