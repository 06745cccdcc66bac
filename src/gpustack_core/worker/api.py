"""The worker's own HTTP API: what the server (and peer workers) ask a worker directly.

::

    GET /healthz                           liveness (no credentials)
    GET /metrics                           Prometheus metrics: devices, engine processes and the
                                           engines' own metrics (no credentials; see
                                           :mod:`gpustack_core.worker.metrics`)
    GET /instances/{instance_id}/logs      an engine's log: ``?tail=N`` lines, ``?follow=true`` streams
    GET /models/cache/{path}               a complete file of the worker's model cache, for peer
                                           workers (``Range`` requests answered with 206)

Every route but ``/healthz`` wants ``Authorization: Bearer <token>`` with a token from
:func:`gpustack_core.worker.protocol.mint_api_token` for this worker. The server proxies its
``GET /api/v1/instances/{id}/logs`` here; clients never need to reach workers themselves.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gpustack_core.supervisor import follow_log, log_tail_lines

from .protocol import verify_api_token

__all__ = ["MAX_TAIL_LINES", "WorkerApi", "bind_api_socket", "create_worker_api", "serve_worker_api"]

#: The most lines one ``tail`` may ask for.
MAX_TAIL_LINES = 100_000
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TEXT = "text/plain; charset=utf-8"
_NO_CACHE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True)
class WorkerApi:
    """What the worker's HTTP API needs from the agent.

    Attributes:
        worker_name: this worker's name (tokens minted for another worker are refused).
        token_sha256: hex SHA-256 of the cluster's worker join token.
        log_path: the log file of an instance id (whether or not it exists).
        follow_poll_s: how often a followed log is checked for new bytes.
        metrics: renders ``GET /metrics`` (``None``: the route answers 404).
        model_cache: the root of the worker's model cache, served to peers (``None``: not served).
    """

    worker_name: str
    token_sha256: str
    log_path: Callable[[str], Path]
    follow_poll_s: float = 0.25
    metrics: Callable[[], Awaitable[bytes]] | None = None
    model_cache: Path | None = None


def _error(status: int, detail: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def create_worker_api(api: WorkerApi) -> Starlette:
    """The worker's HTTP application (see the module docstring for its routes)."""

    def authorized(request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and verify_api_token(
            token.strip(), api.token_sha256, api.worker_name
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "worker": api.worker_name})

    async def instance_logs(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "a worker-API token for this worker is required")
        instance_id = request.path_params["instance_id"]
        if not _INSTANCE_ID.match(instance_id):
            return _error(422, f"invalid instance id {instance_id!r}")
        tail_text = request.query_params.get("tail")
        follow_text = request.query_params.get("follow", "false").lower()
        if follow_text not in {"true", "false", "1", "0"}:
            return _error(422, f"follow must be true or false, not {follow_text!r}")
        tail: int | None = None
        if tail_text is not None:
            if not tail_text.isdigit() or int(tail_text) > MAX_TAIL_LINES:
                return _error(422, f"tail must be a whole number of lines from 0 to {MAX_TAIL_LINES}")
            tail = int(tail_text)
        path = api.log_path(instance_id)
        try:
            end = path.stat().st_size
        except FileNotFoundError:
            return _error(404, f"no log for instance {instance_id!r} on worker {api.worker_name!r}")
        head = await anyio.to_thread.run_sync(_read_head, path, tail, end)
        if follow_text in {"false", "0"}:
            return Response(head, media_type=_TEXT, headers=_NO_CACHE)

        async def stream() -> AsyncIterator[bytes]:
            if head:
                yield head
            async for chunk in follow_log(path, end, api.follow_poll_s):
                yield chunk

        return StreamingResponse(stream(), media_type=_TEXT, headers=_NO_CACHE)

    async def model_cache_file(request: Request) -> Response:
        if not authorized(request):
            return _error(401, "a worker-API token for this worker is required")
        if api.model_cache is None:
            return _error(404, f"worker {api.worker_name!r} does not serve its model cache")
        relative = request.path_params["path"]
        path = _cache_file(api.model_cache, relative)
        if path is None:
            return _error(404, f"no complete file {relative!r} in the model cache of {api.worker_name!r}")
        return FileResponse(path, headers=_NO_CACHE)  # answers Range requests with 206

    async def metrics(request: Request) -> Response:
        if api.metrics is None:
            return _error(404, "this worker serves no metrics")
        return Response(await api.metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            Route("/instances/{instance_id}/logs", instance_logs),
            Route("/models/cache/{path:path}", model_cache_file),
        ]
    )


def _cache_file(root: Path, relative: str) -> Path | None:
    """A regular file under ``root`` named by ``relative``; never one outside it, never the cache's
    own state (``.gpustack``: locks, manifests, partial downloads), so only complete files."""
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p in (".", "..") or p.startswith(".") for p in parts):
        return None
    base = root.resolve()
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def _read_head(path: Path, tail: int | None, end: int) -> bytes:
    """The whole live log up to ``end``, or its last ``tail`` lines (reaching into the rotated copy)."""
    if tail is not None:
        return log_tail_lines(path, tail, end=end)
    with path.open("rb") as handle:
        return handle.read(end)


def bind_api_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket for the worker API (``port`` 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if os.name != "nt":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the program around it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_worker_api(app: Starlette, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until cancelled (no signal handlers, no access log)."""
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=2
    )
    server = _EmbeddedServer(config)
    try:
        await server.serve(sockets=[sock])
    except anyio.get_cancelled_exc_class():
        # close the listener and open connections (followed logs) before going away
        server.should_exit = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(3):
            await server.shutdown(sockets=[sock])
        raise
    finally:
        sock.close()
