"""``create_gateway``: the OpenAI-compatible gateway as a starlette app another service can mount."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .coldstart import ColdStarter
from .errors import error_response
from .fallback import FallbackPolicy
from .limits import DEFAULT_MAX_TOKENS, Limiter
from .metrics import GatewayMetrics
from .protocols import KeyAuthenticator, RouteTable, UsageSink
from .proxy import Gateway, GatewayConfig

__all__ = ["JSON_PATHS", "MULTIPART_PATHS", "create_gateway", "gateway_lifespan", "gateway_of"]

JSON_PATHS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/images/generations",
    "/v1/audio/speech",
)
"""Routes whose JSON body names the model; forwarded to the same path on the engine."""

MULTIPART_PATHS = ("/v1/audio/transcriptions", "/v1/audio/translations")
"""Routes whose multipart/form-data body names the model in a ``model`` field."""


class _Endpoint:
    """A raw ASGI endpoint (starlette routes a non-function endpoint to it without a Request wrapper).

    ``path`` is the route's own path: the one forwarded to the engine, whatever prefix the gateway
    is mounted under.
    """

    def __init__(self, handler: Callable[[Scope, Receive, Send, str], Awaitable[None]], path: str) -> None:
        self.handler = handler
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send, self.path)


def create_gateway(
    routes: RouteTable,
    auth: KeyAuthenticator,
    usage: UsageSink,
    *,
    metrics_registry: CollectorRegistry | None = None,
    max_body_bytes: int = 10 * 1024 * 1024,
    upstream_timeout_s: float = 600.0,
    connect_timeout_s: float = 5.0,
    limiter: Limiter | None = None,
    fallbacks: FallbackPolicy | None = None,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    cold_starter: ColdStarter | None = None,
    hold_timeout_s: float = 120.0,
    max_held: int = 256,
) -> Starlette:
    """Build the gateway app.

    ``metrics_registry`` receives the gateway's collectors (a fresh registry when ``None``; the
    global default registry is never used); the :class:`GatewayMetrics` is ``app.state.metrics``
    so the host can feed its gauges, and :func:`gpustack_core.gateway.metrics_app` serves it.

    The app's lifespan opens and closes the shared HTTP client. Starlette does not run the
    lifespan of a mounted app: a host that mounts the gateway enters :func:`gateway_lifespan` in
    its own lifespan (otherwise the client is created on the first request and never closed).

    ``limiter`` enforces quotas and rate limits (:mod:`.limits`; none: no limits, no rate-limit
    headers); ``fallbacks`` names the models tried when a model cannot answer (:mod:`.fallback`);
    ``default_max_tokens`` is what a limiter reserves for a request without ``max_tokens``;
    ``cold_starter`` starts models scaled to zero while up to ``max_held`` requests per model wait
    at most ``hold_timeout_s`` (:mod:`.coldstart`).
    """
    if max_body_bytes <= 0:
        raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes}")
    if upstream_timeout_s <= 0 or connect_timeout_s <= 0:
        raise ValueError("upstream_timeout_s and connect_timeout_s must be positive")
    registry = metrics_registry if metrics_registry is not None else CollectorRegistry()
    metrics = GatewayMetrics(registry)
    config = GatewayConfig(
        max_body_bytes, upstream_timeout_s, connect_timeout_s, default_max_tokens, hold_timeout_s, max_held
    )
    gateway = Gateway(
        routes, auth, usage, metrics, config, limiter=limiter, fallbacks=fallbacks, cold_starter=cold_starter
    )

    models_endpoint = _Endpoint(gateway.handle_models, "/v1/models")
    route_list = [
        Route("/v1/models", models_endpoint, methods=["GET"]),
        Route("/v1/models/{model:path}", models_endpoint, methods=["GET"]),
        *(Route(p, _Endpoint(gateway.handle_json, p), methods=["POST"]) for p in JSON_PATHS),
        *(Route(p, _Endpoint(gateway.handle_multipart, p), methods=["POST"]) for p in MULTIPART_PATHS),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.aclose()

    app = Starlette(
        routes=route_list,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    app.state.gateway = gateway
    app.state.metrics = metrics
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """An unknown path (404) or method (405) as an OpenAI-style error, as clients parse it."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no endpoint {request.url.path}; the gateway serves /v1/models and the OpenAI /v1 APIs"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    response = error_response(exc.status_code, message, "invalid_request_error")
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug in the gateway as an OpenAI-style 500 (the exception is logged by the server)."""
    response = error_response(
        500, f"internal gateway error ({type(exc).__name__}); see the server log", "server_error"
    )
    response.headers["Connection"] = "close"
    return response


def gateway_of(app: Starlette) -> Gateway:
    """The :class:`Gateway` behind an app made by :func:`create_gateway`."""
    gateway = getattr(app.state, "gateway", None)
    if not isinstance(gateway, Gateway):
        raise TypeError("this app was not made by create_gateway()")
    return gateway


@contextlib.asynccontextmanager
async def gateway_lifespan(app: Starlette) -> AsyncIterator[Gateway]:
    """Open and close a mounted gateway's HTTP client from the host's own lifespan."""
    gateway = gateway_of(app)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.aclose()
