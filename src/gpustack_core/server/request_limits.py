"""Limits on what a client may send: body size, body time, JSON depth, values a database can store.

- :func:`read_json_body` reads a management API body up to a byte limit (413 past it, checked on
  ``Content-Length`` before anything is read) and parses it; JSON nested deeper than Python's
  parser can follow is a :class:`ValueError` like any other invalid JSON, never a RecursionError.
- :func:`unstorable_reason` finds what no database column takes: NUL characters (PostgreSQL refuses
  them), integers outside BIGINT, structures nested deeper than :data:`MAX_JSON_DEPTH`.
- :class:`RequestBodyTimeout` is an ASGI middleware: a request whose body has not fully arrived
  within its deadline is answered 408 (with ``Connection: close``), so a client that announces
  100 bytes and sends 10 cannot hold a connection and a task.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
from starlette.requests import ClientDisconnect
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "MAX_JSON_DEPTH",
    "BodyIncomplete",
    "BodyTooLarge",
    "RequestBodyTimeout",
    "parse_json_limited",
    "read_json_body",
    "unstorable_reason",
]

#: Deepest nesting of arrays and objects a management API body may have.
MAX_JSON_DEPTH = 64


class BodyTooLarge(Exception):
    """The body is larger than the limit (answered 413)."""


class BodyIncomplete(Exception):
    """The body did not arrive: the client went away, or its deadline passed (answered 408)."""


def parse_json_limited(data: bytes) -> Any:
    """``json.loads`` whose failures, including too deep nesting, are all :class:`ValueError`."""
    try:
        return json.loads(data or b"null")
    except RecursionError:
        raise ValueError("the JSON document is nested too deeply") from None


async def read_json_body(raw: StarletteRequest, limit: int) -> Any:
    """Read and parse the body of ``raw``, refusing more than ``limit`` bytes.

    Raises:
        BodyTooLarge: the declared or the received length passed ``limit``.
        BodyIncomplete: the client disconnected (or :class:`RequestBodyTimeout` ended the wait).
        ValueError: the body is not JSON (or is nested too deeply for the parser).
    """
    declared = raw.headers.get("content-length")
    too_large = f"the request body is larger than this server's limit of {limit} bytes"
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(too_large)
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in raw.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(too_large)
            parts.append(chunk)
    except ClientDisconnect:
        raise BodyIncomplete("the request body did not arrive in time") from None
    return parse_json_limited(b"".join(parts))


def unstorable_reason(value: Any, int_min: int, int_max: int) -> tuple[list[str | int], str] | None:
    """``(location, message)`` of the first value no database column can store, or ``None``.

    Checks, without recursion: strings (keys too) with NUL characters, integers outside
    ``[int_min, int_max]``, floats that are not finite, nesting deeper than :data:`MAX_JSON_DEPTH`.
    """
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, loc = stack.pop()
        if len(loc) > MAX_JSON_DEPTH:
            return loc[:MAX_JSON_DEPTH], f"nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, str):
            if "\x00" in item:
                return loc, "NUL characters are not allowed in strings"
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not int_min <= item <= int_max:
                return loc, f"integer out of range: must be between {int_min} and {int_max}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return loc, "numbers must be finite"
        elif isinstance(item, dict):
            for key, sub in item.items():
                if "\x00" in key:
                    return loc, "NUL characters are not allowed in keys"
                stack.append((sub, [*loc, key]))
        elif isinstance(item, list):
            stack.extend((sub, [*loc, i]) for i, sub in enumerate(item))
    return None


_asyncio_timeout_at: Callable[[float], AbstractAsyncContextManager[Any]] | None = (
    asyncio.timeout_at if sys.version_info >= (3, 11) else None
)


def _running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or ``None`` (another event loop, such as trio, runs this task)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop if asyncio.current_task(loop) is not None else None


class RequestBodyTimeout:
    """ASGI middleware: the whole request body must arrive within ``timeout_s`` of the request.

    When the deadline passes, the application sees ``http.disconnect`` (as if the client had
    gone); if it has not answered by the time it returns, the middleware answers 408 with
    ``Connection: close``. Once the body is complete, ``receive`` is passed through untouched
    (streaming responses still learn about real disconnects).
    """

    def __init__(self, app: ASGIApp, timeout_s: float | None) -> None:
        """Wrap ``app``; ``timeout_s`` ``None`` or ``<= 0`` turns the deadline off."""
        self.app = app
        self.timeout_s = timeout_s if timeout_s and timeout_s > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection scope."""
        if scope["type"] != "http" or self.timeout_s is None:
            await self.app(scope, receive, send)
            return
        loop = _running_asyncio_loop()
        # on asyncio the wait is bounded by asyncio's own timeout (a timer handle; anyio's cancel
        # scope cost about a tenth of a tiny gateway request's CPU time); elsewhere by anyio's
        deadline = loop.time() + self.timeout_s if loop is not None else anyio.current_time() + self.timeout_s
        body_done = False
        timed_out = False
        started = False

        async def timed_receive() -> Message:
            nonlocal body_done, timed_out
            if body_done:
                return await receive()
            message: Message | None = None
            if loop is not None and _asyncio_timeout_at is not None:
                try:
                    async with _asyncio_timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    message = None
            else:
                with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                    message = await receive()
            if message is None:
                timed_out = body_done = True
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, timed_receive, tracking_send)
        if timed_out and not started:
            response = JSONResponse(
                {"detail": f"the request body did not arrive within {self.timeout_s:g} s"},
                status_code=408,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
