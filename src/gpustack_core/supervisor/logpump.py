"""The log pump: copies an engine's stdout/stderr from its stdin into a size-rotated log file.

It runs as a separate process in its own session, so that the engine keeps a reader for its
output when the worker that started it restarts (the engine is then adopted, see
:meth:`gpustack_core.supervisor.Supervisor.adopt`). It ignores SIGTERM and SIGINT so that it
records what the engine prints while shutting down, and exits at end of input: when the engine and
every process holding its output pipe are gone.

Usage: ``python -m gpustack_core.supervisor.logpump PATH MAX_BYTES KEEP``
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from ._logs import RotatingLogWriter

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Copy stdin to the rotated log until end of input; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print("usage: python -m gpustack_core.supervisor.logpump PATH MAX_BYTES KEEP", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    writer = RotatingLogWriter(Path(args[0]), int(args[1]), int(args[2]))
    stdin = sys.stdin.fileno()
    try:
        while True:
            data = os.read(stdin, 65536)
            if not data:
                return 0
            writer.write(data)
    finally:
        writer.close()


if __name__ == "__main__":
    raise SystemExit(main())
