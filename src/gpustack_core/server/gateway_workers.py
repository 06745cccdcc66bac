"""Several gateway processes on the server's port: ``serve --gateway-workers N``.

The server process (the *main* process) runs everything as with one process: management API,
console, controllers, embedded worker and a gateway. ``N - 1`` *gateway worker* processes
(:mod:`gpustack_core.server.gateway_worker`) run only the OpenAI gateway. All of them listen on
the same address with ``SO_REUSEPORT``, and the kernel spreads incoming connections between them
(Linux; elsewhere, where the option is missing or does not spread connections, more than one
process is refused with :class:`GatewayWorkersUnsupported`).

- **What a worker serves**: ``/v1`` and everything under it. Any other path (management API,
  console, ``/healthz``, ``/metrics``) that lands on a worker is proxied to the main process over
  a private Unix socket (in a ``0700`` directory), with the client's address in a header that
  the main process believes only on that socket (login rate limits still count the real client);
  the answer carries ``x-gpustack-core-proxied-by: gateway-<n>``.
- **Routes, keys, limits**: each worker builds its gateway from the same database: routes,
  fallbacks and scale-to-zero policies are re-read every ``reconcile_interval_s`` (the main
  process re-reads them after each reconcile pass), keys are cached ``auth_cache_ttl_s``
  (a revocation reaches the workers within that time), limit definitions every 2 s, counters
  are in the database as with one process.
- **Usage**: each process adds up its own requests and adds them to the usage tables (an
  upsert-add per row), every ``usage_flush_interval_s`` and at its shutdown: nothing is lost or
  counted twice; the usage API shows a worker's last requests within that interval.
- **Metrics**: per process. ``/metrics`` (answered by the main process wherever it lands)
  collects every worker's families over its socket and labels every sample with ``process``:
  ``server`` for the main process, ``gateway-1`` ... for the workers. Sum over ``process`` for
  cluster-wide counts.
- **Lifetime**: workers start once the main process has started (database migrated) and stop
  with it: each leads its own process group (:mod:`gpustack_core._platform`), which the main
  process asks to stop and then kills; a worker also stops by itself when its parent process
  is gone (the main process killed outright).
- Scale to zero: workers wake a model like the main process, but idle models are stopped by the
  main process, which only sees its own requests (see :mod:`gpustack_core.server.scale_to_zero`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
from prometheus_client import CollectorRegistry, Metric, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from gpustack_core import _platform

from .config import ServerConfig
from .request_limits import RequestBodyTimeout
from .session import SessionCookieMiddleware

__all__ = [
    "CLIENT_HEADER",
    "PROXIED_BY_HEADER",
    "GatewayFirst",
    "GatewayFirstApp",
    "GatewayWorkerPool",
    "GatewayWorkersUnsupported",
    "MainProcessFront",
    "config_from_json",
    "config_to_json",
    "freeze_startup_objects",
    "gateway_front",
    "is_gateway_path",
    "make_run_dir",
    "merge_metrics",
    "remove_run_dir",
    "reuse_port_socket",
    "unix_socket",
]

logger = logging.getLogger(__name__)

#: the header a gateway worker puts the client's ``host:port`` in when it proxies to the main process
CLIENT_HEADER = b"x-gpustack-core-client"


#: the header a gateway worker adds to the answers it proxied from the main process (its name)
PROXIED_BY_HEADER = b"x-gpustack-core-proxied-by"


class GatewayWorkersUnsupported(RuntimeError):
    """More than one gateway process was asked for where ``SO_REUSEPORT`` does not exist."""


def is_gateway_path(path: str) -> bool:
    """Whether ``path`` is the gateway's (``/v1`` or below it)."""
    return path == "/v1" or path.startswith("/v1/")


def freeze_startup_objects() -> None:
    """Move what a server process's startup left (modules, migrations, plugins: kept for the
    process's life) out of the garbage collector's full passes, which on a tiny gateway request
    cost about a tenth of its CPU time (docs/benchmarks/gateway_throughput.md). Call once, when
    the process serves; it affects the whole process (``gc.freeze``)."""
    gc.collect()
    gc.freeze()


def gateway_front(gateway: ASGIApp, config: ServerConfig) -> ASGIApp:
    """The gateway app as every server process serves ``/v1``: a login session's cookie counts as
    its bearer token (the console's playground), and the body must arrive within
    ``config.request_body_timeout_s`` (:class:`~.request_limits.RequestBodyTimeout`)."""
    return RequestBodyTimeout(SessionCookieMiddleware(gateway), config.request_body_timeout_s)


class GatewayFirst:
    """ASGI: HTTP requests for ``/v1`` go straight to ``gateway`` (a :func:`gateway_front`), past
    ``app``'s middleware, exception handlers and router; everything else (other paths, the
    lifespan) goes to ``app``.

    The server's routing answers the management API, the console and ``/metrics`` before it
    reaches the gateway's mount; on a tiny completion that walk cost about a tenth of the request's
    CPU time (docs/benchmarks/gateway_throughput.md).
    """

    def __init__(self, app: ASGIApp, gateway: ASGIApp) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_gateway_path(scope["path"]):
            await self.gateway(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class GatewayFirstApp(Starlette):
    """A Starlette application whose HTTP requests for ``/v1`` go to ``gateway_front`` first
    (:class:`GatewayFirst`), as the server process and every gateway worker serve them; middleware
    added later with ``add_middleware`` does not see them."""

    gateway_front: ASGIApp | None = None

    def build_middleware_stack(self) -> ASGIApp:
        """Starlette's stack, behind :class:`GatewayFirst` once ``gateway_front`` is set."""
        stack = super().build_middleware_stack()
        return stack if self.gateway_front is None else GatewayFirst(stack, self.gateway_front)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT`` (and ``SO_REUSEADDR``), listening.

    Raises:
        GatewayWorkersUnsupported: not Linux, or no ``SO_REUSEPORT``.
    """
    reuse_port = getattr(socket, "SO_REUSEPORT", None)
    if reuse_port is None or not sys.platform.startswith("linux"):
        # elsewhere (macOS, the BSDs) the option exists but does not spread connections
        raise GatewayWorkersUnsupported(
            "--gateway-workers above 1 needs SO_REUSEPORT as Linux has it (connections spread "
            f"between processes); this platform ({sys.platform}) lacks it: run with --gateway-workers 1"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, reuse_port, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def unix_socket(path: Path) -> socket.socket:
    """A listening Unix stream socket at ``path`` (a stale file there is replaced)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        sock.listen(256)
    except OSError:
        sock.close()
        raise
    return sock


def config_to_json(config: ServerConfig) -> str:
    """``config`` as JSON for a worker's command line."""
    values = dataclasses.asdict(config)
    values["data_dir"] = str(config.data_dir)
    return json.dumps(values)


def config_from_json(text: str) -> ServerConfig:
    """The inverse of :func:`config_to_json`."""
    values: dict[str, Any] = json.loads(text)
    values["data_dir"] = Path(values["data_dir"])
    return ServerConfig(**values)


def merge_metrics(families_by_process: Sequence[tuple[str, Sequence[Metric]]]) -> bytes:
    """Prometheus text of every process's families, each sample labelled ``process``."""
    merged: dict[str, Metric] = {}
    for process, families in families_by_process:
        for family in families:
            target = merged.get(family.name)
            if target is None:
                target = merged[family.name] = Metric(family.name, family.documentation, family.type)
                target.unit = family.unit
            for s in family.samples:
                labels = {**s.labels, "process": process}
                target.samples.append(Sample(s.name, labels, s.value, s.timestamp, s.exemplar))

    class _Merged:
        def collect(self) -> Iterator[Metric]:
            yield from merged.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return generate_latest(registry)


class GatewayWorkerPool:
    """The gateway worker processes of one server: started after the server, stopped with it."""

    def __init__(self, config: ServerConfig, count: int, port: int, run_dir: Path, log_level: str) -> None:
        """``count`` workers for ``config``, on ``port`` (the main process's bound port); their
        sockets go in ``run_dir``."""
        self.config = config
        self.count = count
        self.port = port
        self.run_dir = run_dir
        self.log_level = log_level
        self.processes: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Lock()

    @property
    def main_socket(self) -> Path:
        """The main process's private socket (workers proxy non-gateway paths to it)."""
        return self.run_dir / "server.sock"

    def worker_socket(self, index: int) -> Path:
        """Worker ``index``'s private socket (its metrics)."""
        return self.run_dir / f"gateway-{index}.sock"

    def start(self) -> None:
        """Start every worker (each leads its own process group)."""
        for index in range(1, self.count + 1):
            argv = [
                sys.executable,
                "-m",
                "gpustack_core.server.gateway_worker",
                "--index",
                str(index),
                "--port",
                str(self.port),
                "--run-dir",
                str(self.run_dir),
                "--parent-pid",
                str(os.getpid()),
                "--log-level",
                self.log_level,
            ]
            env = {**os.environ, "GPUSTACK_CORE_SERVER_CONFIG": config_to_json(self.config)}
            self.processes.append(subprocess.Popen(argv, env=env, **_platform.new_group_kwargs()))

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until every worker's socket answers; raise if one exits first or time runs out."""
        with anyio.fail_after(timeout_s):
            for index, process in enumerate(self.processes, start=1):
                while not await self._answers(index):
                    if process.poll() is not None:
                        raise RuntimeError(f"gateway worker {index} exited with {process.returncode}")
                    await anyio.sleep(0.05)

    async def _answers(self, index: int) -> bool:
        path = self.worker_socket(index)
        if not path.exists():
            return False
        try:
            async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(path))) as client:
                r = await client.get("http://worker/metrics", timeout=2.0)
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout_s: float = 15.0) -> None:
        """Ask every worker's group to stop, kill what is left after ``timeout_s`` (blocking;
        a second call waits for the first)."""
        with self._stopping:
            self._stop(timeout_s)

    def _stop(self, timeout_s: float) -> None:
        for process in self.processes:
            if process.poll() is None:
                _platform.signal_group(process.pid, _platform.TERMINATE)
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("gateway worker %d did not stop in %.0f s; killing it", process.pid, timeout_s)
            _platform.signal_group(process.pid, _platform.KILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5.0)
        self.processes.clear()

    async def metrics(self, registry: CollectorRegistry) -> bytes:
        """``/metrics`` of the main process (``registry``) and every worker, labelled by process."""
        parts: list[tuple[str, Sequence[Metric]]] = [("server", list(registry.collect()))]
        for index in range(1, len(self.processes) + 1):
            try:
                async with httpx.AsyncClient(
                    transport=httpx.AsyncHTTPTransport(uds=str(self.worker_socket(index)))
                ) as client:
                    r = await client.get("http://worker/metrics", timeout=5.0)
                r.raise_for_status()
            except httpx.HTTPError as exc:
                logger.warning("metrics of gateway worker %d not read: %s", index, exc)
                continue
            parts.append((f"gateway-{index}", list(text_string_to_metric_families(r.text))))
        return merge_metrics(parts)


_RUN_DIR_PREFIX = "gpustack-core-gw-"


def make_run_dir() -> Path:
    """A private (``0700``) directory for the processes' sockets, named after this process.

    Directories left by servers that died without cleaning up (``kill -9``) are removed first:
    their name carries the pid of a process that no longer exists.
    """
    _remove_stale_run_dirs(Path(tempfile.gettempdir()))
    return Path(tempfile.mkdtemp(prefix=f"{_RUN_DIR_PREFIX}{os.getpid()}-"))


def _remove_stale_run_dirs(parent: Path) -> None:
    import psutil

    for path in parent.glob(f"{_RUN_DIR_PREFIX}*-*"):
        pid = path.name[len(_RUN_DIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)  # another user's: not permitted, left alone


def remove_run_dir(path: Path) -> None:
    """Remove ``path`` and the sockets in it."""
    shutil.rmtree(path, ignore_errors=True)


class MainProcessFront:
    """The main process's ASGI front with workers: ``/metrics`` of every process, and the client
    address from :data:`CLIENT_HEADER` on requests that came over the private socket."""

    def __init__(self, app: ASGIApp, pool: GatewayWorkerPool, registry: CollectorRegistry) -> None:
        self.app = app
        self.pool = pool
        self.registry = registry
        self.socket_path = str(pool.main_socket)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            server = scope.get("server")
            if server is not None and server[0] == self.socket_path:
                scope = dict(scope)
                for name, value in scope["headers"]:
                    if name == CLIENT_HEADER:
                        host, _, port = value.decode("latin-1").rpartition(":")
                        scope["client"] = (host, int(port or 0))
                        break
                scope["headers"] = [(n, v) for n, v in scope["headers"] if n != CLIENT_HEADER]
            if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
                body = await self.pool.metrics(self.registry)
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
                return
        await self.app(scope, receive, send)
