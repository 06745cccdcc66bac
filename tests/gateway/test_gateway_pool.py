"""The gateway's HTTP/1.1 client to engines, driven against raw TCP servers that each test scripts.

Every engine here is an ``asyncio.start_server`` on 127.0.0.1 whose handler writes the exact bytes
of its answer, so each case (keep-alive, chunked and close-delimited bodies, stale connections,
timeouts, garbage, cancellation, backpressure, streamed uploads) is reproduced byte for byte.
Steps are ordered with events and queues; no test relies on a sleep to decide its outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httptools
import pytest

from gpustack_core.gateway import pool as pool_module
from gpustack_core.gateway._bodies import request_head
from gpustack_core.gateway.pool import (
    Cancellation,
    Origin,
    UpstreamClosed,
    UpstreamConnectError,
    UpstreamPool,
    UpstreamProtocolError,
    UpstreamTimeout,
    origin_of,
)

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]

GUARD = 3.0  # upper bound on any wait for the scripted engine; never reached when the pool behaves


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the pool is built on asyncio protocols


# -- the scripted engine -------------------------------------------------------------------------


class Engine:
    """A TCP server on 127.0.0.1 running ``handler(reader, writer, n)`` for its n-th connection."""

    def __init__(self, handler: Handler, *, rcvbuf: int | None = None) -> None:
        self._handler = handler
        self._rcvbuf = rcvbuf  # a small, fixed receive buffer bounds what the kernel holds for it
        self.accepted = 0
        self.origin: Origin = ("127.0.0.1", 0)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._errors: list[BaseException] = []

    async def __aenter__(self) -> Engine:
        sock = socket.socket()
        if self._rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)  # accepted ones inherit it
        sock.bind(("127.0.0.1", 0))
        self._server = await asyncio.start_server(self._on_connection, sock=sock)
        self.origin = ("127.0.0.1", self._server.sockets[0].getsockname()[1])
        return self

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        try:
            await self._handler(reader, writer, self.accepted)
        except asyncio.CancelledError:
            return  # stopped by __aexit__ (a cancelled handler task makes Python 3.11 log an error)
        except BaseException as exc:  # surfaced by __aexit__: a handler's assert must fail the test
            self._errors.append(exc)
        finally:
            writer.close()

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        await asyncio.sleep(0)  # closed transports release their sockets on the next loop pass
        if exc_type is None and self._errors:
            raise self._errors[0]


@contextlib.asynccontextmanager
async def open_pool(*, read_timeout: float = GUARD, **kwargs: Any) -> AsyncIterator[UpstreamPool]:
    pool = UpstreamPool(connect_timeout=GUARD, read_timeout=read_timeout, **kwargs)
    try:
        yield pool
    finally:
        pool.aclose()
        await asyncio.sleep(0)  # closed transports release their sockets on the next loop pass


async def within(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, GUARD)


def head_for(origin: Origin, length: int | None, path: bytes = b"/v1/chat/completions") -> bytes:
    return request_head(path, origin, {}, length)


async def post(
    pool: UpstreamPool,
    origin: Origin,
    body: bytes = b"{}",
    *,
    replayable: bool = True,
    cancellation: Cancellation | None = None,
) -> Any:
    """Send a POST with a whole body and return the pool's response (status and headers read)."""
    return await pool.request(
        origin,
        head_for(origin, len(body)),
        body,
        chunked=False,
        replayable=replayable,
        cancellation=cancellation,
    )


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            assert await reader.readuntil(b"\r\n") == b"\r\n"  # no trailers
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        assert await reader.readexactly(2) == b"\r\n"


def header_map(head: bytes) -> dict[bytes, bytes]:
    lines = head.split(b"\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines if line)}


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request as the engine sees it: the head (with its blank line) and the decoded body."""
    head = await reader.readuntil(b"\r\n\r\n")
    headers = header_map(head)
    if b"content-length" in headers:
        return head, await reader.readexactly(int(headers[b"content-length"]))
    if headers.get(b"transfer-encoding") == b"chunked":
        return head, await read_chunked(reader)
    return head, b""


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything the client still sends until it closes (a reset counts as closed)."""
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


def answer(body: bytes, *, status: bytes = b"200 OK", headers: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status,
        len(body),
        headers,
        body,
    )


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


async def read_at_least(response: Any, size: int) -> bytes:
    """Body bytes from ``next_chunk()`` until ``size`` arrived (a chunk may come in two reads)."""
    got = b""
    while len(got) < size:
        piece = await within(response.next_chunk())
        assert piece is not None, got
        got += piece
    return got


def echo_engine(log: list[tuple[int, bytes, bytes]]) -> Handler:
    """Answers every request on a connection with ``conn<n>:<body>``; logs (n, head, body)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            try:
                head, body = await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionResetError):
                return  # the pool closed the connection
            log.append((n, head, body))
            writer.write(answer(b"conn%d:%b" % (n, body)))
            await writer.drain()

    return handler


def first_then_echo(first: Handler, log: list[tuple[int, bytes, bytes]] | None = None) -> Handler:
    """Runs ``first`` on the engine's first connection and :func:`echo_engine` on every later one."""
    echo = echo_engine([] if log is None else log)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await (first if n == 1 else echo)(reader, writer, n)

    return handler


# -- keep-alive and body framing -----------------------------------------------------------------


@pytest.mark.anyio
async def test_keep_alive_reuses_one_connection_for_sequential_requests() -> None:
    log: list[tuple[int, bytes, bytes]] = []
    async with Engine(echo_engine(log)) as engine, open_pool() as pool:
        first = await post(pool, engine.origin, b'{"n": 1}')
        assert first.status == 200
        assert first.headers == [(b"content-type", b"text/plain"), (b"content-length", b"14")]
        assert await first.read() == b'conn1:{"n": 1}'
        await first.aclose()
        second = await post(pool, engine.origin, b'{"n": 22}')
        assert await second.read() == b'conn1:{"n": 22}'
        await second.aclose()
        assert engine.accepted == 1
        assert [(n, body) for n, _, body in log] == [(1, b'{"n": 1}'), (1, b'{"n": 22}')]
        assert log[0][1].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")


@pytest.mark.anyio
async def test_answers_without_body_keep_the_connection() -> None:
    statuses = [b"204 No Content", b"200 OK"]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # no content-length: 204 never has a body
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await read_request(reader)
        writer.write(answer(b"third"))
        await read_to_eof(reader)

    async with Engine(handler) as engine, open_pool() as pool:
        for status in statuses:
            response = await post(pool, engine.origin)
            assert response.status == int(status[:3])
            assert await within(response.next_chunk()) is None
            await response.aclose()
        response = await post(pool, engine.origin)
        assert await within(response.read()) == b"third"
        await response.aclose()
        assert engine.accepted == 1


@pytest.mark.anyio
async def test_chunked_answer_is_streamed_piece_by_piece_then_pooled() -> None:
    step = asyncio.Queue[str]()
    log: list[tuple[int, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        _, body = await read_request(reader)
        log.append((n, body))
        writer.write(CHUNKED_HEAD + chunk(b"data: one\n\n"))
        assert await step.get() == "read one"  # the second piece only once the first was read
        writer.write(chunk(b"data: two\n\n"))
        assert await step.get() == "read two"
        writer.write(b"0\r\n\r\n")
        _, body = await read_request(reader)  # the same connection carries the next request
        log.append((n, body))
        writer.write(answer(b"again"))
        await read_to_eof(reader)

    async with Engine(handler) as engine, open_pool() as pool:
        response = await post(pool, engine.origin, b"stream")
        assert response.status == 200
        assert (b"transfer-encoding", b"chunked") in response.headers
        assert await read_at_least(response, 11) == b"data: one\n\n"
        step.put_nowait("read one")
        assert await read_at_least(response, 11) == b"data: two\n\n"
        step.put_nowait("read two")
        assert await within(response.next_chunk()) is None
        assert await within(response.next_chunk()) is None  # the end stays the end
        await response.aclose()

        again = await post(pool, engine.origin, b"next")
        assert await within(again.read()) == b"again"
        await again.aclose()
        assert engine.accepted == 1
        assert log == [(1, b"stream"), (1, b"next")]


@pytest.mark.anyio
async def test_close_delimited_body_is_read_to_the_end_and_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n")
        writer.write(b"first part, ")
        await writer.drain()
        writer.write(b"second part of conn %d" % n)
        await writer.drain()
        writer.close()  # the end of the connection is the end of the body

    async with Engine(handler) as engine, open_pool() as pool:
        response = await post(pool, engine.origin)
        assert response.status == 200
        assert await within(response.read()) == b"first part, second part of conn 1"
        await response.aclose()
        response = await post(pool, engine.origin)
        assert await within(response.read()) == b"first part, second part of conn 2"
        await response.aclose()
        assert engine.accepted == 2


@pytest.mark.anyio
async def test_connection_close_header_keeps_the_connection_out_of_the_pool() -> None:
    eof = asyncio.Event()

    async def first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(answer(b"bye", headers=b"connection: close\r\n"))
        assert await read_to_eof(reader) == b""  # the pool closes it instead of sending more
        eof.set()

    async with Engine(first_then_echo(first)) as engine, open_pool() as pool:
        response = await post(pool, engine.origin)
        assert await within(response.read()) == b"bye"
        await response.aclose()
        await within(eof.wait())
        response = await post(pool, engine.origin, b"x")
        assert await within(response.read()) == b"conn2:x"
        await response.aclose()
        assert engine.accepted == 2


@pytest.mark.anyio
async def test_partly_read_answer_closes_its_connection() -> None:
    eof = asyncio.Event()

    async def first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(CHUNKED_HEAD + chunk(b"partial"))
        await read_to_eof(reader)  # never ends its answer; the pool must drop the connection
        eof.set()

    async with Engine(first_then_echo(first)) as engine, open_pool() as pool:
        response = await post(pool, engine.origin)
        assert await read_at_least(response, 7) == b"partial"
        await response.aclose()
        await response.aclose()  # closing twice is harmless
        await within(eof.wait())
        response = await post(pool, engine.origin, b"x")
        assert await within(response.read()) == b"conn2:x"
        await response.aclose()


@pytest.mark.anyio
async def test_complete_but_unread_answer_closes_its_connection() -> None:
    eof = asyncio.Event()

    async def first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(answer(b"never read"))  # head and whole body in one segment
        assert await read_to_eof(reader) == b""
        eof.set()

    async with Engine(first_then_echo(first)) as engine, open_pool() as pool:
        response = await post(pool, engine.origin)
        assert response.status == 200
        await response.aclose()  # only the head was looked at
        await within(eof.wait())
        response = await post(pool, engine.origin, b"x")
        assert await within(response.read()) == b"conn2:x"
        await response.aclose()
        assert engine.accepted == 2


# -- the stack of idle connections ---------------------------------------------------------------


@pytest.mark.anyio
async def test_idle_connections_are_taken_last_in_first_out_and_bounded() -> None:
    log: list[tuple[int, bytes, bytes]] = []
    closed = asyncio.Queue[int]()
    echo = echo_engine(log)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await echo(reader, writer, n)
        closed.put_nowait(n)

    async with Engine(handler) as engine, open_pool(max_idle_per_origin=2) as pool:
        # three answers open at once need three connections
        responses = [await post(pool, engine.origin, b"%d" % i) for i in (1, 2, 3)]
        assert engine.accepted == 3
        for i, response in enumerate(responses, 1):
            assert await within(response.read()) == b"conn%d:%d" % (i, i)
        for response in responses:  # conn1, then conn2 go back to the pool; conn3 does not fit
            await response.aclose()
        assert await within(closed.get()) == 3
        response = await post(pool, engine.origin, b"a")
        assert await within(response.read()) == b"conn2:a"  # the most recently pooled one
        second = await post(pool, engine.origin, b"b")  # conn2 is busy: the next one down
        assert await within(second.read()) == b"conn1:b"
        await response.aclose()
        await second.aclose()
        assert engine.accepted == 3
        pool.aclose()  # closes every idle connection
        assert {await within(closed.get()), await within(closed.get())} == {1, 2}


@pytest.mark.anyio
async def test_connection_idle_longer_than_keepalive_expiry_is_not_reused() -> None:
    log: list[tuple[int, bytes, bytes]] = []
    closed = asyncio.Queue[int]()
    echo = echo_engine(log)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await echo(reader, writer, n)
        closed.put_nowait(n)

    async with Engine(handler) as engine, open_pool(keepalive_expiry=0.0) as pool:
        for expected in (b"conn1:x", b"conn2:x"):
            response = await post(pool, engine.origin, b"x")
            assert await within(response.read()) == expected
            await response.aclose()
        assert await within(closed.get()) == 1  # the expired connection was closed, not leaked
        assert engine.accepted == 2


# -- engines closing connections -----------------------------------------------------------------


@pytest.mark.anyio
async def test_idle_connection_closed_by_the_engine_is_not_used_again() -> None:
    first_closed = asyncio.Event()

    async def first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(answer(b"first"))
        await writer.drain()
        writer.close()  # the engine's keep-alive timeout, right after its answer
        await writer.wait_closed()
        first_closed.set()

    async with Engine(first_then_echo(first)) as engine, open_pool() as pool:
        response = await post(pool, engine.origin)
        assert await within(response.read()) == b"first"
        await response.aclose()
        await within(first_closed.wait())
        # the pool either noticed the close while idle or retries once on a fresh connection
        response = await post(pool, engine.origin, b"x", replayable=True)
        assert response.status == 200
        assert await within(response.read()) == b"conn2:x"
        await response.aclose()
        assert engine.accepted == 2


def closes_on_second_request(seen: list[tuple[int, bytes]], log: list[tuple[int, bytes, bytes]]) -> Handler:
    """Connection 1 answers one request, reads the next one whole and closes without answering."""

    async def first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        _, body = await read_request(reader)
        seen.append((n, body))
        writer.write(answer(b"first"))
        _, body = await read_request(reader)
        seen.append((n, body))
        # closes here, with the request read in full: a clean close, before any answer

    return first_then_echo(first, log)


@pytest.mark.anyio
async def test_pooled_connection_closed_on_request_is_retried_when_replayable() -> None:
    seen: list[tuple[int, bytes]] = []
    log: list[tuple[int, bytes, bytes]] = []
    async with Engine(closes_on_second_request(seen, log)) as engine, open_pool() as pool:
        response = await post(pool, engine.origin, b"one")
        assert await within(response.read()) == b"first"
        await response.aclose()
        response = await within(post(pool, engine.origin, b"two", replayable=True))
        assert await within(response.read()) == b"conn2:two"
        await response.aclose()
        assert seen == [(1, b"one"), (1, b"two")]  # really sent on the pooled connection first
        assert [(n, body) for n, _, body in log] == [(2, b"two")]  # then once more, on a new one
        assert engine.accepted == 2


@pytest.mark.anyio
async def test_pooled_connection_closed_on_request_raises_when_not_replayable() -> None:
    seen: list[tuple[int, bytes]] = []
    log: list[tuple[int, bytes, bytes]] = []
    async with Engine(closes_on_second_request(seen, log)) as engine, open_pool() as pool:
        response = await post(pool, engine.origin, b"one")
        assert await within(response.read()) == b"first"
        await response.aclose()
        with pytest.raises(UpstreamClosed, match="before an answer"):
            await within(post(pool, engine.origin, b"two", replayable=False))
        assert seen == [(1, b"one"), (1, b"two")]
        assert engine.accepted == 1  # no second try
        response = await post(pool, engine.origin, b"three")  # nothing broken is left in the pool
        assert await within(response.read()) == b"conn2:three"
        await response.aclose()


@pytest.mark.anyio
async def test_engine_closing_a_fresh_connection_before_answering_raises_closed() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        _, body = await read_request(reader)
        seen.append(body)  # then closes without a byte of answer

    async with Engine(handler) as engine, open_pool() as pool:
        with pytest.raises(UpstreamClosed, match="before an answer"):
            await within(post(pool, engine.origin, b"req", replayable=True))
        assert seen == [b"req"]
        assert engine.accepted == 1  # a fresh connection is not retried, replayable or not


@pytest.mark.anyio
async def test_engine_closing_in_the_middle_of_a_body_raises_closed() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n1234")
        await writer.drain()  # and closes: six bytes are missing

    async with Engine(handler) as engine, open_pool() as pool:
        response = await post(pool, engine.origin)
        assert await read_at_least(response, 4) == b"1234"
        with pytest.raises(UpstreamClosed, match="before the answer was complete"):
            await within(response.next_chunk())
        await response.aclose()


@pytest.mark.anyio
async def test_connect_refused_raises_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with open_pool() as pool:
        with pytest.raises(UpstreamConnectError, match=f"could not connect to 127.0.0.1:{port}"):
            await within(post(pool, ("127.0.0.1", port)))


# -- timeouts --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_no_answer_within_read_timeout_raises_timeout_and_closes() -> None:
    received = asyncio.Event()
    after = asyncio.Queue[bytes]()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        received.set()
        after.put_nowait(await read_to_eof(reader))  # never answers

    async with Engine(handler) as engine, open_pool(read_timeout=0.3) as pool:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await within(post(pool, engine.origin))
        elapsed = time.monotonic() - started
        assert received.is_set()
        assert 0.25 <= elapsed < 1.5, elapsed
        assert await within(after.get()) == b""  # the timed-out connection was closed


@pytest.mark.anyio
async def test_silence_between_two_body_chunks_raises_timeout() -> None:
    after = asyncio.Queue[bytes]()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(CHUNKED_HEAD + chunk(b"token"))
        after.put_nowait(await read_to_eof(reader))  # then stalls in the middle of its stream

    async with Engine(handler) as engine, open_pool(read_timeout=0.3) as pool:
        response = await post(pool, engine.origin)
        assert await read_at_least(response, 5) == b"token"
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await within(response.next_chunk())
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 1.5, elapsed
        await response.aclose()
        assert await within(after.get()) == b""  # an unfinished answer's connection is closed


# -- invalid HTTP --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_garbage_answer_raises_protocol_error() -> None:
    after = asyncio.Queue[bytes]()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"NOT HTTP\r\n\r\n")
        after.put_nowait(await read_to_eof(reader))

    async with Engine(handler) as engine, open_pool() as pool:
        with pytest.raises(UpstreamProtocolError, match="invalid HTTP"):
            await within(post(pool, engine.origin))
        assert await within(after.get()) == b""


@pytest.mark.anyio
async def test_unsolicited_bytes_on_an_idle_connection_drop_it() -> None:
    go = asyncio.Event()
    dropped = asyncio.Event()

    async def first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(answer(b"first"))
        await within(go.wait())
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")  # with no request outstanding
        assert await read_to_eof(reader) == b""
        dropped.set()

    async with Engine(first_then_echo(first)) as engine, open_pool() as pool:
        response = await post(pool, engine.origin)
        assert await within(response.read()) == b"first"
        await response.aclose()
        go.set()
        await within(dropped.wait())
        response = await post(pool, engine.origin, b"x", replayable=False)
        assert await within(response.read()) == b"conn2:x"
        await response.aclose()


# -- cancellation --------------------------------------------------------------------------------


class ClientLeft(Exception):
    pass


@pytest.mark.anyio
async def test_cancellation_stops_a_stream_in_progress() -> None:
    after = asyncio.Queue[bytes]()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(CHUNKED_HEAD + chunk(b"token"))
        after.put_nowait(await read_to_eof(reader))

    async with Engine(handler) as engine, open_pool() as pool:
        cancellation = Cancellation()
        response = await post(pool, engine.origin, cancellation=cancellation)
        assert await read_at_least(response, 5) == b"token"
        pending = asyncio.ensure_future(response.next_chunk())
        await asyncio.sleep(0)  # lets the reader start waiting for the engine's next bytes
        assert not pending.done()
        error = ClientLeft("the client went away")
        cancellation.cancel(error)
        cancellation.cancel(ClientLeft("later"))  # the first error stays
        with pytest.raises(ClientLeft) as raised:
            await within(pending)
        assert raised.value is error
        assert cancellation.error is error
        assert await within(after.get()) == b""  # the engine sees its client go away
        with pytest.raises(ClientLeft):
            await within(response.next_chunk())
        await response.aclose()


@pytest.mark.anyio
async def test_cancellation_of_a_close_delimited_answer_is_not_a_clean_end() -> None:
    after = asyncio.Queue[bytes]()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ntoken")
        after.put_nowait(await read_to_eof(reader))

    async with Engine(handler) as engine, open_pool() as pool:
        cancellation = Cancellation()
        response = await post(pool, engine.origin, cancellation=cancellation)
        try:
            assert await read_at_least(response, 5) == b"token"
            cancellation.cancel(ClientLeft("the client went away"))  # between two reads
            assert await within(after.get()) == b""
            with pytest.raises(ClientLeft):
                await within(response.next_chunk())
        finally:
            await response.aclose()


@pytest.mark.anyio
async def test_cancellation_before_the_request_sends_nothing() -> None:
    firsts: list[tuple[int, bytes]] = []
    done = asyncio.Queue[int]()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        try:
            first = await reader.read(1)
        except ConnectionResetError:
            first = b""
        firsts.append((n, first))
        if first:
            _, body = await read_request_rest(first, reader)
            writer.write(answer(b"conn%d:%b" % (n, body)))
            await read_to_eof(reader)
        done.put_nowait(n)

    async with Engine(handler) as engine, open_pool() as pool:
        cancellation = Cancellation()
        error = ClientLeft("left before the engine was asked")
        cancellation.cancel(error)
        with pytest.raises(ClientLeft) as raised:
            await within(post(pool, engine.origin, b"never", cancellation=cancellation))
        assert raised.value is error
        # a request after it; connections are accepted in order, so any earlier one is in by now
        response = await post(pool, engine.origin, b"real")
        served = engine.accepted
        assert await within(response.read()) == b"conn%d:real" % served
        await response.aclose()
        pool.aclose()
        for _ in range(served):
            await within(done.get())
        assert [first for n, first in sorted(firsts) if n != served] in ([], [b""])
        assert served in (1, 2)


async def read_request_rest(first: bytes, reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """``read_request`` for a request whose first byte was already read."""
    head = first + await reader.readuntil(b"\r\n\r\n")
    return head, await reader.readexactly(int(header_map(head)[b"content-length"]))


# -- backpressure --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_two_mebibyte_answer_pauses_reading_and_arrives_intact() -> None:
    payload = random.Random(1).randbytes(2 * 1024 * 1024)
    written = asyncio.Event()
    log: list[tuple[int, bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(answer(payload, headers=b"content-type: application/octet-stream\r\n"))
        written.set()
        await writer.drain()
        await echo_engine(log)(reader, writer, n)  # the connection is still good afterwards

    async with Engine(handler) as engine, open_pool() as pool:
        response = await post(pool, engine.origin)
        await within(written.wait())
        conn = response._conn  # the pool's connection, to see reading pause past the high-water mark
        deadline = time.monotonic() + GUARD
        while not conn._reading_paused:  # the test reads nothing yet: the buffer fills up
            assert time.monotonic() < deadline, "reading never paused"
            await asyncio.sleep(0.001)
        assert conn._buffered > pool_module._HIGH_WATER
        assert await within(response.read()) == payload
        await response.aclose()
        response = await post(pool, engine.origin, b"x")
        assert await within(response.read()) == b"conn1:x"
        await response.aclose()
        assert engine.accepted == 1


@pytest.fixture
def pause_writing_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the transport telling a pool connection to stop writing (its buffer is full)."""
    calls: list[int] = []
    original = pool_module._EngineConnection.pause_writing

    def spy(self: Any) -> None:
        calls.append(1)
        original(self)

    monkeypatch.setattr(pool_module._EngineConnection, "pause_writing", spy)
    return calls


@pytest.mark.anyio
async def test_streamed_request_body_is_pulled_only_as_fast_as_the_engine_reads(
    pause_writing_calls: list[int],
) -> None:
    piece_size, count = 512 * 1024, 32  # 16 MiB: far more than the sockets' buffers can hold
    expected = b"".join(bytes([i]) * piece_size for i in range(count))
    produced: list[int] = []
    start_reading = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        await start_reading.wait()  # leaves the body in the sockets until the test says so
        body = await reader.readexactly(int(header_map(head)[b"content-length"]))
        writer.write(answer(b"%d bytes, equal: %s" % (len(body), str(body == expected).encode())))
        await read_to_eof(reader)

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(count):
            produced.append(i)
            yield bytes([i]) * piece_size

    async with Engine(handler, rcvbuf=64 * 1024) as engine, open_pool() as pool:
        head = head_for(engine.origin, len(expected))
        sending = asyncio.ensure_future(
            pool.request(engine.origin, head, pieces(), chunked=False, replayable=False)
        )
        deadline = time.monotonic() + GUARD
        while not pause_writing_calls:
            assert time.monotonic() < deadline, "writing never paused"
            await asyncio.sleep(0.001)
        settled, steady = len(produced), 0
        while steady < 5:  # until the buffers are full and the pool stopped pulling pieces
            assert time.monotonic() < deadline, "the pool kept pulling pieces"
            await asyncio.sleep(0.005)
            steady = steady + 1 if len(produced) == settled else 0
            settled = len(produced)
        assert settled < count  # held back by the engine, not everything buffered in memory
        assert not sending.done()
        start_reading.set()
        response = await within(sending)
        assert produced == list(range(count))
        assert await within(response.read()) == b"16777216 bytes, equal: True"
        await response.aclose()


@pytest.mark.anyio
async def test_engine_closing_while_the_request_body_is_held_raises_closed(
    pause_writing_calls: list[int],
) -> None:
    payload = b"x" * (16 * 1024 * 1024)
    close_now = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await close_now.wait()  # closes with unread bytes: the pool's side is reset

    async with Engine(handler) as engine, open_pool() as pool:
        sending = asyncio.ensure_future(post(pool, engine.origin, payload))
        deadline = time.monotonic() + GUARD
        while not pause_writing_calls:
            assert time.monotonic() < deadline, "writing never paused"
            await asyncio.sleep(0.001)
        close_now.set()
        with pytest.raises(UpstreamClosed):
            await within(sending)


@pytest.mark.anyio
async def test_cancellation_while_the_request_body_is_held_raises_its_error(
    pause_writing_calls: list[int],
) -> None:
    payload = b"x" * (16 * 1024 * 1024)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.Event().wait()  # never reads the body (stopped when the test ends)

    async with Engine(handler, rcvbuf=64 * 1024) as engine, open_pool() as pool:
        cancellation = Cancellation()
        sending = asyncio.ensure_future(post(pool, engine.origin, payload, cancellation=cancellation))
        deadline = time.monotonic() + GUARD
        while not pause_writing_calls:
            assert time.monotonic() < deadline, "writing never paused"
            await asyncio.sleep(0.001)
        assert not sending.done()
        error = ClientLeft("the client went away")
        cancellation.cancel(error)
        with pytest.raises(ClientLeft) as raised:
            await within(sending)
        assert raised.value is error


# -- streamed request bodies ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_streamed_request_body_is_sent_as_chunks_as_it_comes() -> None:
    first_piece_seen = asyncio.Event()
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert header_map(head)[b"transfer-encoding"] == b"chunked"
        assert b"content-length" not in header_map(head)
        assert await reader.readexactly(10) == b"5\r\nhello\r\n"
        received.append(b"hello")
        first_piece_seen.set()  # before the body's iterator has even produced its second piece
        received.append(await read_chunked(reader))
        writer.write(answer(b"".join(received)))
        await read_to_eof(reader)

    async def pieces() -> AsyncIterator[bytes]:
        yield b"hello"
        await within(first_piece_seen.wait())
        yield b""  # an empty piece must not be sent: it would read as the last chunk
        yield b" world"
        yield b"!" * 300

    async with Engine(handler) as engine, open_pool() as pool:
        response = await within(
            pool.request(
                engine.origin, head_for(engine.origin, None), pieces(), chunked=True, replayable=False
            )
        )
        assert await within(response.read()) == b"hello world" + b"!" * 300
        await response.aclose()
    assert received == [b"hello", b" world" + b"!" * 300]


@pytest.mark.anyio
async def test_streamed_request_body_with_content_length_is_sent_raw() -> None:
    log: list[tuple[int, bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding" not in header_map(head)
        body = await reader.readexactly(int(header_map(head)[b"content-length"]))
        log.append((n, head, body))
        writer.write(answer(b"conn%d:%b" % (n, body)))
        await echo_engine(log)(reader, writer, n)  # the next request starts right after the body

    async def pieces() -> AsyncIterator[bytes]:
        yield b"hello"
        yield b""
        yield b" world"

    async with Engine(handler) as engine, open_pool() as pool:
        head = head_for(engine.origin, 11)
        response = await within(pool.request(engine.origin, head, pieces(), chunked=False, replayable=False))
        assert await within(response.read()) == b"conn1:hello world"
        await response.aclose()
        response = await post(pool, engine.origin, b"next")
        assert await within(response.read()) == b"conn1:next"
        await response.aclose()
        assert [(n, body) for n, _, body in log] == [(1, b"hello world"), (1, b"next")]


@pytest.mark.anyio
async def test_retry_never_replays_a_consumed_body_iterator() -> None:
    seen: list[tuple[int, bytes]] = []
    log: list[tuple[int, bytes, bytes]] = []

    async def pieces() -> AsyncIterator[bytes]:
        yield b"hello"
        yield b" world"

    async with Engine(closes_on_second_request(seen, log)) as engine, open_pool() as pool:
        response = await post(pool, engine.origin, b"one")
        assert await within(response.read()) == b"first"
        await response.aclose()
        head = head_for(engine.origin, None)
        try:
            response = await within(
                pool.request(engine.origin, head, pieces(), chunked=True, replayable=True)
            )
        except UpstreamClosed:
            assert log == []  # refusing to replay is right too
        else:
            await response.aclose()
            assert [body for _, _, body in log] == [b"hello world"]  # what was sent again is whole
        assert seen == [(1, b"one"), (1, b"hello world")]


# -- informational answers -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_interim_1xx_answer_is_skipped() -> None:
    go = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await within(go.wait())
        writer.write(answer(b"final"))
        await read_to_eof(reader)

    async with Engine(handler) as engine, open_pool(read_timeout=0.5) as pool:
        sending = asyncio.ensure_future(post(pool, engine.origin))
        try:
            await asyncio.wait({sending}, timeout=0.2)  # the 100 alone reaches the pool first
            go.set()
            response = await within(sending)
            try:
                assert response.status == 200
                assert await within(response.read()) == b"final"
            finally:
                await response.aclose()
        finally:
            go.set()
            if not sending.done():
                sending.cancel()
            with contextlib.suppress(BaseException):
                await sending


# -- URLs and request heads ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080", (("127.0.0.1", 8080), b"")),
        ("http://127.0.0.1:8080/", (("127.0.0.1", 8080), b"")),
        ("http://engine.local", (("engine.local", 80), b"")),
        ("http://10.0.0.5:9000/proxy/v1/", (("10.0.0.5", 9000), b"/proxy/v1")),
        ("http://host:1/a/b", (("host", 1), b"/a/b")),
        ("http://[::1]:8001/x", (("::1", 8001), b"/x")),
    ],
)
def test_origin_of_splits_origin_and_prefix(url: str, expected: tuple[Origin, bytes]) -> None:
    assert origin_of(url) == expected
    pool = UpstreamPool(connect_timeout=1.0, read_timeout=1.0)
    assert pool.resolve(url) == expected
    assert pool.resolve(url) is pool.resolve(url)  # parsed once per URL


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://engine:8443", "is not an http://host:port URL"),
        ("ftp://engine:21", "is not an http://host:port URL"),
        ("not a url", "is not an http://host:port URL"),
        ("http://:8080/v1", "is not an http://host:port URL"),
        ("", "is not an http://host:port URL"),
        ("http://engine:port", "has an invalid port"),
        ("http://engine:70000", "has an invalid port"),
    ],
)
def test_origin_of_rejects_what_is_not_plain_http(url: str, why: str) -> None:
    with pytest.raises(UpstreamConnectError) as raised:
        origin_of(url)
    assert f"engine URL {url!r} {why}" in str(raised.value)
    with pytest.raises(UpstreamConnectError):
        UpstreamPool(connect_timeout=1.0, read_timeout=1.0).resolve(url)


def parsed_request(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The URL and headers of a request head, as an HTTP server's parser (llhttp) reads them."""

    class Sink:
        def __init__(self) -> None:
            self.url = b""
            self.headers: dict[bytes, bytes] = {}

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers[name.lower()] = value

    sink = Sink()
    parser = httptools.HttpRequestParser(sink)
    parser.feed_data(head)
    assert parser.get_method() == b"POST"
    assert parser.get_http_version() == "1.1"
    return sink.url, sink.headers


def test_request_head_with_content_length() -> None:
    head = request_head(b"/v1/chat/completions", ("127.0.0.1", 8080), {}, 42)
    assert head == (
        b"POST /v1/chat/completions HTTP/1.1\r\n"
        b"host: 127.0.0.1:8080\r\n"
        b"content-type: application/json\r\n"
        b"accept-encoding: identity\r\n"
        b"content-length: 42\r\n\r\n"
    )
    url, headers = parsed_request(head)
    assert url == b"/v1/chat/completions"
    assert headers[b"content-length"] == b"42"
    assert b"transfer-encoding" not in headers


def test_request_head_chunked_ipv6_and_client_headers() -> None:
    client = {b"content-type": b"multipart/form-data; boundary=xyz", b"accept": b"text/event-stream"}
    head = request_head(b"/p/v1/audio/transcriptions", ("::1", 9000), client, None)
    url, headers = parsed_request(head)
    assert url == b"/p/v1/audio/transcriptions"
    assert headers == {
        b"host": b"[::1]:9000",
        b"content-type": b"multipart/form-data; boundary=xyz",
        b"accept-encoding": b"identity",
        b"accept": b"text/event-stream",
        b"transfer-encoding": b"chunked",
    }
    assert head.endswith(b"\r\n\r\n")
    assert b"host: [fd00::5]:80\r\n" in request_head(b"/", ("fd00::5", 80), {}, 0)
    assert b"content-length: 0\r\n" in request_head(b"/", ("fd00::5", 80), {}, 0)


def test_request_head_encodes_a_non_ascii_host_as_idna() -> None:
    head = request_head(b"/", ("bücher.example", 80), {}, 1)
    assert b"host: xn--bcher-kva.example:80\r\n" in head


@pytest.mark.anyio
async def test_engine_that_never_reads_the_request_body_times_out(pause_writing_calls: list[int]) -> None:
    payload = b"x" * (16 * 1024 * 1024)
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await release.wait()  # never reads the body while the test waits

    async with Engine(handler, rcvbuf=64 * 1024) as engine, open_pool(read_timeout=0.3) as pool:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout, match="read none of the request"):
            await within(post(pool, engine.origin, payload))
        assert 0.25 <= time.monotonic() - started < 1.5
        assert pause_writing_calls  # the wait was for the engine to read, not for an answer
        release.set()


@pytest.mark.anyio
async def test_reset_during_a_close_delimited_body_is_an_error_not_an_end() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one")
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()  # linger 0: the peer gets a reset, not an end of stream

    async with Engine(handler) as engine, open_pool() as pool:
        response = await post(pool, engine.origin)
        with pytest.raises(UpstreamClosed, match="before the answer was complete"):
            await within(response.read())
        await response.aclose()
