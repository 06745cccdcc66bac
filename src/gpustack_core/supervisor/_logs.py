"""Size-rotated log files: the writer used by the log pump, and reading a log's tail."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import anyio

__all__ = ["RotatingLogWriter", "follow_log", "log_tail", "log_tail_lines", "rotated_paths"]

#: Bytes read per step when scanning a log backwards for line breaks or forwards while following.
_CHUNK = 64 * 1024


def rotated_paths(path: Path, keep: int) -> list[Path]:
    """``path`` then its rotated copies ``path.1`` .. ``path.<keep>``, newest first."""
    return [path] + [path.with_name(f"{path.name}.{n}") for n in range(1, keep + 1)]


class RotatingLogWriter:
    """Appends bytes to ``path``; when it would pass ``max_bytes`` it is renamed to ``path.1``.

    Older copies shift up (``path.1`` -> ``path.2`` ...) and at most ``keep`` of them are kept.

    Parameters:
        path: the live log file (created with its parent directories).
        max_bytes: size at which the file is rotated; at least 1.
        keep: rotated copies to keep; 0 truncates instead.
    """

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        if max_bytes < 1 or keep < 0:
            raise ValueError(f"max_bytes must be >= 1 and keep >= 0, got {max_bytes} and {keep}")
        self._path = path
        self._max_bytes = max_bytes
        self._keep = keep
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = path.open("ab")
        self._size = self._file.tell()

    def write(self, data: bytes) -> None:
        """Append ``data``, rotating first if the file would grow past ``max_bytes``."""
        if self._size > 0 and self._size + len(data) > self._max_bytes:
            self._rotate()
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def _rotate(self) -> None:
        self._file.close()
        paths = rotated_paths(self._path, self._keep)
        if self._keep == 0:
            self._file = self._path.open("wb")
            self._size = 0
            return
        paths[-1].unlink(missing_ok=True)
        for newer, older in zip(reversed(paths[:-1]), reversed(paths[1:]), strict=False):
            if newer.exists():
                os.replace(newer, older)
        self._file = self._path.open("ab")
        self._size = 0

    def close(self) -> None:
        """Close the live file."""
        self._file.close()


def log_tail(path: Path, max_bytes: int = 4000) -> str:
    """The last ``max_bytes`` of a log (reaching into ``path.1`` when the live file is short)."""
    chunks: list[bytes] = []
    wanted = max_bytes
    for candidate in (path, path.with_name(f"{path.name}.1")):
        if wanted <= 0:
            break
        try:
            with candidate.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - wanted))
                data = handle.read()
        except OSError:
            continue
        chunks.insert(0, data)
        wanted -= len(data)
    return b"".join(chunks).decode("utf-8", errors="replace")


def log_tail_lines(path: Path, lines: int, end: int | None = None) -> bytes:
    """The last ``lines`` lines of a log, reaching into ``path.1`` when the live file holds fewer.

    A final line without a line break counts as a line. ``lines <= 0`` gives ``b""``. ``end``
    reads the live file only up to that offset (a size taken earlier, so that following the log
    from ``end`` repeats nothing).
    """
    if lines <= 0:
        return b""
    parts: list[bytes] = []
    found = 0
    for candidate, limit in ((path, end), (path.with_name(f"{path.name}.1"), None)):
        try:
            with candidate.open("rb") as handle:
                data, found = _last_lines(handle, lines, found, limit)
        except OSError:
            continue
        parts.insert(0, data)
        if found >= lines:
            break
    return b"".join(parts)


def _last_lines(handle: BinaryIO, lines: int, found: int, end: int | None) -> tuple[bytes, int]:
    """The last ``lines - found`` lines of ``handle`` before ``end`` (read backwards), and the new count."""
    take = lines - found
    size = handle.seek(0, os.SEEK_END)
    position = size if end is None else min(end, size)
    buffer = b""
    while position > 0:
        step = min(_CHUNK, position)
        position -= step
        handle.seek(position)
        buffer = handle.read(step) + buffer
        # one more break than lines is needed to know the first wanted line is whole
        if buffer.count(b"\n") > take - (0 if buffer.endswith(b"\n") else 1):
            break
    if not buffer:
        return b"", found
    ends_with_break = buffer.endswith(b"\n")
    pieces = (buffer[:-1] if ends_with_break else buffer).split(b"\n")
    if position > 0:
        pieces = pieces[1:]  # the first piece may be the end of a longer line
    kept = pieces[-take:]
    text = b"\n".join(kept) + (b"\n" if ends_with_break else b"")
    return text, found + len(kept)


async def follow_log(path: Path, start: int, poll_interval_s: float = 0.25) -> AsyncIterator[bytes]:
    """Yield what is appended to a log from byte ``start`` on, forever, across rotations.

    ``start`` is an offset in the live file (its size when a tail was taken). When the writer
    rotates (renames ``path`` to ``path.1``, shifting older copies up), the rest of the file being
    read is read through its open handle, then the next newer file, until the live one is reached
    again; nothing is skipped unless a copy was deleted before it was read. A missing file is
    waited for. Cancel the iteration to stop.
    """
    handle: BinaryIO | None = None
    try:
        while handle is None:
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                await anyio.sleep(poll_interval_s)
                start = 0
        size = os.fstat(handle.fileno()).st_size
        handle.seek(start if start <= size else 0)
        while True:
            data = handle.read(_CHUNK)
            if data:
                yield data
                continue
            newer = _newer_file(path, os.fstat(handle.fileno()).st_ino)
            if newer is not None:
                handle.close()
                handle = newer
                continue
            try:
                if path.stat().st_size < handle.tell():
                    handle.seek(0)  # truncated in place (a writer that keeps no copies)
                    continue
            except FileNotFoundError:
                pass
            await anyio.sleep(poll_interval_s)
    finally:
        if handle is not None:
            handle.close()


def _newer_file(path: Path, inode: int) -> BinaryIO | None:
    """The file written after the one with ``inode`` (an open handle), or ``None`` if that one is live."""
    copies = [path] + [path.with_name(f"{path.name}.{n}") for n in range(1, 1000)]
    previous: Path | None = None
    for candidate in copies:
        try:
            found = candidate.stat().st_ino
        except FileNotFoundError:
            if candidate is not path:
                break  # no older copies past a gap
            continue
        if found == inode:
            if previous is None:
                return None  # still the live file
            try:
                return previous.open("rb")
            except FileNotFoundError:
                return None
        previous = candidate
    try:
        return path.open("rb")  # ours was deleted: carry on with the live file
    except FileNotFoundError:
        return None
