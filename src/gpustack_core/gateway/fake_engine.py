"""A fake OpenAI-compatible engine for tests and benchmarks of the gateway.

It answers every route the gateway forwards, streams server-sent events with a delay between
chunks, reports token usage the way engines do (on ``stream_options.include_usage`` for streams),
can be told to fail, and counts what happened, including streams cancelled because the caller went
away. Run it as ``python -m gpustack_core.gateway.fake_engine --port 0``: it prints
``LISTENING <port>`` once it accepts connections.

Per-request knobs are extra body fields (the ``openai`` client's ``extra_body``):
``fake_tokens`` (chunks to generate, default 8), ``fake_delay_s`` (between chunks, default 0.01;
token ``i`` is due ``(i + 1) * fake_delay_s`` after the stream started, whatever the reader does),
``fake_status`` (answer with this HTTP error status), ``fake_sleep_s`` (wait before answering).
``GET /_fake/stats`` returns the counters; ``POST /_fake/reset`` clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .multipart import MultipartModelSniffer, boundary_of

__all__ = ["FakeEngineStats", "create_fake_engine", "main"]


@dataclass
class FakeEngineStats:
    """What a fake engine saw: requests per path, streams finished or cancelled, bodies."""

    name: str
    requests: Counter[str] = field(default_factory=Counter)
    streams_started: int = 0
    streams_completed: int = 0
    streams_cancelled: int = 0
    active_streams: int = 0
    last_body: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready data."""
        return {
            "name": self.name,
            "requests": dict(self.requests),
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "streams_cancelled": self.streams_cancelled,
            "active_streams": self.active_streams,
            "last_body": self.last_body,
        }


def _words(obj: Any) -> int:
    """A stand-in tokenizer: whitespace-separated words in every string of ``obj``."""
    if isinstance(obj, str):
        return len(obj.split())
    if isinstance(obj, list):
        return sum(_words(x) for x in obj)
    if isinstance(obj, dict):
        return sum(_words(v) for v in obj.values())
    return 0


def create_fake_engine(name: str = "fake") -> Starlette:
    """The fake engine's app; ``name`` appears in every answer (``system_fingerprint``)."""
    stats = FakeEngineStats(name)

    async def _prelude(request: Request) -> tuple[dict[str, Any], Response | None]:
        stats.requests[request.url.path] += 1
        body = await request.json()
        stats.last_body = body
        sleep = float(body.get("fake_sleep_s", 0))
        if sleep:
            await asyncio.sleep(sleep)
        status = body.get("fake_status")
        if status:
            err = {
                "error": {
                    "message": f"fake failure {status}",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
            return body, JSONResponse(err, status_code=int(status))
        return body, None

    async def generate(request: Request) -> Response:
        body, failure = await _prelude(request)
        if failure is not None:
            return failure
        chat = request.url.path.endswith("/chat/completions")
        model = body.get("model", "")
        n = int(body.get("fake_tokens", 8))
        delay = float(body.get("fake_delay_s", 0.01))
        prompt_tokens = _words(body.get("messages") if chat else body.get("prompt"))
        created = int(time.time())
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{name}"
        kind = "chat.completion" if chat else "text_completion"
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
        if not body.get("stream"):
            await asyncio.sleep(delay * n)
            text = " ".join(f"tok{i}" for i in range(n))
            choice: dict[str, Any] = (
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                if chat
                else {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
            )
            return JSONResponse(
                {
                    "id": rid,
                    "object": kind,
                    "created": created,
                    "model": model,
                    "system_fingerprint": name,
                    "choices": [choice],
                    "usage": usage,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(piece: dict[str, Any] | None, finish: str | None) -> bytes:
            choices = []
            if piece is not None:
                c: dict[str, Any] = {"index": 0, "finish_reason": finish}
                c.update({"delta": piece} if chat else {"text": piece.get("content", ""), "logprobs": None})
                choices.append(c)
            obj: dict[str, Any] = {
                "id": rid,
                "object": kind + (".chunk" if chat else ""),
                "created": created,
                "model": model,
                "system_fingerprint": name,
                "choices": choices,
            }
            if piece is None:
                obj["usage"] = usage
            return b"data: " + json.dumps(obj).encode() + b"\n\n"

        async def events() -> AsyncIterator[bytes]:
            stats.streams_started += 1
            stats.active_streams += 1
            done = False
            try:
                if chat:
                    yield chunk({"role": "assistant", "content": ""}, None)
                # token i is due at start + (i + 1) * delay, like an engine generating at a fixed
                # rate: time the reader takes does not push later tokens back
                loop = asyncio.get_running_loop()
                start = loop.time()
                for i in range(n):
                    await asyncio.sleep(max(0.0, start + (i + 1) * delay - loop.time()))
                    yield chunk({"content": f"tok{i} "}, None)
                yield chunk({}, "stop") if chat else chunk({"content": ""}, "stop")
                if include_usage:
                    yield chunk(None, None)
                yield b"data: [DONE]\n\n"
                done = True
            finally:
                stats.active_streams -= 1
                if done:
                    stats.streams_completed += 1
                else:
                    stats.streams_cancelled += 1

        return StreamingResponse(events(), media_type="text/event-stream")

    async def embeddings(request: Request) -> Response:
        body, failure = await _prelude(request)
        if failure is not None:
            return failure
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        tokens = _words(items)
        data = [
            {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, float(i)]}
            for i in range(len(items))
        ]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def rerank(request: Request) -> Response:
        body, failure = await _prelude(request)
        if failure is not None:
            return failure
        docs = body.get("documents", [])
        tokens = _words(docs) + _words(body.get("query"))
        results = [{"index": i, "relevance_score": 1.0 / (i + 1)} for i in range(len(docs))]
        return JSONResponse(
            {"model": body.get("model"), "results": results, "usage": {"total_tokens": tokens}}
        )

    async def images(request: Request) -> Response:
        _, failure = await _prelude(request)
        if failure is not None:
            return failure
        return JSONResponse({"created": int(time.time()), "data": [{"b64_json": "aGVsbG8="}]})

    async def speech(request: Request) -> Response:
        body, failure = await _prelude(request)
        if failure is not None:
            return failure
        n = int(body.get("fake_tokens", 4))

        async def audio() -> AsyncIterator[bytes]:
            for i in range(n):
                await asyncio.sleep(0.005)
                yield bytes([i % 256]) * 1024

        return StreamingResponse(audio(), media_type="audio/mpeg")

    async def transcriptions(request: Request) -> Response:
        stats.requests[request.url.path] += 1
        sniffer = MultipartModelSniffer(boundary_of(request.headers.get("content-type", "")))
        size = 0
        found = False
        async for piece in request.stream():
            size += len(piece)
            if not found:
                found = sniffer.feed(piece)
        return JSONResponse(
            {"text": f"{size} bytes for {sniffer.model}", "model": sniffer.model, "bytes": size}
        )

    async def metrics_route(request: Request) -> Response:
        # the shape of llama.cpp's ``--metrics`` answer (one counter, one gauge)
        lines = [
            "# HELP fake_engine:requests_total Requests answered.",
            "# TYPE fake_engine:requests_total counter",
            f"fake_engine:requests_total {sum(stats.requests.values())}",
            "# HELP fake_engine:streams_in_flight Streams being answered.",
            "# TYPE fake_engine:streams_in_flight gauge",
            f"fake_engine:streams_in_flight {stats.streams_started - stats.streams_completed}",
        ]
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    async def stats_route(request: Request) -> Response:
        return JSONResponse(stats.as_dict())

    async def reset_route(request: Request) -> Response:
        stats.requests.clear()
        stats.streams_started = stats.streams_completed = stats.streams_cancelled = 0
        return JSONResponse({"ok": True})

    routes = [
        Route("/v1/chat/completions", generate, methods=["POST"]),
        Route("/v1/completions", generate, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/rerank", rerank, methods=["POST"]),
        Route("/v1/images/generations", images, methods=["POST"]),
        Route("/v1/audio/speech", speech, methods=["POST"]),
        Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
        Route("/v1/audio/translations", transcriptions, methods=["POST"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/_fake/stats", stats_route, methods=["GET"]),
        Route("/_fake/reset", reset_route, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.stats = stats
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a fake engine on 127.0.0.1 (``--port 0`` picks a free port; the chosen one is printed)."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m gpustack_core.gateway.fake_engine")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default="fake")
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)  # connections made before uvicorn starts wait in the backlog
    config = uvicorn.Config(
        create_fake_engine(args.name), log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
