"""Local servers speaking the HTTP APIs of Hugging Face, ModelScope and the Ollama registry.

Each hub is a starlette app served by uvicorn on 127.0.0.1 (random port) in a thread. They serve
generated content and implement what the real clients call:

- Hugging Face (huggingface_hub): ``GET /api/models/{org}/{name}[/revision/{rev}]`` with
  ``siblings`` (size, ``lfs.sha256``) and ``sha``; ``GET|HEAD /{org}/{name}/resolve/{rev}/{path}``
  with ``Range``, ``X-Repo-Commit``, ``ETag``, ``X-Linked-Size``, ``X-Linked-Etag``; errors with
  ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``GatedRepo``) as the Hub sends them.
- ModelScope (modelscope_hub): ``GET /api/v1/models/{owner}/{name}/repo/files`` (``Data.Files``
  with ``Path``, ``Size``, ``Sha256``, ``Type``) and ``GET /api/v1/models/{owner}/{name}/repo``
  (``Revision``, ``FilePath``) with ``Range``.
- Ollama registry: ``GET /v2/{ns}/{name}/manifests/{tag}`` and ``GET /v2/{ns}/{name}/blobs/{digest}``,
  which redirects (307) to ``/cdn/{digest}`` like the real registry redirects to its CDN.

Fault injection (on :class:`HubState`): cut the connection after N bytes once, throttle the body,
require a token. Counters record every file GET so tests can assert "fetched once" / "resumed".
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "FileGet",
    "HubServer",
    "HubState",
    "huggingface_app",
    "modelscope_app",
    "ollama_app",
]

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass(frozen=True)
class FileGet:
    """One GET of a file's bytes as the server saw it."""

    key: str
    start: int
    end: int | None  # inclusive end of the range, None: to the end
    method: str = "GET"


@dataclass
class HubState:
    """Repositories, faults and counters of one fake hub (thread-safe through ``lock``)."""

    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    gated: set[str] = field(default_factory=set)
    token: str = "secret-token"
    cut_after: dict[str, int] = field(default_factory=dict)  # file key -> bytes before cutting, once
    #: file key -> byte at which the bounded range request holding it is cut, once (parallel fetches)
    cut_range_at: dict[str, int] = field(default_factory=dict)
    bytes_per_second: float | None = None
    corrupt: set[str] = field(default_factory=set)  # file keys served with their last byte flipped
    ignore_range: bool = False  # answer 200 with the whole body, like a server without Range support
    gets: list[FileGet] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def download_gets(self, key: str) -> list[FileGet]:
        """GETs of ``key`` that asked for everything from some offset (downloads, not header reads)."""
        with self.lock:
            return [g for g in self.gets if g.key == key and g.end is None and g.method == "GET"]

    def authorized(self, request: Request) -> bool:
        """Whether the request carries the hub's token (bearer header or ModelScope cookie)."""
        header = request.headers.get("authorization", "")
        return header == f"Bearer {self.token}" or request.cookies.get("m_session_id") == self.token


def _parse_range(header: str | None, size: int) -> tuple[int, int | None] | None:
    if not header or not header.startswith("bytes="):
        return None
    first, _, last = header[6:].split(",")[0].partition("-")
    start = int(first) if first else 0
    end = min(int(last), size - 1) if last else None
    return start, end


def serve_bytes(
    request: Request, state: HubState, key: str, data: bytes, headers: dict[str, str]
) -> Response:
    """Serve ``data`` honouring HEAD and ``Range``, with the state's faults and counters."""
    if key in state.corrupt:
        data = data[:-1] + bytes([data[-1] ^ 0xFF])
    size = len(data)
    parsed = None if state.ignore_range else _parse_range(request.headers.get("range"), size)
    start, end = parsed if parsed else (0, None)
    with state.lock:
        state.gets.append(FileGet(key=key, start=start, end=end, method=request.method))
    base = {"Accept-Ranges": "bytes", **headers}
    if request.method == "HEAD":
        return Response(b"", headers={**base, "Content-Length": str(size)})
    if parsed is not None and start >= size:
        return Response(b"", status_code=416, headers={"Content-Range": f"bytes */{size}"})
    stop = size if end is None else end + 1
    body = data[start:stop]
    status = 206 if parsed else 200
    if parsed:
        base["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    base["Content-Length"] = str(len(body))
    with state.lock:
        cut = state.cut_after.pop(key, None) if end is None else None
        ranged_cut = state.cut_range_at.get(key) if end is not None else None
        if ranged_cut is not None and start <= ranged_cut < stop:
            cut = state.cut_range_at.pop(key)
    rate = state.bytes_per_second

    async def stream() -> AsyncIterator[bytes]:
        sent = 0
        chunk = 64 * 1024
        limit = len(body) if cut is None else max(cut - start, 0)
        while sent < limit:
            piece = body[sent : min(sent + chunk, limit)]
            if rate:
                await asyncio.sleep(len(piece) / rate)
            yield piece
            sent += len(piece)
        if cut is not None:
            raise ConnectionAbortedError(f"fake hub cuts {key} after {cut} bytes")

    return StreamingResponse(stream(), status_code=status, headers=base)


@functools.lru_cache(maxsize=64)
def sha256(data: bytes) -> str:
    """Hex sha256 of ``data`` (memoised: the fake hubs hash the same files on every request)."""
    return hashlib.sha256(data).hexdigest()


def _is_lfs(path: str) -> bool:
    return path.endswith((".gguf", ".safetensors", ".bin"))


# -- Hugging Face -----------------------------------------------------------------------------------
def huggingface_app(state: HubState) -> Starlette:
    """The Hub's model-info and resolve endpoints over ``state.repos`` (``org/name`` -> files)."""

    def denied(repo: str, request: Request) -> Response | None:
        if repo not in state.repos:
            return Response("Repository not found", status_code=404, headers={"X-Error-Code": "RepoNotFound"})
        if repo in state.gated and not state.authorized(request):
            return Response(
                f"Access to model {repo} is restricted.",
                status_code=401,
                headers={"X-Error-Code": "GatedRepo", "X-Error-Message": "Access restricted"},
            )
        return None

    async def model_info(request: Request) -> Response:
        repo = f"{request.path_params['org']}/{request.path_params['name']}"
        revision = request.path_params.get("revision", "main")
        if (error := denied(repo, request)) is not None:
            return error
        if revision not in ("main", COMMIT):
            return Response("Invalid rev id", status_code=404, headers={"X-Error-Code": "RevisionNotFound"})
        siblings: list[dict[str, Any]] = []
        for path, data in sorted(state.repos[repo].items()):
            entry: dict[str, Any] = {"rfilename": path, "size": len(data), "blobId": sha256(data)[:40]}
            if _is_lfs(path):
                entry["lfs"] = {"sha256": sha256(data), "size": len(data), "pointerSize": 134}
            siblings.append(entry)
        return JSONResponse(
            {
                "_id": "0" * 24,
                "id": repo,
                "modelId": repo,
                "sha": COMMIT,
                "private": False,
                "gated": "manual" if repo in state.gated else False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "lastModified": "2026-01-01T00:00:00.000Z",
                "createdAt": "2026-01-01T00:00:00.000Z",
                "siblings": siblings,
            }
        )

    async def resolve(request: Request) -> Response:
        repo = f"{request.path_params['org']}/{request.path_params['name']}"
        revision, path = request.path_params["revision"], request.path_params["path"]
        if (error := denied(repo, request)) is not None:
            return error
        if revision not in ("main", COMMIT):
            return Response("Invalid rev id", status_code=404, headers={"X-Error-Code": "RevisionNotFound"})
        data = state.repos[repo].get(path)
        if data is None:
            return Response("Entry not found", status_code=404, headers={"X-Error-Code": "EntryNotFound"})
        etag = f'"{sha256(data)}"' if _is_lfs(path) else f'"{sha256(data)[:40]}"'
        headers = {"X-Repo-Commit": COMMIT, "ETag": etag}
        if _is_lfs(path):
            headers |= {"X-Linked-Size": str(len(data)), "X-Linked-Etag": etag}
        return serve_bytes(request, state, f"{repo}/{path}", data, headers)

    return Starlette(
        routes=[
            Route("/api/models/{org}/{name}/revision/{revision}", model_info),
            Route("/api/models/{org}/{name}", model_info),
            Route("/{org}/{name}/resolve/{revision}/{path:path}", resolve, methods=["GET", "HEAD"]),
        ]
    )


# -- ModelScope -------------------------------------------------------------------------------------
def modelscope_app(state: HubState) -> Starlette:
    """ModelScope's legacy ``/api/v1`` file-listing and file endpoints over ``state.repos``."""

    def denied(repo: str, request: Request) -> Response | None:
        if repo not in state.repos:
            return JSONResponse(
                {"Code": 10010205001, "Message": f"model {repo} not found", "Success": False}, status_code=404
            )
        if repo in state.gated and not state.authorized(request):
            return JSONResponse({"Code": 401, "Message": "login required", "Success": False}, status_code=401)
        return None

    async def files(request: Request) -> Response:
        repo = f"{request.path_params['owner']}/{request.path_params['name']}"
        if (error := denied(repo, request)) is not None:
            return error
        if request.query_params.get("Revision", "master") != "master":
            return JSONResponse({"Code": 10010205001, "Message": "revision not found", "Success": False}, 404)
        entries = [
            {
                "Name": path.rsplit("/", 1)[-1],
                "Path": path,
                "Size": len(data),
                "Sha256": sha256(data),
                "Type": "blob",
                "Revision": COMMIT,
                "IsLFS": _is_lfs(path),
            }
            for path, data in sorted(state.repos[repo].items())
        ]
        return JSONResponse({"Code": 200, "Data": {"Files": entries}, "Message": "success", "Success": True})

    async def file(request: Request) -> Response:
        repo = f"{request.path_params['owner']}/{request.path_params['name']}"
        if (error := denied(repo, request)) is not None:
            return error
        path = request.query_params.get("FilePath", "")
        data = state.repos[repo].get(path)
        if data is None:
            return JSONResponse({"Code": 10010205001, "Message": "file not found", "Success": False}, 404)
        return serve_bytes(request, state, f"{repo}/{path}", data, {"ETag": f'"{sha256(data)}"'})

    return Starlette(
        routes=[
            Route("/api/v1/models/{owner}/{name}/repo/files", files),
            Route("/api/v1/models/{owner}/{name}/repo", file, methods=["GET", "HEAD"]),
        ]
    )


# -- Ollama -----------------------------------------------------------------------------------------
OLLAMA_MEDIA = {
    "model": "application/vnd.ollama.image.model",
    "projector": "application/vnd.ollama.image.projector",
    "template": "application/vnd.ollama.image.template",
    "params": "application/vnd.ollama.image.params",
}


def ollama_app(state: HubState) -> Starlette:
    """The registry's manifest and blob endpoints; ``state.repos`` maps ``ns/name:tag`` to layers
    keyed by kind (``model``, ``projector``, ``template``, ``params``)."""

    def manifest_of(layers: dict[str, bytes]) -> bytes:
        config = json.dumps({"model_format": "gguf", "model_family": "llama"}).encode()
        doc = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": f"sha256:{sha256(config)}",
                "size": len(config),
            },
            "layers": [
                {"mediaType": OLLAMA_MEDIA[kind], "digest": f"sha256:{sha256(data)}", "size": len(data)}
                for kind, data in layers.items()
            ],
        }
        return json.dumps(doc).encode()

    async def manifest(request: Request) -> Response:
        key = f"{request.path_params['ns']}/{request.path_params['name']}:{request.path_params['tag']}"
        if key in state.gated and not state.authorized(request):
            return JSONResponse({"errors": [{"code": "UNAUTHORIZED", "message": "unauthorized"}]}, 401)
        layers = state.repos.get(key)
        if layers is None:
            return JSONResponse(
                {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}, 404
            )
        return Response(
            manifest_of(layers), media_type="application/vnd.docker.distribution.manifest.v2+json"
        )

    def blob_data(digest: str) -> bytes | None:
        for layers in state.repos.values():
            for data in layers.values():
                if f"sha256:{sha256(data)}" == digest:
                    return data
        return None

    async def blob(request: Request) -> Response:
        digest = request.path_params["digest"]
        if blob_data(digest) is None:
            return JSONResponse({"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown"}]}, 404)
        return RedirectResponse(f"/cdn/{digest}", status_code=307)

    async def cdn(request: Request) -> Response:
        digest = request.path_params["digest"]
        data = blob_data(digest)
        if data is None:
            return Response(b"", status_code=404)
        return serve_bytes(request, state, digest, data, {"ETag": f'"{digest}"'})

    return Starlette(
        routes=[
            Route("/v2/{ns}/{name}/manifests/{tag}", manifest),
            Route("/v2/{ns}/{name}/blobs/{digest}", blob, methods=["GET", "HEAD"]),
            Route("/cdn/{digest}", cdn, methods=["GET", "HEAD"]),
        ]
    )


class HubServer:
    """Runs an ASGI app with uvicorn on 127.0.0.1, a random port, in a daemon thread."""

    def __init__(self, app: Starlette) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="critical", lifespan="off", access_log=False, ws="none")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> HubServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake hub server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
