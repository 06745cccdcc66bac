"""A last-in-first-out connection pool for the gateway's httpx client.

httpcore's own pool re-examines every pooled connection (a ``poll`` system call for each idle
one) whenever any request starts or ends; with 64 concurrent streams that made the time to first
byte through the gateway 30 times slower than direct (docs/benchmarks/proxy.md). This pool does
O(1) work per request: it pops the most recently used idle connection for the origin (checking
only that one), or opens a new one, and pushes the connection back when the response is closed.
HTTP parsing, timeouts and exception mapping stay httpx's and httpcore's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType

import httpcore
import httpx

__all__ = ["LifoConnectionPool", "pooled_transport"]

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

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._inner:
            yield part

    async def aclose(self) -> None:
        close = getattr(self._inner, "aclose", None)
        if close is not None:
            await close()
        await self._pool._give_back(self._key, self._conn)


class LifoConnectionPool:
    """Per-origin stacks of idle HTTP/1.1 connections (the interface httpx's transport expects)."""

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

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        """Send ``request`` on a pooled connection (or a new one); a stale pooled one is retried once."""
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
                if not reused:
                    raise
                conn, reused = None, False  # the peer closed a pooled connection: one fresh try
                continue
            except BaseException:
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


def pooled_transport(
    *, keepalive_expiry: float = 30.0, max_idle_per_origin: int = 256
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connection pool is a :class:`LifoConnectionPool`."""
    transport = httpx.AsyncHTTPTransport()
    transport._pool = LifoConnectionPool(  # type: ignore[assignment]
        keepalive_expiry=keepalive_expiry, max_idle_per_origin=max_idle_per_origin
    )
    return transport
