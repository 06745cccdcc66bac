"""The OpenAI-compatible gateway: authenticate, route by model, balance, stream, meter.

An ASGI app made by :func:`create_gateway` from three host objects (see :mod:`.protocols`)::

    from gpustack_core.gateway import (
        create_gateway, StaticRouteTable, StaticKeyAuthenticator, InMemoryUsageSink, metrics_app,
    )
    app = create_gateway(routes, auth, usage, metrics_registry=registry)

Routes: ``GET /v1/models``, ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/rerank``, ``/v1/images/generations``, ``/v1/audio/speech``, ``/v1/audio/transcriptions``,
``/v1/audio/translations``. ``metrics_app(registry)`` serves the Prometheus metrics.
"""

from __future__ import annotations

from .app import JSON_PATHS, MULTIPART_PATHS, create_gateway, gateway_lifespan, gateway_of
from .balancer import LeastOutstandingBalancer
from .coldstart import ColdStarter
from .errors import GatewayHTTPError, error_response
from .fallback import FallbackPolicy, StaticFallbacks
from .limits import Limiter, LimitExceeded, LimitSnapshot, Reservation, estimate_tokens, rate_limit_headers
from .memory import InMemoryUsageSink, StaticKeyAuthenticator, StaticRouteTable
from .metrics import DeviceSample, GatewayMetrics, MetricsApp, metrics_app
from .protocols import (
    INFERENCE_SCOPE,
    KeyAuthenticator,
    ModelEntry,
    Principal,
    RouteTable,
    Upstream,
    UsageRecord,
    UsageSink,
)
from .proxy import Gateway, GatewayConfig

__all__ = [
    "INFERENCE_SCOPE",
    "JSON_PATHS",
    "MULTIPART_PATHS",
    "ColdStarter",
    "DeviceSample",
    "FallbackPolicy",
    "Gateway",
    "GatewayConfig",
    "GatewayHTTPError",
    "GatewayMetrics",
    "InMemoryUsageSink",
    "KeyAuthenticator",
    "LeastOutstandingBalancer",
    "LimitExceeded",
    "LimitSnapshot",
    "Limiter",
    "MetricsApp",
    "ModelEntry",
    "Principal",
    "Reservation",
    "RouteTable",
    "StaticFallbacks",
    "StaticKeyAuthenticator",
    "StaticRouteTable",
    "Upstream",
    "UsageRecord",
    "UsageSink",
    "create_gateway",
    "error_response",
    "estimate_tokens",
    "gateway_lifespan",
    "gateway_of",
    "metrics_app",
    "rate_limit_headers",
]
