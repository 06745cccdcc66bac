"""The gateway mounted in-process inside another ASGI app, driven without sockets on the client side."""

from __future__ import annotations

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from gpustack_core.gateway import (
    DeviceSample,
    InMemoryUsageSink,
    ModelEntry,
    Principal,
    StaticKeyAuthenticator,
    StaticRouteTable,
    Upstream,
    create_gateway,
    gateway_lifespan,
    gateway_of,
    metrics_app,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_mounted_gateway_with_own_route_table(start_engine) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine("emb")
    routes = StaticRouteTable([ModelEntry("m1", "me", 1, "embedding")])
    routes.set_instance("m1", Upstream("i1", engine.base_url, "m1", "d1"))
    auth = StaticKeyAuthenticator({"k": Principal("u", None, frozenset({"inference"}), None, False)})
    usage = InMemoryUsageSink()
    registry = CollectorRegistry()
    gw = create_gateway(routes, auth, usage, metrics_registry=registry)
    host = Starlette(routes=[Route("/metrics", metrics_app(registry)), Mount("/openai", gw)])

    metrics = gw.state.metrics
    metrics.set_instance_states({("d1", "running"): 1, ("d1", "error"): 2})
    metrics.set_worker_heartbeat_ages({"w1": 3.5})
    metrics.set_device_samples([DeviceSample("w1", "0", "nvidia", 80 << 30, 10 << 30, 0.25)])
    metrics.set_instance_states({("d1", "running"): 1})  # replaces: the error row disappears

    async with gateway_lifespan(gw) as gateway:
        assert gateway is gateway_of(gw)
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url="http://host") as client:
            r = await client.post(
                "/openai/v1/embeddings",
                json={"model": "m1", "input": "a b c"},
                headers={"authorization": "Bearer k"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["usage"]["prompt_tokens"] == 3
            text = (await client.get("/metrics")).text
    assert usage.totals()[0].prompt_tokens == 3
    assert usage.totals()[0].key_id is None
    assert 'gpustack_instances{deployment="d1",state="running"} 1.0' in text
    assert "error" not in text
    assert 'gpustack_worker_heartbeat_age_seconds{worker="w1"} 3.5' in text
    assert 'gpustack_device_utilization_ratio{device="0",vendor="nvidia",worker="w1"} 0.25' in text
    assert 'gpustack_gateway_prompt_tokens_total{model="m1"} 3.0' in text


def test_create_gateway_rejects_bad_limits() -> None:
    routes, auth, usage = StaticRouteTable(), StaticKeyAuthenticator(), InMemoryUsageSink()
    with pytest.raises(ValueError, match="max_body_bytes"):
        create_gateway(routes, auth, usage, max_body_bytes=0)
    with pytest.raises(TypeError):
        gateway_of(Starlette())
    with pytest.raises(KeyError, match="add_model"):
        routes.set_instance("ghost", Upstream("i", "http://x", "ghost", "d"))


def test_the_gateway_says_it_needs_asyncio_under_trio() -> None:
    app = create_gateway(StaticRouteTable(), StaticKeyAuthenticator(), InMemoryUsageSink())

    async def start() -> None:
        await gateway_of(app).start()

    with pytest.raises(RuntimeError, match="needs an asyncio event loop"):
        anyio.run(start, backend="trio")
