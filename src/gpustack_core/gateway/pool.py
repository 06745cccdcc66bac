"""A last-in-first-out pool of httpcore HTTP/1.1 connections: the gateway's client to engines.

httpcore's own pool re-examines every pooled connection (a ``poll`` system call for each idle
one) whenever any request starts or ends; with 64 concurrent streams that made the time to first
byte through the gateway 30 times slower than direct (docs/benchmarks/proxy.md). This pool does
O(1) work per request: it pops the most recently used idle connection for the origin (checking
only that one), or opens a new one, and pushes the connection back when the response is closed.
HTTP/1.1 itself (h11), timeouts and the exceptions are httpcore's (the transport under httpx);
the gateway calls it directly, which also skips httpx's per-request and per-chunk model layers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

import anyio
import httpcore

__all__ = ["UPSTREAM_ERRORS", "LifoConnectionPool"]

UPSTREAM_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
)
"""Every httpcore exception that means the engine could not be reached or answered badly."""

_Key = tuple[bytes, bytes, int]
_STALE = (httpcore.RemoteProtocolError, httpcore.ReadError, httpcore.WriteError)


class _ReturningStream:
    """A response body that hands its connection back to the pool when closed."""

    def __init__(
        self,
        inner: AsyncIterator[bytes],
        conn: httpcore.AsyncHTTPConnection,
        pool: LifoConnectionPool,
        key: _Key,
    ) -> None:
        self._inner = inner
        self._conn = conn
        self._pool = pool
        self._key = key
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._inner:
            yield part

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self._inner, "aclose", None)
        if close is not None:
            await close()
        await self._pool._give_back(self._key, self._conn)


class LifoConnectionPool:
    """Per-origin stacks of idle HTTP/1.1 connections."""

    def __init__(self, *, keepalive_expiry: float, max_idle_per_origin: int) -> None:
        """Keep at most ``max_idle_per_origin`` idle connections, each for ``keepalive_expiry`` seconds."""
        self._keepalive_expiry = keepalive_expiry
        self._max_idle = max_idle_per_origin
        self._idle: dict[_Key, list[httpcore.AsyncHTTPConnection]] = {}

    async def _take(self, key: _Key) -> httpcore.AsyncHTTPConnection | None:
        stack = self._idle.get(key)
        while stack:
            conn = stack.pop()
            if conn.is_idle() and not conn.has_expired():
                return conn
            await conn.aclose()
        return None

    async def _give_back(self, key: _Key, conn: httpcore.AsyncHTTPConnection) -> None:
        stack = self._idle.setdefault(key, [])
        if conn.is_idle() and len(stack) < self._max_idle:
            stack.append(conn)
        else:
            await conn.aclose()

    async def request(self, request: httpcore.Request, *, replayable: bool) -> httpcore.Response:
        """Send ``request`` on a pooled connection or a new one; read the body with ``aiter_stream``.

        When a pooled connection turns out closed by the peer and the body can be sent again
        (``replayable``), the request is retried once on a fresh connection. Close the response
        (``aclose``) to give the connection back.
        """
        url = request.url
        key: _Key = (url.scheme, url.host, url.port or (443 if url.scheme == b"https" else 80))
        conn = await self._take(key)
        reused = conn is not None
        while True:
            if conn is None:
                conn = httpcore.AsyncHTTPConnection(
                    origin=httpcore.Origin(key[0], key[1], key[2]), keepalive_expiry=self._keepalive_expiry
                )
            try:
                response = await conn.handle_async_request(request)
            except _STALE:
                await conn.aclose()
                if not (reused and replayable):
                    raise
                conn, reused = None, False  # the peer closed a pooled connection: one fresh try
                continue
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await conn.aclose()
                raise
            response.stream = _ReturningStream(response.stream, conn, self, key)  # type: ignore[arg-type]
            return response

    async def aclose(self) -> None:
        """Close every idle connection."""
        stacks, self._idle = self._idle, {}
        for stack in stacks.values():
            for conn in stack:
                await conn.aclose()

    async def __aenter__(self) -> LifoConnectionPool:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
