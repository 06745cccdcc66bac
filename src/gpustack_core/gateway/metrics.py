"""Prometheus metrics of the gateway, on a registry the host owns (never the global default one).

The gateway records requests, latency, time to first token and tokens. The host feeds the cluster
gauges (instances by state, worker heartbeat age, device memory and utilization) through the
``set_*`` methods, each of which replaces the whole gauge so that gone labels disappear.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.types import Receive, Scope, Send

__all__ = ["DeviceSample", "GatewayMetrics", "MetricsApp", "metrics_app"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)


@dataclass(frozen=True)
class DeviceSample:
    """One accelerator's memory and utilization as last reported by its worker."""

    worker: str
    device: str
    vendor: str
    memory_total_bytes: int
    memory_used_bytes: int | None
    """``None`` when the vendor's tool did not report it (the gauge then has no sample)."""
    utilization: float | None
    """Busy fraction, 0..1; ``None`` when not reported."""


class GatewayMetrics:
    """The gateway's collectors, registered on ``registry``.

    Metric names (all prefixed ``gpustack_``): ``gateway_requests_total{model,status}``,
    ``gateway_request_duration_seconds{model,status}``, ``gateway_time_to_first_token_seconds{model}``,
    ``gateway_prompt_tokens_total{model}``, ``gateway_completion_tokens_total{model}``,
    ``gateway_upstream_retries_total{model}``, ``gateway_fallbacks_total{model,fallback,reason}``,
    ``gateway_rate_limited_total{model,code}``, ``gateway_cold_start_wait_seconds{model}``,
    ``gateway_requests_in_flight{model}``,
    ``instances{deployment,state}``, ``worker_heartbeat_age_seconds{worker}``,
    ``device_memory_total_bytes``/``device_memory_used_bytes``/``device_utilization_ratio``
    ``{worker,device,vendor}``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        """Create and register every collector on ``registry``."""
        self.registry = registry
        p = "gpustack_"
        self.requests = Counter(
            p + "gateway_requests", "Requests answered, by model and HTTP status.", ["model", "status"],
            registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            p + "gateway_request_duration_seconds",
            "Time from request received to last byte sent, by model and HTTP status.",
            ["model", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            p + "gateway_time_to_first_token_seconds",
            "Streams: time from request received to the first byte of the engine's event stream.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            p + "gateway_prompt_tokens",
            "Prompt (input) tokens reported by engines.",
            ["model"],
            registry=registry,
        )
        self.completion_tokens = Counter(
            p + "gateway_completion_tokens",
            "Completion (output) tokens reported by engines.",
            ["model"],
            registry=registry,
        )
        self.retries = Counter(
            p + "gateway_upstream_retries",
            "Requests sent to another instance after a connection failure.",
            ["model"],
            registry=registry,
        )
        self.fallbacks = Counter(
            p + "gateway_fallbacks",
            "Requests moved from a model to its fallback (reason: no_running_instance, "
            "upstream_unreachable, upstream_timeout, upstream_5xx).",
            ["model", "fallback", "reason"],
            registry=registry,
        )
        self.rate_limited = Counter(
            p + "gateway_rate_limited",
            "Requests refused with 429 by a quota or rate limit, by model and code.",
            ["model", "code"],
            registry=registry,
        )
        self.cold_start_wait = Histogram(
            p + "gateway_cold_start_wait_seconds",
            "Time a request was held while its model started from zero replicas.",
            ["model"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
            registry=registry,
        )
        self.in_flight = Gauge(
            p + "gateway_requests_in_flight", "Requests being proxied now.", ["model"], registry=registry
        )
        self.instances = Gauge(
            p + "instances",
            "Model instances by deployment and state.",
            ["deployment", "state"],
            registry=registry,
        )
        self.heartbeat_age = Gauge(
            p + "worker_heartbeat_age_seconds",
            "Seconds since each worker's last heartbeat.",
            ["worker"],
            registry=registry,
        )
        device_labels = ["worker", "device", "vendor"]
        self.device_memory_total = Gauge(
            p + "device_memory_total_bytes", "Accelerator memory size.", device_labels, registry=registry
        )
        self.device_memory_used = Gauge(
            p + "device_memory_used_bytes", "Accelerator memory in use.", device_labels, registry=registry
        )
        self.device_utilization = Gauge(
            p + "device_utilization_ratio",
            "Accelerator busy fraction (0..1).",
            device_labels,
            registry=registry,
        )

    def observe_request(self, model: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        s = str(status)
        self.requests.labels(model, s).inc()
        self.latency.labels(model, s).observe(seconds)

    def observe_ttft(self, model: str, seconds: float) -> None:
        """Record one stream's time to first token."""
        self.ttft.labels(model).observe(seconds)

    def add_tokens(self, model: str, prompt: int, completion: int) -> None:
        """Add the tokens of one request."""
        if prompt > 0:
            self.prompt_tokens.labels(model).inc(prompt)
        if completion > 0:
            self.completion_tokens.labels(model).inc(completion)

    def set_instance_states(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Replace the instance gauge with ``{(deployment, state): count}``."""
        _replace(self.instances, ((k, float(v)) for k, v in counts.items()))

    def set_worker_heartbeat_ages(self, ages: Mapping[str, float]) -> None:
        """Replace the heartbeat-age gauge with ``{worker: seconds since last heartbeat}``."""
        _replace(self.heartbeat_age, (((w,), age) for w, age in ages.items()))

    def set_device_samples(self, samples: Iterable[DeviceSample]) -> None:
        """Replace the device gauges with ``samples``."""
        rows = [((s.worker, s.device, s.vendor), s) for s in samples]
        _replace(self.device_memory_total, ((k, float(s.memory_total_bytes)) for k, s in rows))
        _replace(
            self.device_memory_used,
            ((k, float(s.memory_used_bytes)) for k, s in rows if s.memory_used_bytes is not None),
        )
        _replace(self.device_utilization, ((k, s.utilization) for k, s in rows if s.utilization is not None))


def _replace(gauge: Gauge, values: Iterable[tuple[tuple[str, ...], float]]) -> None:
    """Set a labelled gauge to exactly ``values``: labels not listed are removed."""
    items = list(values)
    gauge.clear()
    for labels, value in items:
        gauge.labels(*labels).set(value)


class MetricsApp:
    """An ASGI app serving one registry in the Prometheus text format (or OpenMetrics when asked).

    A class instance, so ``starlette.routing.Route("/metrics", MetricsApp(registry))`` routes to
    it as a plain ASGI app.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        """Serve ``registry``."""
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer GET/HEAD with the current samples; anything else with 405."""
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            await send({"type": "http.response.start", "status": 405, "headers": [(b"allow", b"GET, HEAD")]})
            await send({"type": "http.response.body", "body": b""})
            return
        accept = ",".join(v.decode("latin-1") for k, v in scope["headers"] if k == b"accept")
        encoder, content_type = choose_encoder(accept)
        body = encoder(self.registry)
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def metrics_app(registry: CollectorRegistry) -> MetricsApp:
    """An ASGI app serving ``registry``; mount it at ``/metrics`` (``Route`` or ``Mount``)."""
    return MetricsApp(registry)
