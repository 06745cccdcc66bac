"""Process helpers of the instance-group tests: stop every worker (and server) process a test
started, then every engine process they started, even one the test never saw."""

from __future__ import annotations

import contextlib
import signal
import subprocess

import psutil

__all__ = ["alive", "kill_tree", "stop_all"]


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants (gone ones are skipped)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc = psutil.Process(pid)
        for child in [*proc.children(recursive=True), proc]:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_all(processes: list[subprocess.Popen[bytes]], pids: list[int]) -> None:
    """SIGTERM ``processes`` (SIGKILL after 15 s), then kill ``pids`` and every descendant the
    processes had when this was called (a failed run must not leave processes behind)."""
    for proc in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            pids += [child.pid for child in psutil.Process(proc.pid).children(recursive=True)]
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    for pid in pids:
        kill_tree(pid)
