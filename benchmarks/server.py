"""Server benchmark: controller passes and store operations on a real database.

``python -m benchmarks server [-- --workers 10,100 --deployments 100,1000 --database-url URL]``

For each (workers, deployments) pair, on a fresh SQLite database (or a fresh database created next
to ``--database-url``'s and dropped afterwards): workers with one CPU device each, deployments of
one replica of a tiny GGUF.
Rows:

- ``first pass``: the reconcile pass that creates and places every instance (scheduling included).
- ``idle pass``: a pass with nothing to do (the steady-state cost per second of the controllers).
- ``report``: one worker state report (``Store.report``), the per-transition cost.
- ``authenticate``: resolving an API key to its caller (two indexed reads and a SHA-256).
- ``route refresh``: rebuilding the gateway's route table snapshot.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from gpustack_core.plugins import PluginHost
from gpustack_core.server.auth import authenticate_key
from gpustack_core.server.config import ServerConfig
from gpustack_core.server.controllers import Controllers
from gpustack_core.server.gateway_bridge import StoreRouteTable
from gpustack_core.server.security import hash_secret, new_api_key
from gpustack_core.server.services import Services
from gpustack_core.server.store import Store, migrate
from gpustack_core.server.store.database import make_engine
from gpustack_core.server.store.records import InstanceState
from gpustack_core.testing.gguf_models import TinyLlamaSpec, write_llama_gguf
from gpustack_core.types import Deployment, Device, ModelRef, WorkerInfo

__all__ = ["main"]


def _timed(func: object, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()  # type: ignore[operator]
        samples.append(time.perf_counter() - t0)
    return samples


def _row(label: str, samples: list[float], extra: str = "") -> str:
    med = statistics.median(samples) * 1000
    p95 = sorted(samples)[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))] * 1000
    return f"| {label} | {med:.2f} | {p95:.2f} | {extra} |"


@contextlib.contextmanager
def _fresh_database(base_url: str) -> Iterator[str]:
    """A new database next to ``base_url``'s (PostgreSQL or MySQL), dropped afterwards."""
    url = sa.make_url(base_url)
    name = f"gpustack_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def _scenario(root: Path, url: str | None, workers: int, deployments: int, model: Path) -> list[str]:
    if url is not None:
        with _fresh_database(url) as fresh:
            return _run_scenario(root, fresh, workers, deployments, model)
    return _run_scenario(root, None, workers, deployments, model)


def _run_scenario(root: Path, url: str | None, workers: int, deployments: int, model: Path) -> list[str]:
    engine = make_engine(url or f"sqlite:///{root / f'bench-{workers}-{deployments}.db'}")
    migrate.upgrade(engine)
    store = Store(engine)
    host = PluginHost(environ={})
    services = Services(config=ServerConfig(data_dir=root, heartbeat_timeout_s=1e9), store=store, host=host)
    routes = StoreRouteTable()
    ctl = Controllers(services, routes=routes)
    for w in range(workers):
        cpu = Device(
            accelerator="cpu",
            vendor="cpu",
            device_type="cpu",
            index=0,
            uuid=f"cpu-{w}",
            name="cpu",
            memory_total_bytes=256 * 2**30,
            memory_used_bytes=0,
            memory_is_unified=True,
        )
        store.register_worker(
            WorkerInfo(
                name=f"w{w:05d}",
                devices=(cpu,),
                cpu_count=64,
                memory_total_bytes=256 * 2**30,
                engines=("fake",),
            )
        )
    for d in range(deployments):
        store.create_deployment(
            Deployment(name=f"d{d:05d}", model=ModelRef(source="local", id=str(model)), engine="fake")
        )
    t0 = time.perf_counter()
    ctl.reconcile_once()
    first = time.perf_counter() - t0
    placed = store.list_instances(states=[InstanceState.SCHEDULED.value])[1]
    idle = _timed(ctl.reconcile_once, 10)
    instances = store.list_instances(limit=200)[0]
    reports = [
        (lambda i=i: store.report(i.id, i.worker_id or "", InstanceState.RUNNING, port=8000, pid=1))
        for i in instances
    ]
    report_samples = [s for r in reports[:100] for s in _timed(r, 1)]
    admin = store.create_user("bench", "x", "admin")
    key_id, key = new_api_key()
    store.create_key(key_id, admin.id, "k", "key", hash_secret(key), ["management"], None, None)
    auth = _timed(lambda: authenticate_key(store, key), 200)
    refresh = _timed(lambda: routes.refresh(store), 10)
    engine.dispose()
    label = f"{workers} workers, {deployments} deployments"
    return [
        _row(f"{label}: first pass", [first], f"{placed} placed, {placed / first:.0f} placements/s"),
        _row(f"{label}: idle pass", idle),
        _row(f"{label}: report", report_samples),
        _row(f"{label}: authenticate", auth),
        _row(f"{label}: route refresh", refresh),
    ]


def main(argv: list[str]) -> None:
    """Print one table row per scenario and operation."""
    parser = argparse.ArgumentParser(prog="benchmarks server")
    parser.add_argument("--workers", default="10,100")
    parser.add_argument("--deployments", default="100,1000")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = write_llama_gguf(root / "tiny.gguf", TinyLlamaSpec.tiny())
        print("| scenario | median ms | p95 ms | notes |")
        print("|---|---|---|---|")
        for workers in (int(x) for x in args.workers.split(",")):
            for deployments in (int(x) for x in args.deployments.split(",")):
                for line in _scenario(root, args.database_url, workers, deployments, model):
                    print(line, flush=True)
