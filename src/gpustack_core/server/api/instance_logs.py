"""An instance's engine log, proxied from the worker that runs it (``tail``, ``follow``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.responses import Response, StreamingResponse

from gpustack_core.worker.api import MAX_TAIL_LINES
from gpustack_core.worker.protocol import mint_api_token

from ._common import not_found
from ._framework import ApiError, Endpoint, Query, Request

__all__ = ["ENDPOINTS"]

_TEXT = "text/plain; charset=utf-8"
#: Seconds to wait for the worker to connect and answer; a followed log may then stay silent.
_CONNECT_TIMEOUT_S = 10.0


async def instance_logs(req: Request) -> Response:
    """The engine log of an instance: all of the current file, or its last ``tail`` lines;
    with ``follow=true`` the answer stays open and streams new lines as the engine writes them.
    ``rank`` >= 1 picks a subordinate part of a multi-worker instance (its RPC server, Ray node...)."""
    instance_id = req.path_params["instance_id"]
    tail = req.query["tail"]
    if tail is not None and not 0 <= tail <= MAX_TAIL_LINES:
        raise ApiError(
            422,
            [{"loc": ["query", "tail"], "msg": f"tail must be from 0 to {MAX_TAIL_LINES}", "type": "range"}],
        )
    instance = await req.db(req.services.store.get_instance, instance_id)
    if instance is None:
        raise not_found("instance", instance_id)
    if instance.worker_id is None:
        raise ApiError(
            409, f"instance {instance.id!r} is {instance.state.value} and on no worker yet: no log"
        )
    rank = req.query["rank"] or 0
    worker_id, log_id = instance.worker_id, instance.id
    if rank:
        part = next((p for p in instance.parts if p.rank == rank), None)
        if part is None:
            ranks = ", ".join(str(p.rank) for p in instance.parts) or "none (it runs on one worker)"
            raise ApiError(404, f"instance {instance.id!r} has no part of rank {rank}; its parts: {ranks}")
        worker_id, log_id = part.worker_id, f"{instance.id}.p{rank}"
    worker = await req.db(req.services.store.get_worker, worker_id)
    if worker is None:
        raise ApiError(409, f"the worker of instance {instance.id!r} is gone; its log went with it")
    if worker.info.api_port is None:
        raise ApiError(
            409, f"worker {worker.name!r} serves no worker API (started with the API off), so no logs"
        )
    token_hash = req.services.worker_token_hash
    if token_hash is None:
        raise ApiError(503, "the server has no worker token yet, so it cannot call workers")
    params: dict[str, str] = {"follow": "true" if req.query["follow"] else "false"}
    if tail is not None:
        params["tail"] = str(tail)
    url = f"http://{_host(worker.info.address)}:{worker.info.api_port}/instances/{log_id}/logs"
    headers = {"Authorization": f"Bearer {mint_api_token(token_hash, worker.name)}"}
    client = httpx.AsyncClient(timeout=httpx.Timeout(_CONNECT_TIMEOUT_S, read=None))
    try:
        upstream = await client.send(
            client.build_request("GET", url, params=params, headers=headers), stream=True
        )
    except httpx.HTTPError as exc:
        await client.aclose()
        raise ApiError(502, f"cannot reach worker {worker.name!r} at {url}: {exc}") from exc
    if upstream.status_code != 200:
        detail = (await upstream.aread()).decode(errors="replace")[:500]
        await upstream.aclose()
        await client.aclose()
        status = 404 if upstream.status_code == 404 else 502
        raise ApiError(status, f"worker {worker.name!r} answered {upstream.status_code}: {detail}")

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()
            await client.aclose()

    return StreamingResponse(
        relay(), media_type=_TEXT, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    )


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


ENDPOINTS = (
    Endpoint(
        "GET",
        "/instances/{instance_id}/logs",
        instance_logs,
        "an instance's engine log (tail, follow)",
        "instances",
        query=(
            Query(
                "tail", "int", f"only the last N lines (0-{MAX_TAIL_LINES}); default: the whole current log"
            ),
            Query("follow", "bool", "keep the answer open and stream new lines", False),
            Query("rank", "int", "a part of a multi-worker instance (1, 2, ...); default: the head"),
        ),
        media_type=_TEXT,
    ),
)
