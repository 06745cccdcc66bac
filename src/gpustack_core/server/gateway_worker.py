"""One gateway worker process of ``serve --gateway-workers N`` (see :mod:`.gateway_workers`).

Started by the main process as ``python -m gpustack_core.server.gateway_worker``; the server
configuration comes in the ``GPUSTACK_CORE_SERVER_CONFIG`` environment variable (JSON). It serves
``/v1`` on the shared port (``SO_REUSEPORT``) from its own gateway on the same database, proxies
every other path to the main process, and answers ``/metrics`` (its own) on its private socket.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from gpustack_core._platform import event_loop_options
from gpustack_core.gateway import create_gateway, gateway_lifespan, metrics_app

from .config import ServerConfig
from .gateway_bridge import GatewayBridge
from .gateway_workers import (
    CLIENT_HEADER,
    PROXIED_BY_HEADER,
    GatewayFirstApp,
    config_from_json,
    freeze_startup_objects,
    gateway_front,
    reuse_port_socket,
    unix_socket,
)
from .store import Store
from .store.database import make_engine

__all__ = ["create_worker_app", "main"]

logger = logging.getLogger(__name__)

_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        CLIENT_HEADER,
    }
)


class _Front:
    """``/metrics`` on the private socket to this process's registry; every other path (the
    gateway's own go straight to it, see :class:`~.gateway_workers.GatewayFirst`) proxied to the
    main process."""

    def __init__(self, metrics: ASGIApp, own_socket: str, main_socket: str, name: str) -> None:
        self.name = name
        self.metrics = metrics
        self.own_socket = own_socket
        self.client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=main_socket), timeout=httpx.Timeout(None)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await WebSocketClose()(scope, receive, send)  # the server has no websocket routes
            return
        server = scope.get("server")
        if scope["path"] == "/metrics" and server is not None and server[0] == self.own_socket:
            await self.metrics(scope, receive, send)
            return
        await self._proxy(scope, receive, send)

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        headers = [(n, v) for n, v in scope["headers"] if n not in _HOP_BY_HOP]
        client = scope.get("client")
        if client is not None:
            headers.append((CLIENT_HEADER, f"{client[0]}:{client[1]}".encode("latin-1")))
        query = scope.get("query_string", b"")
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        url = httpx.URL("http://server" + raw_path.decode("latin-1"))
        if query:
            url = url.copy_with(query=query)
        request = self.client.build_request(scope["method"], url, headers=headers, content=body())
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            logger.warning("proxying %s %s to the server process failed: %s", scope["method"], url.path, exc)
            message = b'{"detail": "the server process did not answer; try again"}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 502,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(message)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": message})
            return
        try:
            out = [(n.lower(), v) for n, v in response.headers.raw if n.lower() not in _HOP_BY_HOP]
            out.append((PROXIED_BY_HEADER, self.name.encode()))
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()


def create_worker_app(config: ServerConfig, own_socket: Path, main_socket: Path, name: str) -> Starlette:
    """The ASGI application of gateway worker ``name`` (its lifespan binds it to the database)."""
    bridge = GatewayBridge()
    registry = CollectorRegistry()
    gateway_app = create_gateway(
        bridge.routes,
        bridge.auth,
        bridge.usage,
        metrics_registry=registry,
        max_body_bytes=config.gateway_max_body_bytes,
        upstream_timeout_s=config.gateway_upstream_timeout_s,
        limiter=bridge.limiter if config.enforce_limits else None,
        fallbacks=bridge.fallbacks,
        default_max_tokens=config.default_max_tokens,
        cold_starter=bridge.scale_to_zero,
        hold_timeout_s=config.cold_start_hold_timeout_s,
    )
    front = _Front(metrics_app(registry), str(own_socket), str(main_socket), name)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        engine = make_engine(config.resolved_database_url)
        store = Store(engine)
        bridge.auth.ttl_s = config.auth_cache_ttl_s
        bridge.usage.flush_interval_s = config.usage_flush_interval_s
        try:
            await anyio.to_thread.run_sync(bridge.bind, store)
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(gateway_lifespan(gateway_app))
                group = await stack.enter_async_context(anyio.create_task_group())
                group.start_soon(_refresh_routes, bridge, store, config.reconcile_interval_s)
                group.start_soon(bridge.usage.run)
                yield {}
                group.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                try:
                    await bridge.usage.flush_at_exit()
                except Exception:
                    logger.exception("could not write %d usage rows at shutdown", bridge.usage.pending)
                await front.client.aclose()
        finally:
            engine.dispose()

    app = GatewayFirstApp(routes=[Mount("", app=front)], lifespan=lifespan)
    app.gateway_front = gateway_front(gateway_app, config)
    app.state.gateway = bridge
    return app


async def _refresh_routes(bridge: GatewayBridge, store: Store, interval_s: float) -> None:
    """Re-read routes, fallbacks and scale-to-zero policies every ``interval_s``."""
    while True:
        await anyio.sleep(interval_s)
        try:
            await anyio.to_thread.run_sync(bridge.refresh, store)
            await anyio.to_thread.run_sync(bridge.scale_to_zero.refresh, store)
        except Exception:
            logger.exception("refreshing the gateway's routes failed; keeping the last ones")


async def _serve(
    config: ServerConfig, index: int, port: int, run_dir: Path, parent: int, log_level: str
) -> None:
    own_socket = run_dir / f"gateway-{index}.sock"
    app = create_worker_app(config, own_socket, run_dir / "server.sock", f"gateway-{index}")
    shared = reuse_port_socket(config.host, port)
    private = unix_socket(own_socket)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=log_level,
            lifespan="on",
            proxy_headers=bool(config.forwarded_allow_ips.strip()),
            forwarded_allow_ips=config.forwarded_allow_ips.strip() or None,
            timeout_graceful_shutdown=10,
        )
    )

    async def watch_parent() -> None:
        while os.getppid() == parent:
            await anyio.sleep(0.5)
        logger.warning("gateway worker %d: the server process is gone; stopping", index)
        server.should_exit = True

    async def freeze_when_started() -> None:
        while not server.started:
            await anyio.sleep(0.05)
        freeze_startup_objects()

    async with anyio.create_task_group() as group:
        group.start_soon(watch_parent)
        group.start_soon(freeze_when_started)
        await server.serve(sockets=[shared, private])
        group.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    """Run one gateway worker until SIGTERM/SIGINT or until its parent is gone."""
    parser = argparse.ArgumentParser(prog="gpustack_core.server.gateway_worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s gateway-{args.index} %(name)s: %(message)s",
    )
    config = config_from_json(os.environ["GPUSTACK_CORE_SERVER_CONFIG"])
    anyio.run(
        _serve,
        config,
        args.index,
        args.port,
        args.run_dir,
        args.parent_pid,
        args.log_level,
        backend_options=event_loop_options(),
    )


if __name__ == "__main__":
    main()
