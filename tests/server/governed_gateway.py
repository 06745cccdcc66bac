"""The gateway on the server's store-backed pieces (keys, usage, limiter, fallbacks), for the
governance tests; also a process of its own (two of them on one PostgreSQL database).

Usage: python governed_gateway.py DATABASE_URL MODEL=ENGINE_URL [MODEL=ENGINE_URL ...]
prints ``LISTENING <port>`` once it accepts connections.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from gpustack_core.gateway import ModelEntry, StaticRouteTable, Upstream, create_gateway, gateway_lifespan
from gpustack_core.server.gateway_bridge import StoreFallbacks, StoreKeyAuthenticator, StoreUsageSink
from gpustack_core.server.limiter import StoreLimiter
from gpustack_core.server.store import Store
from gpustack_core.server.store.database import make_engine


@dataclass
class Governed:
    """A gateway app and the store-backed objects behind it."""

    app: Starlette
    routes: StaticRouteTable
    limiter: StoreLimiter
    fallbacks: StoreFallbacks
    registry: CollectorRegistry


@contextlib.asynccontextmanager
async def in_process_client(governed: Governed) -> AsyncIterator[httpx.AsyncClient]:
    """A client bound to the gateway without a socket, its connection pool opened and closed."""
    async with gateway_lifespan(governed.app):
        transport = httpx.ASGITransport(app=governed.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=60) as client:
            yield client


def governed_gateway(
    store: Store, engines: dict[str, str], clock: Callable[[], float] = time.time
) -> Governed:
    """A gateway routing each model of ``engines`` to its engine URL, with limits and fallbacks on
    ``store``; usage is written before each answer ends."""
    routes = StaticRouteTable([ModelEntry(m, "test", 0, "llm") for m in engines])
    for model, url in engines.items():
        routes.set_instance(model, Upstream(f"{model}-0", url, model, model))
    auth = StoreKeyAuthenticator(ttl_s=0)
    usage = StoreUsageSink(flush_interval_s=0)
    limiter = StoreLimiter(refresh_s=0, clock=clock)
    fallbacks = StoreFallbacks()
    auth.store = usage.store = store
    from gpustack_core.server.store.governance import GovernanceStore

    limiter.store = GovernanceStore(store.engine)
    fallbacks.refresh(store)
    registry = CollectorRegistry()
    app = create_gateway(routes, auth, usage, metrics_registry=registry, limiter=limiter, fallbacks=fallbacks)
    return Governed(app, routes, limiter, fallbacks, registry)


@dataclass
class Process:
    """A process that printed ``LISTENING <port>``."""

    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_process(argv: list[str], ready_path: str | None = None) -> Process:
    """Start ``argv``, wait for its ``LISTENING`` line (and ``ready_path`` answering)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("LISTENING "):
        proc.kill()
        raise AssertionError(f"{argv} did not start: {line!r}")
    started = Process(proc, int(line.split()[1]))
    if ready_path is not None:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(started.url + ready_path, timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, f"{argv} does not answer"
                time.sleep(0.05)
    return started


def fake_engines(names: list[str]) -> Iterator[dict[str, Process]]:
    """Fake OpenAI engine processes by name; killed after."""
    engines: dict[str, Process] = {}
    try:
        for name in names:
            engines[name] = start_process(
                [sys.executable, "-m", "gpustack_core.gateway.fake_engine", "--port", "0", "--name", name],
                "/_fake/stats",
            )
        yield engines
    finally:
        for e in engines.values():
            e.stop()


def main() -> None:
    import uvicorn

    url = sys.argv[1]
    engines = dict(arg.split("=", 1) for arg in sys.argv[2:])
    store = Store(make_engine(url))
    governed = governed_gateway(store, engines)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    config: Any = uvicorn.Config(governed.app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
