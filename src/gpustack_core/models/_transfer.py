"""Moving one file's bytes from HTTP into a partial file: pipelined, and in parallel ranges.

Used by :class:`~gpustack_core.models.cache.ModelCache`. What happens to one file:

- Receiving, writing and hashing overlap. Receivers (one per connection) write what they get at
  its offset (``os.pwrite``); a hashing thread follows the *valid prefix* (bytes ``[0, n)``
  known written), woken by the receivers every 8 MiB of it, and feeds sha256 from the page cache.
  ``hashlib`` and the system calls release the GIL, so the three run on different cores.
- A large file whose size is known starts as one open-ended range request (``bytes=have-``), the
  *lead*. After :data:`RANGE_BYTES` (or :data:`SAMPLE_S`) of it, a split policy looks at what the
  lead measured (:class:`StreamSample`); the default, :func:`network_bound`, splits when the
  lead's thread spent most of that time waiting rather than on a CPU. Then the lead stops at the
  next range boundary and the rest comes as ranges of :data:`RANGE_BYTES` over up to
  ``connections`` connections (as ``hf_transfer`` does): more connections fill a network that one
  connection leaves idle, while a receiver that is busy itself (loopback, a LAN, a slow CPU) would
  only contend with more of its kind for the same cores. A server that answers the lead with
  ``200`` (no ``Range`` support) is read as one stream.
- One ``fsync`` at the end, while the hasher hashes what it has not caught up with yet.

Resume: the valid prefix is what a later run resumes from. A single stream writes in order, so
the file's size is its prefix. Once split, a fetch can leave bytes beyond holes; it records the
prefix in ``<partial>.prefix`` before writing past it, and on failure truncates the file to the
prefix. :func:`resume_point` reads it back (also after a kill, when no truncation happened).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

__all__ = [
    "RANGE_BYTES",
    "SAMPLE_S",
    "ShortRead",
    "StreamSample",
    "fetch_into_partial",
    "network_bound",
    "resume_point",
]

RANGE_BYTES = 16 << 20
"""Bytes per range request of a split fetch (and what the lead receives before the split decision)."""
SAMPLE_S = 0.5
"""Seconds of the lead after which the split decision is taken even short of :data:`RANGE_BYTES`."""
BUSY_FRACTION = 0.5
""":func:`network_bound`: the share of the sample the lead's thread may run or queue for a CPU."""

_log = logging.getLogger(__name__)
_HASH_BLOCK = 8 << 20
#: Bodies of at least this many reads are read from the socket directly (:func:`_receive`).
_RAW_MIN_READS = 4
#: Buffer of a direct socket read and of the hasher's read-back, reused: bytes copied into it are
#: written (or hashed) while still in the CPU cache. 256 KiB used the least CPU of 64 KiB, 256 KiB
#: and 1 MiB (64 KiB: four times the GIL hand-offs between receiver and hasher).
_CACHE_BYTES = 256 << 10
_POLL_S = 0.2
#: Bytes per socket read where a body goes through h11 (httpcore's own default is 64 KiB); also
#: how often a receiver reports progress.
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


def _read_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``offset`` of ``fd`` as far as the file goes; returns the bytes read."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    if hasattr(os, "pread"):
        data = os.pread(fd, len(view), offset)
    else:
        os.lseek(fd, offset, os.SEEK_SET)  # Windows: the hashing thread's own descriptor
        data = os.read(fd, len(view))
    view[: len(data)] = data
    return len(data)


def _open(partial: Path, flags: int) -> int:
    return os.open(partial, flags | getattr(os, "O_BINARY", 0), 0o644)


_SYNC_FILE_RANGE_WRITE = 2


def _writeback_starter() -> Callable[[int, int, int, int], int] | None:
    """Linux's ``sync_file_range`` (not in :mod:`os`), or ``None`` elsewhere.

    The hasher starts writeback of what it has hashed, so the final ``fsync`` waits for the last
    blocks only, not the whole file (the kernel would otherwise hold a 256 MiB file dirty in
    memory until then). It only starts writing: the pages stay cached, nothing waits.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


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
        view = memoryview(bytearray(_CACHE_BYTES))  # one buffer, that stays in the CPU cache
        writeback = _writeback_starter()
        flushed = self._hashed
        try:
            while True:
                with self._cond:
                    while self._hashed >= self._target and not self._closed:
                        self._cond.wait()
                    target = self._target
                    if self._hashed >= target:
                        return
                got = _read_into(self._fd, view[: min(len(view), target - self._hashed)], self._hashed)
                if not got:
                    raise OSError(f"file shorter than its prefix at byte {self._hashed}")
                self._hasher.update(view[:got])
                self._hashed += got
                if writeback is not None and self._hashed - flushed >= _HASH_BLOCK:
                    writeback(self._fd, flushed, self._hashed - flushed, _SYNC_FILE_RANGE_WRITE)
                    flushed = self._hashed
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


@dataclass(frozen=True)
class StreamSample:
    """What the lead connection of a fetch measured before the split decision."""

    received_bytes: int
    """Body bytes received (and written) in the sample."""
    wall_s: float
    """Seconds from the response's headers to the end of the sample."""
    cpu_s: float
    """CPU seconds of the receiving thread in the same span (parsing, copying, writing)."""
    runnable_s: float = 0.0
    """Seconds the thread was ready to run but waited for a CPU (Linux ``schedstat``; 0 elsewhere)."""

    @property
    def waiting_s(self) -> float:
        """Seconds the thread neither ran nor waited for a CPU: it waited on the network (or disk)."""
        return max(self.wall_s - self.cpu_s - self.runnable_s, 0.0)


def network_bound(sample: StreamSample) -> bool:
    """The default split policy: split when the lead's thread waited on the network most of the time.

    Such a connection leaves the network idle, and more connections fill it (a remote hub limits
    each connection). A thread that ran, or queued for a CPU, for half the sample or more is the
    limit itself: on loopback or a LAN, or on a loaded machine, more receivers only contend for the
    same cores and the GIL (``docs/benchmarks/downloads.md``). Time queued for a CPU counts as busy,
    so a loaded machine is not mistaken for a slow network.
    """
    return sample.waiting_s > (1 - BUSY_FRACTION) * sample.wall_s


def _thread_times() -> tuple[float, float]:
    """This thread's CPU seconds and seconds queued for a CPU (Linux ``schedstat``; else 0)."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as handle:
            ran, queued = handle.read().split()[:2]
        return int(ran) / 1e9, int(queued) / 1e9
    except (OSError, ValueError):
        return time.thread_time(), 0.0


class _Progress:
    """State shared by the receivers: bytes received, and a stop flag."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
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
    split: Callable[[StreamSample], bool] = network_bound,
) -> str:
    """Fill ``partial`` from byte ``have`` to the end of ``url``; returns the sha256 of the file.

    ``transferred[0]`` counts bytes received; ``progress(valid bytes)`` is called from this thread
    (throttling is the caller's). ``split`` decides, from the lead's sample, whether a file larger
    than two ranges goes on over ``connections`` connections. The file is fsynced once, at the end
    (while the hash catches up); the caller verifies.
    Raises :class:`ShortRead` (resumable), ``httpx.TransportError``, ``OSError`` from writing, or
    what ``check`` raises for an HTTP error.
    """
    fd = _open(partial, os.O_RDWR | os.O_CREAT)
    hasher = _PrefixHasher(partial, have)
    finished = False
    try:
        eligible = connections > 1 and size is not None and size - have > 2 * range_bytes
        # an eligible fetch asks for a range even from 0: a 206 says later ranges will work
        headers = {"Range": f"bytes={have}-"} if have or eligible else {}
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
        job = _Job(client, url, partial, fd, hasher, check, progress, transferred, range_bytes)
        fetch = _Fetch(job, have, size, connections if eligible and ranged else 1, split)
        digest = fetch.run(stream, response)
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


class _Limit:
    """How many bytes a receiver takes (None: to the end); the lead's is set when the fetch splits."""

    def __init__(self, value: int | None) -> None:
        self.value = value


def _body_socket(response: httpx.Response, read_bytes: int) -> tuple[socket.socket, int] | None:
    """The socket under an HTTP/1.1 ``response`` whose body may be read from it directly, and the
    body's length; ``None`` where it must go through h11 (see :func:`_receive`)."""
    if response.http_version != "HTTP/1.1" or "transfer-encoding" in response.headers:
        return None
    try:
        length = int(response.headers.get("content-length", ""))
    except ValueError:
        return None
    if length < _RAW_MIN_READS * read_bytes:
        return None  # a small body: h11 reads it, and the connection goes back to the pool
    try:
        from httpcore._backends.sync import SyncStream
    except ImportError:  # another httpcore layout: h11 reads everything
        return None
    stream = response.extensions.get("network_stream")
    if type(stream) is not SyncStream:  # exactly httpcore's own (not TLS in TLS, not a mock)
        return None
    sock = stream.get_extra_info("socket")
    return (sock, length) if isinstance(sock, socket.socket) else None


def _receive(
    response: httpx.Response,
    fd: int,
    offset: int,
    limit: _Limit,
    state: _Progress,
    on_bytes: Callable[[int], None],
    transferred: list[int],
    read_bytes: int,
) -> int:
    """Write the body at ``offset``; returns bytes written. Stops early when ``state.stop`` is set.

    A large body of a plain HTTP/1.1 connection (Content-Length, no chunked encoding) is read
    through h11 only up to its first piece, which empties h11's buffer; the rest comes straight
    from the socket (``recv_into`` one reused buffer, then ``pwrite``), as curl reads: h11 would
    copy each byte three more times (its receive buffer, a slice, ``bytes``) and allocate as many
    1 MiB objects. The connection is then closed instead of reused (h11 never saw the body end).
    Other responses (TLS in TLS, HTTP/2, mocks, small bodies) go through h11 with
    :func:`widen_reads`.
    """
    widen_reads(response, read_bytes)
    raw = _body_socket(response, read_bytes)
    written = 0
    transfer_lock = state.lock

    def _report(now: int, before: int) -> int:
        if now > before:
            with transfer_lock:
                transferred[0] += now - before
            on_bytes(now)
        return now

    def put(data: bytes | memoryview) -> bool:
        """Write ``data`` (cut to the limit); ``False`` once the limit is reached."""
        nonlocal written
        cap = limit.value
        if cap is not None and written + len(data) > cap:
            data = data[: cap - written]
        write_at(fd, data, offset + written)
        written = _report(written + len(data), written)
        cap = limit.value
        return cap is None or written < cap

    chunks = response.iter_raw()  # held until the end: closing it would close the connection
    for chunk in chunks:
        if state.stop.is_set() or not put(chunk):
            return written
        if raw is not None:
            break
    else:
        return written
    sock, length = raw
    view = memoryview(bytearray(min(_CACHE_BYTES, read_bytes)))
    reported = written  # bytes told to on_bytes and transferred (per read_bytes, not per recv)
    try:
        while written < length and not state.stop.is_set():
            cap = limit.value
            want = min(len(view), length - written, len(view) if cap is None else cap - written)
            filled = 0
            while filled < want:
                got = _recv_into(sock, view[filled:want])
                if not got:
                    break
                filled += got
            if not filled:
                break
            write_at(fd, view[:filled], offset + written)
            written += filled
            if written - reported >= read_bytes or filled < want:
                reported = _report(written, reported)
            if filled < want or (cap is not None and written >= cap):
                break
    finally:
        _report(written, reported)
    return written


def _recv_into(sock: socket.socket, view: memoryview) -> int:
    import httpx

    try:
        return sock.recv_into(view)
    except TimeoutError as exc:  # the socket keeps the read timeout httpcore set
        raise httpx.ReadTimeout(str(exc) or "timed out reading the body") from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc)) from exc


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
    range_bytes: int


class _Ranges:
    """The ranges ``[starts[i], starts[i + 1])`` of a split fetch, what each has written, and the
    valid prefix (every range before ``frontier`` complete), which wakes the hasher as it grows."""

    def __init__(self, starts: list[int], size: int, hasher: _PrefixHasher) -> None:
        self.starts = starts
        self.ends = [*starts[1:], size]
        self.done = [0] * len(starts)
        self.frontier = 0
        self.size = size
        self._hasher = hasher
        self._told = starts[0]
        self._lock = threading.Lock()

    def prefix(self) -> int:
        """Bytes known written from the file's start (a lower bound while receivers run)."""
        frontier = self.frontier
        if frontier >= len(self.starts):
            return self.size
        return self.starts[frontier] + self.done[frontier]

    def wrote(self, index: int, written: int) -> None:
        """Range ``index`` has ``written`` bytes in the file (called by its receiver)."""
        self.done[index] = written
        complete = self.starts[index] + written >= self.ends[index]
        if not complete and (
            index != self.frontier or self.starts[index] + written - self._told < _HASH_BLOCK
        ):
            return
        with self._lock:
            frontier = self.frontier
            while (
                frontier < len(self.starts)
                and self.starts[frontier] + self.done[frontier] >= self.ends[frontier]
            ):
                frontier += 1
            self.frontier = frontier
            prefix = self.prefix()
            if prefix > self._told:
                self._told = prefix
                self._hasher.advance(prefix)


class _Fetch:
    """One fetch after its first response: the lead stream, and the ranges if it splits."""

    def __init__(
        self, job: _Job, have: int, size: int | None, connections: int, split: Callable[[StreamSample], bool]
    ) -> None:
        self.job = job
        self.have = have
        self.size = size
        self.connections = connections
        self.split = split
        self.state = _Progress()
        self.ranges: _Ranges | None = None
        self.lead_limit = _Limit(None)
        self._told = have
        self._decided = connections <= 1
        self._started = (0.0, 0.0, 0.0)
        self._permits = threading.Semaphore(max(connections, 1))
        self._pool: Any = None
        self._futures: list[Any] = []

    # -- the lead -----------------------------------------------------------------------------
    def run(self, stream: AbstractContextManager[httpx.Response], response: httpx.Response) -> str:
        job, have = self.job, self.have
        self._started = (time.perf_counter(), *_thread_times())
        lead_error: BaseException | None = None
        written = 0
        try:
            with _exiting(stream):
                os.ftruncate(job.fd, have)
                written = _receive(
                    response,
                    job.fd,
                    have,
                    self.lead_limit,
                    self.state,
                    self._lead_wrote,
                    job.transferred,
                    min(READ_BYTES, job.range_bytes),  # a read never spans more than a range
                )
        except BaseException as exc:
            if self.ranges is None:
                raise
            lead_error = exc
        finally:
            if self.ranges is not None:
                self._permits.release()
        if self.ranges is None:
            position = have + written
            if self.size is not None and position < self.size:
                raise ShortRead(f"connection closed at byte {position} of {self.size}")
            job.hasher.advance(position)
            os.fsync(job.fd)  # while the hasher catches up: the disk and a CPU at once
            return job.hasher.finish()
        limit = self.lead_limit.value
        if lead_error is None and limit is not None and written < limit and not self.state.stop.is_set():
            lead_error = ShortRead(f"connection closed at byte {have + written} of {self.size}")
        return self._finish_split(lead_error)

    def _lead_wrote(self, written: int) -> None:
        position = self.have + written
        if self.ranges is not None:
            self.ranges.wrote(0, written)
            self.job.progress(self.ranges.prefix())
            return
        if position - self._told >= _HASH_BLOCK:  # wake the hasher per block, not per read
            self._told = position
            self.job.hasher.advance(position)
        self.job.progress(position)
        if self._decided:
            return
        wall = time.perf_counter() - self._started[0]
        if written < self.job.range_bytes and wall < SAMPLE_S:
            return
        self._decided = True
        cpu, runnable = _thread_times()
        sample = StreamSample(written, wall, cpu - self._started[1], runnable - self._started[2])
        assert self.size is not None  # connections > 1 only with a known size
        lead_end = self.have + (written // self.job.range_bytes + 1) * self.job.range_bytes
        if lead_end >= self.size:
            return
        split = self.split(sample)
        _log.debug(
            "%s: first connection %d bytes in %.3f s (cpu %.3f s, queued %.3f s): %s",
            self.job.url,
            written,
            wall,
            sample.cpu_s,
            sample.runnable_s,
            f"split into ranges from byte {lead_end}" if split else "kept whole",
        )
        if split:
            self._start_ranges(written, lead_end)

    # -- the split ----------------------------------------------------------------------------
    def _start_ranges(self, written: int, lead_end: int) -> None:
        job, size = self.job, self.size
        assert size is not None
        _write_prefix(job.partial, self.have + written)  # before anything is written past it
        os.ftruncate(job.fd, size)
        ranges = _Ranges([self.have, *range(lead_end, size, job.range_bytes)], size, job.hasher)
        ranges.done[0] = written
        self._permits.acquire()  # the lead's connection
        from concurrent.futures import ThreadPoolExecutor  # on use, as hashlib

        self._pool = ThreadPoolExecutor(
            max_workers=min(self.connections, len(ranges.starts) - 1), thread_name_prefix="gpustack-range"
        )
        self.lead_limit.value = lead_end - self.have
        self.ranges = ranges
        self._futures = [self._pool.submit(self._range, index) for index in range(1, len(ranges.starts))]

    def _range(self, index: int) -> None:
        with self._permits:
            try:
                self._receive_range(index)
            except BaseException:
                self.state.stop.set()  # the lead and the other ranges stop too
                raise

    def _receive_range(self, index: int) -> None:
        if self.state.stop.is_set():
            return
        job, ranges = self.job, self.ranges
        assert ranges is not None
        start, span = ranges.starts[index], ranges.ends[index] - ranges.starts[index]
        with job.client.stream(
            "GET", job.url, headers={"Range": f"bytes={start}-{start + span - 1}"}
        ) as response:
            job.check(response, job.url)
            if response.status_code != 206:
                raise ShortRead(f"server stopped honouring Range at byte {start}; resuming sequentially")
            own = _open(job.partial, os.O_WRONLY)  # a descriptor per thread: no shared file position
            try:
                written = _receive(
                    response,
                    own,
                    start,
                    _Limit(span),
                    self.state,
                    lambda n: ranges.wrote(index, n),
                    job.transferred,
                    min(READ_BYTES, job.range_bytes),
                )
            finally:
                os.close(own)
        if written < span and not self.state.stop.is_set():
            raise ShortRead(f"connection closed at byte {start + written} of {ranges.size}")

    def _finish_split(self, lead_error: BaseException | None) -> str:
        from concurrent.futures import FIRST_EXCEPTION, wait

        import httpx

        job, ranges, size = self.job, self.ranges, self.size
        assert ranges is not None
        assert size is not None
        recorded = self.have
        try:
            if lead_error is not None:
                self.state.stop.set()
            pending = set(self._futures)
            while pending and not self.state.stop.is_set():
                finished, pending = wait(pending, timeout=_POLL_S, return_when=FIRST_EXCEPTION)
                prefix = ranges.prefix()
                if prefix - recorded >= job.range_bytes:
                    _write_prefix(job.partial, prefix)
                    recorded = prefix
                job.progress(prefix)
                if any(f.exception() is not None for f in finished):
                    break
        finally:
            self.state.stop.set()
            self._pool.shutdown(wait=True, cancel_futures=True)
        errors = [lead_error] if lead_error is not None else []
        errors += [f.exception() for f in self._futures if f.done() and not f.cancelled() and f.exception()]
        prefix = ranges.prefix()
        if errors or prefix < size:
            os.ftruncate(job.fd, prefix)
            _prefix_path(job.partial).unlink(missing_ok=True)
        if errors:
            # an HTTP or disk error says more than the short reads of the connections stopped after it
            errors.sort(key=lambda e: isinstance(e, ShortRead | httpx.TransportError))
            raise errors[0]
        if prefix < size:
            raise ShortRead(f"connection closed at byte {prefix} of {size}")
        job.hasher.advance(size)
        os.fsync(job.fd)  # while the hasher catches up
        digest = job.hasher.finish()
        _prefix_path(job.partial).unlink(missing_ok=True)
        return digest
