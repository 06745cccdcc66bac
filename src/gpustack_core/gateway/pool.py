"""The gateway's HTTP/1.1 client to engines: asyncio protocols, httptools' parser, a LIFO pool.

Every streamed token passes through here once, so the per-chunk path is kept short: the event
loop hands the socket's bytes to :class:`_EngineConnection` (an :class:`asyncio.Protocol`), the C
parser of ``httptools`` (llhttp, the parser uvicorn uses) strips the HTTP framing and calls back
with the body, and the gateway's task wakes on one future. There is no per-read cancel scope, no
stream wrapper and no Python HTTP state machine on the way (docs/benchmarks/proxy.md measured
httpx, httpcore and this client).

The pool keeps, per origin, a stack of idle keep-alive connections and takes the most recently
used one (O(1) per request: checking every pooled connection on each request, as httpcore's pool
does, cost 30 times the direct first-byte time at 64 streams). A pooled connection the engine
closed while idle is noticed by the event loop and skipped; one it closes just as a request is
sent is retried once on a fresh connection when the body can be sent again, and otherwise fails
with :class:`UpstreamClosed` before any answer, which the caller may retry elsewhere.

It needs an asyncio event loop (uvicorn, hypercorn's asyncio workers, ``anyio.run`` on asyncio)
and speaks plain ``http://`` only: engines are reached on the cluster's own network.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

__all__ = [
    "Cancellation",
    "Origin",
    "UpstreamClosed",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamPool",
    "UpstreamProtocolError",
    "UpstreamResponse",
    "UpstreamTimeout",
    "origin_of",
]

_HIGH_WATER = 256 * 1024  # buffered response bytes at which reading from the engine pauses


class UpstreamError(Exception):
    """The engine could not be reached, or broke the HTTP exchange."""


class UpstreamConnectError(UpstreamError):
    """No connection could be made (refused, unreachable, or the connect timed out); nothing was sent."""


class UpstreamClosed(UpstreamError):
    """The engine closed or reset the connection before its answer was complete."""


class UpstreamProtocolError(UpstreamError):
    """The engine's answer was not valid HTTP/1.1."""


class UpstreamTimeout(UpstreamError):
    """The engine sent nothing for longer than the read timeout."""


class Cancellation:
    """Lets another task stop an exchange in progress (the gateway's watcher, when the client leaves).

    Passed to :meth:`UpstreamPool.request`; :meth:`cancel` closes the exchange's connection, which
    the engine sees as its client going away, and the request's reader gets ``error``.
    """

    __slots__ = ("_conn", "error")

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self._conn: _EngineConnection | None = None

    def cancel(self, error: BaseException) -> None:
        """Stop the exchange now, or before it starts."""
        if self.error is None:
            self.error = error
        conn = self._conn
        if conn is not None:
            conn.abort(error)


Origin = tuple[str, int]
"""``(host, port)`` of an engine."""


def origin_of(base_url: str) -> tuple[Origin, bytes]:
    """Split an engine's ``http://host:port[/prefix]`` into its origin and its path prefix."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        raise UpstreamConnectError(
            f"engine URL {base_url!r} is not an http://host:port URL "
            "(the gateway speaks plain HTTP to engines)"
        )
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise UpstreamConnectError(f"engine URL {base_url!r} has an invalid port") from exc
    return (parts.hostname, port), parts.path.rstrip("/").encode()


class _EngineConnection(asyncio.Protocol):
    """One keep-alive connection to an engine, carrying one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser: Any = None  # an httptools.HttpResponseParser while an exchange is open
        self._busy = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.message_done = False
        self.keep_alive = False
        self.chunks: deque[bytes] = deque()
        self._buffered = 0
        self._reading_paused = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._cancellation: Cancellation | None = None
        self._interim = False

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        if self._parser is None or self.message_done:
            self._fail(UpstreamProtocolError("the engine sent bytes with no request outstanding"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamProtocolError(f"invalid HTTP from the engine: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._busy and not self.message_done and self.error is None:
            if self.head_done and exc is None and self._reads_until_close():
                self.message_done = True  # a body delimited by the end of the connection
                self._wake()
            else:
                reason = f": {exc}" if exc is not None else ""
                what = "the answer" if self.head_done else "an answer"
                message = f"the engine closed the connection before {what} was complete{reason}"
                self._fail(UpstreamClosed(message))
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = self.loop.create_future()

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- httptools callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): skip it
            self._interim = True
            self.headers = []
            return
        self.status = status
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.message_done = True
        self.keep_alive = bool(self._parser.should_keep_alive())
        self._wake()

    # -- the exchange ----------------------------------------------------------------------------

    def begin(self, cancellation: Cancellation | None) -> None:
        """Reset the per-exchange state for a new request on this connection."""
        if cancellation is not None:
            if cancellation.error is not None:
                raise cancellation.error
            cancellation._conn = self
            self._cancellation = cancellation
        self._parser = httptools.HttpResponseParser(self)
        self._busy = True
        self.status = 0
        self.headers = []
        self.head_done = self.message_done = self.keep_alive = self._interim = False
        self.chunks.clear()
        self._buffered = 0
        self.error = None

    def end(self) -> None:
        """The exchange is over (the connection is either pooled again or closed)."""
        self._busy = False
        self._parser = None
        cancellation, self._cancellation = self._cancellation, None
        if cancellation is not None:
            cancellation._conn = None

    def abort(self, error: BaseException) -> None:
        """Stop the exchange now: close the connection and wake the reader with ``error``."""
        self._fail(error)

    def reusable(self) -> bool:
        return (
            not self.closed
            and self.message_done
            and self.keep_alive
            and self.error is None
            and not self.chunks
            and self.transport is not None
            and not self.transport.is_closing()
        )

    async def write(self, data: bytes, timeout: float) -> None:
        """Send ``data``; when the engine reads slower than we send, wait (at most ``timeout``)."""
        if self.error is not None:
            raise self.error
        if self.closed or self.transport is None:
            raise UpstreamClosed("the engine closed the connection while the request was being sent")
        self.transport.write(data)
        drain = self._drain
        if drain is not None:
            try:
                await asyncio.wait_for(asyncio.shield(drain), timeout)
            except asyncio.TimeoutError:
                self._fail(UpstreamTimeout(f"the engine read none of the request for {timeout} s"))
            if self.error is not None:
                raise self.error
            if self.closed:
                raise UpstreamClosed("the engine closed the connection while the request was being sent")

    async def wait(self, timeout: float) -> None:
        """Wait until the parser made progress (or failed), at most ``timeout`` seconds."""
        if self.error is not None:
            raise self.error
        fut: asyncio.Future[None] = self.loop.create_future()
        self._waiter = fut
        timer = self.loop.call_later(timeout, _expire, fut)
        try:
            await fut
        finally:
            timer.cancel()
            self._waiter = None

    def take_body(self) -> bytes:
        """Everything received so far; resumes reading when it had been paused."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    def _reads_until_close(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self.error)


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(UpstreamTimeout("the engine sent nothing within the read timeout"))


class UpstreamResponse:
    """An engine's answer: status and headers, then the body as it arrives.

    Call :meth:`next_chunk` until it returns ``None`` (or :meth:`read`), then :meth:`aclose`, which
    gives the connection back to the pool when the answer was read to its end, and closes it otherwise.
    """

    def __init__(self, pool: UpstreamPool, origin: Origin, conn: _EngineConnection) -> None:
        self._pool = pool
        self._origin = origin
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        self._closed = False

    async def next_chunk(self) -> bytes | None:
        """The body bytes received since the last call (waiting for some), or ``None`` at the end."""
        conn = self._conn
        timeout = self._pool.read_timeout
        while True:
            if conn.chunks:
                return conn.take_body()
            if conn.message_done:
                return None
            await conn.wait(timeout)

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while (chunk := await self.next_chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    async def aclose(self) -> None:
        """Pool the connection when the answer was read to its end; otherwise close it."""
        if self._closed:
            return
        self._closed = True
        self._pool._give_back(self._origin, self._conn)


class UpstreamPool:
    """Per-origin stacks of idle HTTP/1.1 connections to engines; one pool per gateway."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        keepalive_expiry: float = 30.0,
        max_idle_per_origin: int = 256,
    ) -> None:
        """``read_timeout`` bounds each wait for the engine's next bytes, not a whole answer."""
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._keepalive_expiry = keepalive_expiry
        self._max_idle = max_idle_per_origin
        self._idle: dict[Origin, list[_EngineConnection]] = {}
        self._origins: dict[str, tuple[Origin, bytes]] = {}

    def resolve(self, base_url: str) -> tuple[Origin, bytes]:
        """The origin and path prefix of an engine URL (parsed once per URL)."""
        known = self._origins.get(base_url)
        if known is None:
            known = origin_of(base_url)
            if len(self._origins) > 4096:  # bounded: instances come and go
                self._origins.clear()
            self._origins[base_url] = known
        return known

    def _take(self, origin: Origin) -> _EngineConnection | None:
        stack = self._idle.get(origin)
        now = time.monotonic()
        while stack:
            conn = stack.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive_expiry:
                return conn
            _close(conn)
        return None

    def _give_back(self, origin: Origin, conn: _EngineConnection) -> None:
        reusable = conn.reusable()
        conn.end()
        if not reusable:
            _close(conn)
            return
        stack = self._idle.setdefault(origin, [])
        if len(stack) >= self._max_idle:
            _close(conn)
            return
        conn.idle_since = time.monotonic()
        stack.append(conn)

    async def _connect(self, origin: Origin) -> _EngineConnection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _EngineConnection(loop), origin[0], origin[1]),
                self.connect_timeout,
            )
        except asyncio.TimeoutError as exc:
            raise UpstreamConnectError(
                f"connecting to {origin[0]}:{origin[1]} timed out after {self.connect_timeout} s"
            ) from exc
        except OSError as exc:
            raise UpstreamConnectError(f"could not connect to {origin[0]}:{origin[1]}: {exc}") from exc
        return conn

    async def request(
        self,
        origin: Origin,
        head: bytes,
        body: bytes | AsyncIterator[bytes],
        *,
        chunked: bool,
        replayable: bool,
        cancellation: Cancellation | None = None,
    ) -> UpstreamResponse:
        """Send one request (``head`` is its request line and headers) and wait for the answer's head.

        ``body`` is the whole body, or an async iterator of its pieces (framed as chunks when
        ``chunked``). When a pooled connection turns out closed by the engine and the body can be
        sent again (``replayable``; never for an iterator, which the first try consumed), the request
        is retried once on a fresh connection. ``read_timeout`` also bounds each wait for the engine to
        read more of the request. Raises an
        :class:`UpstreamError` subclass, or the error ``cancellation`` was cancelled with; nothing
        is left open when it does.
        """
        if cancellation is not None and cancellation.error is not None:
            raise cancellation.error
        if not isinstance(body, bytes):
            replayable = False  # an iterator is consumed by the first try
        conn = self._take(origin)
        reused = conn is not None
        while True:
            if conn is None:
                conn = await self._connect(origin)
            try:
                conn.begin(cancellation)
                timeout = self.read_timeout
                if isinstance(body, bytes):
                    await conn.write(head + body, timeout)
                else:
                    await conn.write(head, timeout)
                    async for piece in body:
                        if piece:
                            frame = b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece
                            await conn.write(frame, timeout)
                    if chunked:
                        await conn.write(b"0\r\n\r\n", timeout)
                while not conn.head_done:
                    await conn.wait(timeout)
            except UpstreamClosed:
                conn.end()
                _close(conn)
                if not (reused and replayable):
                    raise
                conn, reused = None, False  # the engine closed a pooled connection: one fresh try
                continue
            except BaseException:
                conn.end()
                _close(conn)
                raise
            return UpstreamResponse(self, origin, conn)

    def aclose(self) -> None:
        """Close every idle connection."""
        stacks, self._idle = self._idle, {}
        for stack in stacks.values():
            for conn in stack:
                _close(conn)


def _close(conn: _EngineConnection) -> None:
    conn.closed = True
    if conn.transport is not None and not conn.transport.is_closing():
        conn.transport.close()
