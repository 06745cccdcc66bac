"""The application factory: ``create_app(config) -> Starlette``; mountable in other applications.

Nothing is module-global: the store, plugin host, rate limiter and controllers hang off
``app.state.services`` and live as long as the application's lifespan.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import httpx
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from gpustack_core.__about__ import __version__
from gpustack_core.gateway import create_gateway, gateway_lifespan, metrics_app
from gpustack_core.plugins import PluginHost

from .api import all_endpoints, build_routes, openapi_document
from .config import ServerConfig
from .console import console_routes
from .controllers import Controllers
from .gateway_bridge import GatewayBridge
from .gateway_workers import GatewayFirstApp, gateway_front
from .request_limits import RequestBodyTimeout
from .security import LoginRateLimiter, PasswordHashing, hash_secret
from .services import Services
from .session import SessionCookieMiddleware
from .store import Store
from .store.database import bootstrap, make_engine

__all__ = ["API_PREFIX", "create_app"]

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


async def _openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(all_endpoints(), API_PREFIX, __version__))


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A JSON 500 that says the connection closes (the error is logged by the server)."""
    return JSONResponse(
        {"detail": f"internal server error ({type(exc).__name__}); see the server log"},
        status_code=500,
        headers={"Connection": "close"},
    )


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__})


def create_app(
    config: ServerConfig | None = None,
    *,
    host: PluginHost | None = None,
    hashing: PasswordHashing | None = None,
) -> Starlette:
    """Build the server application.

    Parameters:
        config: server configuration (defaults: SQLite in the default data directory, embedded worker).
        host: plugin host for engines, sources, accelerators and scheduler policies (default: the
            installed plugins).
        hashing: password hashing parameters (tests pass cheaper ones).

    The lifespan migrates the database, creates the first admin and worker token, starts the
    controllers and (unless disabled) the embedded worker. The OpenAI-compatible gateway serves
    ``/v1/...`` (unless ``mount_gateway`` is off) and its Prometheus metrics ``/metrics``. The web
    console answers ``/`` and its pages; a session cookie authenticates like a bearer token.
    """
    cfg = config or ServerConfig()
    if cfg.oidc_issuer and not (cfg.oidc_client_id and cfg.oidc_client_secret):
        raise ValueError("single sign-on (oidc_issuer) needs oidc_client_id and oidc_client_secret")
    if not cfg.local_login and not cfg.oidc_issuer:
        raise ValueError("local login can only be disabled when single sign-on (oidc_issuer) is configured")
    plugin_host = host or PluginHost()
    bridge = GatewayBridge()
    registry = CollectorRegistry()
    gateway_app = (
        create_gateway(
            bridge.routes,
            bridge.auth,
            bridge.usage,
            metrics_registry=registry,
            max_body_bytes=cfg.gateway_max_body_bytes,
            upstream_timeout_s=cfg.gateway_upstream_timeout_s,
            limiter=bridge.limiter if cfg.enforce_limits else None,
            fallbacks=bridge.fallbacks,
            default_max_tokens=cfg.default_max_tokens,
            cold_starter=bridge.scale_to_zero,
            hold_timeout_s=cfg.cold_start_hold_timeout_s,
        )
        if cfg.mount_gateway
        else None
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        engine = make_engine(cfg.resolved_database_url)
        pw = hashing or PasswordHashing()
        boot = await anyio.to_thread.run_sync(bootstrap, engine, cfg.data_dir, pw)
        store = Store(engine)
        stored_hash = await anyio.to_thread.run_sync(store.get_setting, "worker_token_sha256")
        services = Services(
            config=cfg,
            store=store,
            host=plugin_host,
            hashing=pw,
            limiter=LoginRateLimiter(max_failures=cfg.login_max_failures, window_s=cfg.login_window_s),
            worker_token_hash=stored_hash or (hash_secret(boot.worker_token) if boot.worker_token else None),
            worker_token=boot.worker_token,
        )
        if cfg.oidc_issuer:
            from .sso import OIDCClient, OIDCSettings

            services.sso = OIDCClient(
                OIDCSettings(
                    issuer=cfg.oidc_issuer,
                    client_id=cfg.oidc_client_id,
                    client_secret=cfg.oidc_client_secret,
                    scopes=cfg.oidc_scopes,
                    username_claim=cfg.oidc_username_claim,
                    teams_claim=cfg.oidc_teams_claim,
                )
            )
        app.state.services = services
        app.state.bootstrap = boot
        await anyio.to_thread.run_sync(bridge.bind, store)
        if gateway_app is not None:
            bridge.routes.metrics = gateway_app.state.metrics  # the reconcile pass sets its gauges
        services.on_routes_changed = functools.partial(bridge.routes.refresh, store)
        bridge.auth.ttl_s = cfg.auth_cache_ttl_s
        bridge.usage.flush_interval_s = cfg.usage_flush_interval_s
        bridge.scale_to_zero.check_interval_s = cfg.scale_to_zero_check_interval_s
        services.on_credentials_changed = bridge.auth.invalidate
        services.on_governance_changed = functools.partial(_governance_changed, bridge, store)
        services.flush_usage = bridge.usage.flush
        controllers = Controllers(services, routes=bridge.routes)
        app.state.controllers = controllers
        app.state.gateway = bridge
        try:
            async with contextlib.AsyncExitStack() as stack:
                if gateway_app is not None:
                    await stack.enter_async_context(gateway_lifespan(gateway_app))
                group = await stack.enter_async_context(anyio.create_task_group())
                group.start_soon(controllers.run)
                group.start_soon(bridge.usage.run)
                group.start_soon(bridge.scale_to_zero.run)
                if cfg.embedded_worker:
                    group.start_soon(_run_embedded_worker, app, services)
                yield {}
                group.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                try:
                    await bridge.usage.flush_at_exit()  # the last requests' usage, before the engine closes
                except Exception:
                    logger.exception("could not write %d usage rows at shutdown", bridge.usage.pending)
        finally:
            engine.dispose()

    routes: list[Any] = [
        Route("/healthz", _healthz),
        Route(f"{API_PREFIX}/openapi.json", _openapi),
        Mount(API_PREFIX, routes=build_routes(all_endpoints())),
        *console_routes(),
    ]
    if gateway_app is not None:
        routes.append(Route("/metrics", metrics_app(registry)))
        routes.append(Mount("", app=gateway_app))
    application = GatewayFirstApp(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(RequestBodyTimeout, timeout_s=cfg.request_body_timeout_s),
            Middleware(SessionCookieMiddleware),
        ],
        exception_handlers={Exception: _internal_error},
    )
    application.state.metrics_registry = registry  # the gateway workers' /metrics merges it
    if gateway_app is not None:
        application.gateway_front = gateway_front(gateway_app, cfg)
    return application


def _governance_changed(bridge: GatewayBridge, store: Store) -> None:
    """Teams, access, limits or fallbacks changed through this server: apply them now (blocking)."""
    bridge.auth.invalidate()
    bridge.limiter.invalidate()
    bridge.fallbacks.refresh(store)
    bridge.scale_to_zero.refresh(store)


async def _run_embedded_worker(app: Starlette, services: Services) -> None:
    """Run a worker agent in this process, talking to this application without a socket."""
    from gpustack_core.worker.agent import WorkerAgent, WorkerConfig

    if services.worker_token is None:
        logger.error(
            "the embedded worker needs the worker token in %s; not starting it", services.config.data_dir
        )
        return
    config = WorkerConfig(
        server_url="http://embedded",
        token=services.worker_token,
        name=services.config.worker_name,
        data_dir=services.config.data_dir / "worker",
        address="127.0.0.1",
        keep_engines_on_exit=services.config.keep_engines_on_exit,
    )
    transport = httpx.ASGITransport(app=app)
    agent = WorkerAgent(config, services.host, transport=transport)
    app.state.embedded_worker = agent
    await agent.run()
