"""aiohttp's client behind the interface of the gateway's own pool, for ``benchmarks.proxy --aiohttp``.

The gateway forwards through :class:`gpustack_core.gateway.pool.UpstreamPool` (asyncio protocols,
httptools' parser, a LIFO pool of keep-alive connections). Issue 19 asks whether owning that client
is worth it next to aiohttp's (a maintained client with a C HTTP parser and its own pool), so this
module gives the gateway the same four calls (``resolve``, ``request``, ``aclose`` and the answer's
``status``/``headers``/``next_chunk``/``read``/``aclose``) on top of one ``aiohttp.ClientSession``.

It is benchmark code, not an option of the gateway: :func:`install` puts it in place of a gateway's
pool before the app's lifespan creates one. The request head the gateway builds for its own client
(request line and a few headers) is split back into a path and headers here; that costs a few
microseconds per request, counted against aiohttp in the benchmark.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from gpustack_core.gateway import Gateway
from gpustack_core.gateway.pool import (
    Cancellation,
    Origin,
    UpstreamClosed,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    origin_of,
)

__all__ = ["AiohttpResponse", "AiohttpUpstreams", "install"]

# aiohttp computes these itself from the body it is given (and the URL's host).
_SKIP = frozenset({b"host", b"content-length", b"transfer-encoding"})


def _translate(exc: BaseException) -> UpstreamError:
    """The gateway's error for an aiohttp failure (it retries on connect errors and closes)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError(f"could not connect: {exc}")
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamTimeout("the engine sent nothing within the read timeout")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, ConnectionError)):
        return UpstreamClosed(f"the engine closed the connection: {exc!r}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamProtocolError(f"invalid HTTP from the engine: {exc}")
    return UpstreamError(f"{type(exc).__name__}: {exc}")


class _Abort:
    """What :class:`Cancellation` calls when the client leaves: close the aiohttp response."""

    def __init__(self) -> None:
        self.response: aiohttp.ClientResponse | None = None
        self.task: asyncio.Task[Any] | None = None

    def abort(self, error: BaseException) -> None:
        if self.response is not None:
            self.response.close()
        elif self.task is not None:  # still sending or waiting for the head
            self.task.cancel()


class AiohttpResponse:
    """An engine's answer read through aiohttp (the interface of ``pool.UpstreamResponse``)."""

    def __init__(self, response: aiohttp.ClientResponse, cancellation: Cancellation | None) -> None:
        self._response = response
        self._cancellation = cancellation
        self.status = response.status
        self.headers: list[tuple[bytes, bytes]] = list(response.raw_headers)

    async def next_chunk(self) -> bytes | None:
        """The body bytes received since the last call (waiting for some), or ``None`` at the end."""
        try:
            data = await self._response.content.readany()
        except Exception as exc:
            if self._cancellation is not None and self._cancellation.error is not None:
                raise self._cancellation.error from exc
            raise _translate(exc) from exc
        return data or None

    async def read(self) -> bytes:
        """The whole body."""
        try:
            return await self._response.read()
        except Exception as exc:
            raise _translate(exc) from exc

    async def aclose(self) -> None:
        """Give the connection back to aiohttp's pool (it closes it when the body was not read)."""
        if self._cancellation is not None:
            self._cancellation._conn = None
        self._response.release()


class AiohttpUpstreams:
    """One ``aiohttp.ClientSession`` (unbounded pool, keep-alive 30 s), called like the gateway's pool."""

    def __init__(self, *, connect_timeout: float, read_timeout: float) -> None:
        """The same timeouts as the gateway's pool: connect, and each wait for the engine's next bytes."""
        self.read_timeout = read_timeout
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._origins: dict[str, tuple[Origin, bytes]] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30.0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def resolve(self, base_url: str) -> tuple[Origin, bytes]:
        """The origin and path prefix of an engine URL (parsed once per URL)."""
        known = self._origins.get(base_url)
        if known is None:
            known = self._origins[base_url] = origin_of(base_url)
        return known

    async def request(
        self,
        origin: Origin,
        head: bytes,
        body: bytes | AsyncIterator[bytes],
        *,
        chunked: bool,
        replayable: bool,
        cancellation: Cancellation | None = None,
    ) -> AiohttpResponse:
        """Send one request built by the gateway (``head``: request line and headers); the answer's head."""
        if cancellation is not None and cancellation.error is not None:
            raise cancellation.error
        lines = head.split(b"\r\n")
        method, path, _ = lines[0].split(b" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(b":")
                if name.lower() not in _SKIP:
                    headers[name.decode("latin-1")] = value.strip().decode("latin-1")
        url = f"http://{origin[0]}:{origin[1]}{path.decode('latin-1')}"
        abort = _Abort()
        if cancellation is not None:
            cancellation._conn = abort  # type: ignore[assignment]  # duck-typed: it only calls abort()
        abort.task = asyncio.current_task()
        try:
            response = await self._client().request(method.decode(), url, data=body, headers=headers)
        except asyncio.CancelledError:
            if cancellation is not None and cancellation.error is not None:
                raise cancellation.error from None
            raise
        except Exception as exc:
            if cancellation is not None:
                cancellation._conn = None
            raise _translate(exc) from exc
        abort.response, abort.task = response, None
        return AiohttpResponse(response, cancellation)

    def aclose(self) -> None:
        """Close the session (and its pooled connections) in the background of the running loop."""
        session, self._session = self._session, None
        if session is not None:
            asyncio.get_running_loop().create_task(session.close())


def install(gateway: Gateway) -> None:
    """Make ``gateway`` forward through aiohttp; call before its lifespan starts (benchmarks only)."""
    config = gateway.config
    gateway._pool = AiohttpUpstreams(  # type: ignore[assignment]  # same calls as UpstreamPool
        connect_timeout=config.connect_timeout_s, read_timeout=config.upstream_timeout_s
    )
