"""Moving one file's bytes from HTTP into a partial file: pipelined, and in parallel ranges.

Used by :class:`~gpustack_core.models.cache.ModelCache`. What happens to one file:

- Receiving, writing and hashing overlap. Receivers (one per connection) write what they get at
  its offset (``os.pwrite``); a hashing thread follows the *valid prefix* (bytes ``[0, n)``
  known written) and feeds sha256 from the page cache. ``hashlib`` and the system calls release
  the GIL, so the three run on different cores.
- A large file whose size is known is fetched as ranges of :data:`RANGE_BYTES` over up to
  ``connections`` connections (as ``hf_transfer`` does). The first range request doubles as the
  probe: a server that answers ``200`` (no ``Range`` support) is read as one stream instead.
- One ``fsync`` at the end, by the caller.

Resume: the valid prefix is what a later run resumes from. A sequential fetch writes in order,
so the file's size is its prefix. A parallel fetch can leave bytes beyond holes; it records the
prefix in ``<partial>.prefix`` before writing past it, and on failure truncates the file to the
prefix. :func:`resume_point` reads it back (also after a kill, when no truncation happened).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

__all__ = ["RANGE_BYTES", "ShortRead", "fetch_into_partial", "resume_point"]

RANGE_BYTES = 16 << 20
"""Bytes per range request of a parallel fetch."""

_HASH_BLOCK = 8 << 20
_POLL_S = 0.2
#: Bytes per socket read while receiving a body (httpcore's own default is 64 KiB).
READ_BYTES = 1 << 20
#: Attributes from an httpx response's stream down to httpcore's HTTP/1.1 connection (httpx 0.28-0.29,
#: httpcore 1.0: BoundSyncStream -> ResponseStream -> PoolByteStream -> HTTP11ConnectionByteStream).
_STREAM_PATH = ("_stream", "_httpcore_stream", "_stream", "_connection")


class ShortRead(Exception):
    """The body ended before the expected size: resume from what was written."""


def _prefix_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".prefix")


def _write_prefix(partial: Path, value: int) -> None:
    path = _prefix_path(partial)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(str(value))
    os.replace(tmp, path)


def resume_point(partial: Path) -> int:
    """Bytes at the start of ``partial`` known to be valid; truncates anything after them."""
    try:
        size = partial.stat().st_size
    except OSError:
        _prefix_path(partial).unlink(missing_ok=True)
        return 0
    marker = _prefix_path(partial)
    try:
        recorded = int(marker.read_text().strip())
    except (OSError, ValueError):
        return size
    valid = max(min(recorded, size), 0)
    if valid < size:
        os.truncate(partial, valid)
    marker.unlink(missing_ok=True)
    return valid


def write_at(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` of ``fd`` (a seam for tests of a full disk).

    Without ``os.pwrite`` (Windows) it seeks, so each thread writes through its own descriptor.
    """
    view = memoryview(data)
    positional = hasattr(os, "pwrite")
    while view:
        if positional:
            written = os.pwrite(fd, view, offset)
        else:
            os.lseek(fd, offset, os.SEEK_SET)
            written = os.write(fd, view)
        view = view[written:]
        offset += written


def _read_at(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows: the hashing thread's own descriptor
    return os.read(fd, size)


def _open(partial: Path, flags: int) -> int:
    return os.open(partial, flags | getattr(os, "O_BINARY", 0), 0o644)


class _PrefixHasher:
    """sha256 of ``[0, prefix)`` of a file, computed in a thread that follows the prefix."""

    def __init__(self, partial: Path, start: int) -> None:
        import hashlib  # on use: OpenSSL's loading is not paid by plugins that only import this module

        self._fd = _open(partial, os.O_RDONLY)
        self._hasher = hashlib.sha256()
        self._hashed = 0
        self._target = start
        self._closed = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="gpustack-sha256", daemon=True)
        self._thread.start()

    def advance(self, prefix: int) -> None:
        with self._cond:
            if prefix > self._target:
                self._target = prefix
                self._cond.notify()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while self._hashed >= self._target and not self._closed:
                        self._cond.wait()
                    target = self._target
                    if self._hashed >= target:
                        return
                block = _read_at(self._fd, min(_HASH_BLOCK, target - self._hashed), self._hashed)
                if not block:
                    raise OSError(f"file shorter than its prefix at byte {self._hashed}")
                self._hasher.update(block)
                self._hashed += len(block)
        except BaseException as exc:  # reported by finish()
            self._error = exc

    def finish(self) -> str:
        """Hash up to the last prefix given, stop the thread, return the hex digest."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        self._close()
        if self._error is not None:
            raise self._error
        return str(self._hasher.hexdigest())

    def abandon(self) -> None:
        """Stop without hashing further (the fetch failed)."""
        with self._cond:
            self._target = self._hashed
            self._closed = True
            self._cond.notify()
        self._thread.join()
        self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _Progress:
    """Counters shared by the receivers (bytes received, and the valid prefix)."""

    def __init__(self, start: int, size: int | None) -> None:
        self.lock = threading.Lock()
        self.start = start
        self.size = size
        self.received = 0
        self.stop = threading.Event()


def fetch_into_partial(
    client: httpx.Client,
    url: str,
    partial: Path,
    *,
    have: int,
    size: int | None,
    connections: int,
    check: Callable[[httpx.Response, str], None],
    progress: Callable[[int], None],
    transferred: list[int],
    range_bytes: int = RANGE_BYTES,
) -> str:
    """Fill ``partial`` from byte ``have`` to the end of ``url``; returns the sha256 of the file.

    ``transferred[0]`` counts bytes received; ``progress(valid bytes)`` is called from this thread
    every 0.2 s or so. The caller fsyncs and verifies. Raises :class:`ShortRead` (resumable),
    ``httpx.TransportError``, ``OSError`` from writing, or what ``check`` raises for an HTTP error.
    """
    fd = _open(partial, os.O_RDWR | os.O_CREAT)
    hasher = _PrefixHasher(partial, have)
    finished = False
    try:
        remaining = None if size is None else size - have
        headers = {"Range": f"bytes={have}-"} if have else {}
        parallel = connections > 1 and remaining is not None and remaining > 2 * range_bytes
        if parallel:
            first_end = have + range_bytes - 1
            headers = {"Range": f"bytes={have}-{first_end}"}
        stream = client.stream("GET", url, headers=headers)
        response = stream.__enter__()
        try:
            if response.status_code == 416:
                os.ftruncate(fd, 0)
                raise _RangeRefused("server refused the resume range; restarting the file")
            check(response, url)
        except BaseException:
            stream.__exit__(None, None, None)
            raise
        ranged = response.status_code == 206
        if not ranged and have:
            os.ftruncate(fd, 0)
            hasher.abandon()
            hasher = _PrefixHasher(partial, 0)
            have = 0
        if parallel and ranged:
            assert size is not None
            digest = _parallel(
                _Job(client, url, partial, fd, hasher, check, progress, transferred),
                (stream, response),
                have,
                size,
                connections,
                range_bytes,
            )
        else:
            digest = _sequential(fd, hasher, stream, response, have, size, progress, transferred)
        finished = True
        return digest
    finally:
        if not finished:
            hasher.abandon()
        os.close(fd)


class _RangeRefused(ShortRead):
    """HTTP 416 on a resume: the partial file is dropped and the fetch starts over."""


def widen_reads(response: httpx.Response, read_bytes: int = READ_BYTES) -> bool:
    """Make the HTTP/1.1 connection under ``response`` read up to ``read_bytes`` per socket read.

    httpcore reads a body in 64 KiB pieces (``HTTP11Connection.READ_NUM_BYTES``), each through
    h11's event machinery: on a loaded two-core machine that per-read Python work, not the
    network, limits a download. The value is set on this one connection object (the class and
    other connections keep theirs); it only changes how many bytes one ``recv`` may return, so the
    response is parsed exactly as before. Returns ``False``, changing nothing, where the stream is
    not the one expected (another transport, HTTP/2, other httpx or httpcore versions).
    """
    target: Any = response.stream
    for attribute in _STREAM_PATH:
        target = getattr(target, attribute, None)
        if target is None:
            return False
    current = getattr(type(target), "READ_NUM_BYTES", None)
    if not isinstance(current, int):
        return False
    if read_bytes > current:
        target.READ_NUM_BYTES = read_bytes  # on this instance only
    return True


def _receive(
    response: httpx.Response,
    fd: int,
    offset: int,
    limit: int | None,
    state: _Progress,
    on_bytes: Callable[[int], None],
    transferred: list[int],
) -> int:
    """Write the body at ``offset``; returns bytes written. Stops early when ``state.stop`` is set."""
    widen_reads(response)
    written = 0
    for chunk in response.iter_raw():
        if state.stop.is_set():
            break
        if limit is not None and written + len(chunk) > limit:
            chunk = chunk[: limit - written]
        write_at(fd, chunk, offset + written)
        written += len(chunk)
        with state.lock:
            transferred[0] += len(chunk)
        on_bytes(written)
        if limit is not None and written >= limit:
            break
    return written


def _sequential(
    fd: int,
    hasher: _PrefixHasher,
    stream: AbstractContextManager[httpx.Response],
    response: httpx.Response,
    have: int,
    size: int | None,
    progress: Callable[[int], None],
    transferred: list[int],
) -> str:
    state = _Progress(have, size)
    prefix = [have]

    told = [have]

    def on_bytes(written: int) -> None:
        prefix[0] = have + written
        if prefix[0] - told[0] >= _HASH_BLOCK:  # wake the hasher per block, not per read
            told[0] = prefix[0]
            hasher.advance(prefix[0])
        progress(prefix[0])  # throttled by the caller

    with _exiting(stream):
        os.ftruncate(fd, have)
        _receive(response, fd, have, None, state, on_bytes, transferred)
    if size is not None and prefix[0] < size:
        raise ShortRead(f"connection closed at byte {prefix[0]} of {size}")
    hasher.advance(prefix[0])
    return hasher.finish()


class _exiting:
    def __init__(self, stream: AbstractContextManager[Any]) -> None:
        self.stream = stream

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.stream.__exit__(None, None, None)


@dataclass
class _Job:
    client: httpx.Client
    url: str
    partial: Path
    fd: int
    hasher: _PrefixHasher
    check: Callable[[httpx.Response, str], None]
    progress: Callable[[int], None]
    transferred: list[int]


def _parallel(
    job: _Job,
    first: tuple[AbstractContextManager[httpx.Response], httpx.Response],
    have: int,
    size: int,
    connections: int,
    range_bytes: int,
) -> str:
    """Ranges of ``range_bytes`` from ``have`` to ``size``, ``connections`` at a time."""
    client, url, partial, fd, hasher = job.client, job.url, job.partial, job.fd, job.hasher
    check, progress, transferred = job.check, job.progress, job.transferred
    starts = list(range(have, size, range_bytes))
    done = [0] * len(starts)  # bytes written per range
    state = _Progress(have, size)
    _write_prefix(partial, have)
    os.ftruncate(fd, size)
    recorded = [have]

    def length(index: int) -> int:
        return min(range_bytes, size - starts[index])

    def valid_prefix() -> int:
        total = have
        for index, written in enumerate(done):
            total += written
            if written < length(index):
                break
        return total

    def run(index: int, opened: tuple[AbstractContextManager[httpx.Response], httpx.Response] | None) -> None:
        if state.stop.is_set():
            if opened is not None:
                opened[0].__exit__(None, None, None)
            return
        start, span = starts[index], length(index)
        stream: AbstractContextManager[httpx.Response]
        if opened is None:
            stream = client.stream("GET", url, headers={"Range": f"bytes={start}-{start + span - 1}"})
            response = stream.__enter__()
        else:
            stream, response = opened
        with _exiting(stream):
            check(response, url)
            if response.status_code != 206:
                raise ShortRead(f"server stopped honouring Range at byte {start}; resuming sequentially")

            def on_bytes(written: int) -> None:
                done[index] = written

            own = _open(partial, os.O_WRONLY)  # a descriptor per thread: no shared file position
            try:
                written = _receive(response, own, start, span, state, on_bytes, transferred)
            finally:
                os.close(own)
        if written < span and not state.stop.is_set():
            raise ShortRead(f"connection closed at byte {start + written} of {size}")

    from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait  # on use, as hashlib

    pool = ThreadPoolExecutor(max_workers=min(connections, len(starts)), thread_name_prefix="gpustack-range")
    futures: list[Future[None]] = []
    try:
        futures.append(pool.submit(run, 0, first))
        futures.extend(pool.submit(run, index, None) for index in range(1, len(starts)))
        pending: set[Future[None]] = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=_POLL_S, return_when=FIRST_EXCEPTION)
            prefix = valid_prefix()
            hasher.advance(prefix)
            if prefix - recorded[0] >= range_bytes:
                _write_prefix(partial, prefix)
                recorded[0] = prefix
            progress(prefix)
            if any(f.exception() is not None for f in finished):
                break
    finally:
        state.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    import httpx

    errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
    if errors:
        prefix = valid_prefix()
        os.ftruncate(fd, prefix)
        _prefix_path(partial).unlink(missing_ok=True)
        # an HTTP or disk error says more than the short reads of the connections stopped after it
        errors.sort(key=lambda e: isinstance(e, ShortRead | httpx.TransportError))
        error = errors[0]
        assert error is not None
        raise error
    prefix = valid_prefix()
    if prefix < size:
        os.ftruncate(fd, prefix)
        _prefix_path(partial).unlink(missing_ok=True)
        raise ShortRead(f"connection closed at byte {prefix} of {size}")
    hasher.advance(size)
    digest = hasher.finish()
    _prefix_path(partial).unlink(missing_ok=True)
    return digest
