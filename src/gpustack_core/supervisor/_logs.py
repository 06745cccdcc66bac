"""Size-rotated log files: the writer used by the log pump, and reading a log's tail."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

__all__ = ["RotatingLogWriter", "log_tail", "rotated_paths"]


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
