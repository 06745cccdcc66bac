"""Fixtures for the gateway tests: fake engines in their own processes, the gateway under uvicorn."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from gpustack_core.gateway import (
    InMemoryUsageSink,
    ModelEntry,
    Principal,
    StaticKeyAuthenticator,
    StaticRouteTable,
    Upstream,
    create_gateway,
    gateway_lifespan,
    metrics_app,
)

API_KEY = "sk-test-inference"
NO_SCOPE_KEY = "sk-test-noscope"
LIMITED_KEY = "sk-test-limited"
MODEL = "tiny-chat"
BODY_LIMIT = 64 * 1024


@dataclass
class FakeEngine:
    """A fake engine process on 127.0.0.1."""

    name: str
    port: int
    process: subprocess.Popen[str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, object]:
        return dict(httpx.get(self.base_url + "/_fake/stats", timeout=5).json())

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def start_engine() -> Iterator[Callable[[str], FakeEngine]]:
    """Start fake engine processes; all are killed at teardown."""
    engines: list[FakeEngine] = []

    def start(name: str) -> FakeEngine:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpustack_core.gateway.fake_engine", "--port", "0", "--name", name],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("LISTENING "), f"fake engine did not start: {line!r}"
        engine = FakeEngine(name, int(line.split()[1]), proc)
        engines.append(engine)
        deadline = time.monotonic() + 20
        while True:
            try:
                engine.stats()
                return engine
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    yield start
    for e in engines:
        e.kill()


@dataclass
class GatewayServer:
    """The gateway (and /metrics) served by uvicorn in a thread."""

    base_url: str
    routes: StaticRouteTable
    usage: InMemoryUsageSink
    registry: CollectorRegistry
    server: uvicorn.Server
    thread: threading.Thread
    engines: list[FakeEngine] = field(default_factory=list)

    def add_instance(self, engine: FakeEngine, model: str = MODEL, served_name: str | None = None) -> None:
        self.routes.set_instance(model, Upstream(engine.name, engine.base_url, served_name or model, model))


def _serve_in_thread(app: object) -> tuple[str, uvicorn.Server, threading.Thread]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "uvicorn thread died"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server, thread


#: Long enough for a real llama-server on a loaded 2-core machine; the 504 test sleeps past it.
UPSTREAM_TIMEOUT_S = 5.0


@pytest.fixture
def gateway() -> Iterator[GatewayServer]:
    """A gateway for model MODEL (no instance yet) with three keys, served under uvicorn."""
    routes = StaticRouteTable(
        [
            ModelEntry(MODEL, "gpustack", 1_700_000_000, "llm"),
            ModelEntry("other-model", "gpustack", 1_700_000_001, "llm"),
        ]
    )
    auth = StaticKeyAuthenticator(
        {
            API_KEY: Principal("user-1", "key-1", frozenset({"inference"}), None, False),
            NO_SCOPE_KEY: Principal("user-2", "key-2", frozenset({"management"}), None, False),
            LIMITED_KEY: Principal(
                "user-3", "key-3", frozenset({"inference"}), frozenset({"other-model"}), False
            ),
        }
    )
    usage = InMemoryUsageSink()
    registry = CollectorRegistry()
    gw = create_gateway(
        routes,
        auth,
        usage,
        metrics_registry=registry,
        max_body_bytes=BODY_LIMIT,
        upstream_timeout_s=UPSTREAM_TIMEOUT_S,
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with gateway_lifespan(gw):  # starlette does not run a mounted app's lifespan
            yield

    host = Starlette(routes=[Route("/metrics", metrics_app(registry)), Mount("/", gw)], lifespan=lifespan)
    base_url, server, thread = _serve_in_thread(host)
    yield GatewayServer(base_url, routes, usage, registry, server, thread)
    server.should_exit = True
    thread.join(timeout=20)
