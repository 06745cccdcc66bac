"""The few operating-system differences the core depends on, in one place.

Everything here imports on Linux, macOS and Windows: no POSIX-only module (``fcntl``, ``pwd``,
``resource``, ...) is imported at module level, and the functions choose their implementation when
called, from ``os.name``.

- **process groups**: a child started with :func:`new_group_kwargs` leads a group of its own, which
  :func:`signal_group` signals and :func:`group_members` lists as a whole. On POSIX that is a
  session and its process group (``killpg``); on Windows a new process group
  (``CREATE_NEW_PROCESS_GROUP``), signalled and listed as the leader's process tree through
  ``psutil`` (descendants of a leader that has already exited cannot be found there).
- **signals**: :data:`TERMINATE` and :data:`KILL` exist everywhere (Windows has no ``SIGKILL``;
  there a kill is ``TerminateProcess``).
- **file locks**: :func:`file_lock`, an exclusive inter-process lock on a lock file through the
  maintained ``filelock`` library (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows),
  imported only when a lock is taken.
- **process identity**: :func:`start_ticks`, when a process started in clock ticks since boot
  (Linux), which a wall-clock change cannot move; None elsewhere, where callers fall back to
  ``psutil``'s creation time.
- **event loop**: :func:`event_loop_options`, ``anyio.run``'s options for the server's processes:
  uvloop where it is installed (not on Windows, where the dependency is not installed).

What was run where is written down in ``docs/platforms.md``: CI runs Linux only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # psutil is imported where it is used (Windows, group scans): plugins load without it
    import psutil

__all__ = [
    "KILL",
    "TERMINATE",
    "event_loop_options",
    "file_lock",
    "group_exists",
    "group_members",
    "group_of",
    "is_windows",
    "new_group_kwargs",
    "signal_group",
    "start_ticks",
]

#: asks a process to stop (SIGTERM; on Windows ``TerminateProcess`` as well)
TERMINATE: int = int(signal.SIGTERM)
#: stops a process without asking (SIGKILL; Windows has none and terminates)
KILL: int = int(getattr(signal, "SIGKILL", signal.SIGTERM))


def event_loop_options() -> dict[str, Any]:
    """``backend_options`` for ``anyio.run`` in a server process: uvloop where it is installed.

    ``uvicorn.run`` picks uvloop by itself, but the server runs uvicorn inside ``anyio.run``, whose
    asyncio backend takes the standard library's event loop unless told otherwise; on that loop
    the server's gateway cost about twice the CPU per request
    (``docs/benchmarks/gateway_throughput.md``).
    """
    if os.name != "nt" and importlib.util.find_spec("uvloop") is not None:
        return {"use_uvloop": True}
    return {}


def is_windows() -> bool:
    """Whether this is Windows (``os.name == "nt"``)."""
    return os.name == "nt"


def new_group_kwargs() -> dict[str, Any]:
    """Keyword arguments for :class:`subprocess.Popen` that make the child lead a new group."""
    if is_windows():
        return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200)}
    return {"start_new_session": True}


def _tree(pgid: int) -> list[psutil.Process]:
    """The live leader ``pgid`` and its descendants (the Windows stand-in for a group)."""
    import psutil

    try:
        leader = psutil.Process(pgid)
        return [leader, *leader.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to every process of group ``pgid``; a group already gone is fine.

    On Windows the leader's live tree is terminated (``KILL``) or asked to stop (anything else,
    ``TerminateProcess`` too: Windows has no polite stop for a console-less process).
    """
    if not is_windows():
        killpg: Callable[[int, int], None] = os.killpg  # type: ignore[attr-defined,unused-ignore]
        with contextlib.suppress(ProcessLookupError):
            killpg(pgid, sig)
        return
    import psutil

    for process in _tree(pgid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if sig == KILL:
                process.kill()
            else:
                process.terminate()


def group_of(pid: int) -> int:
    """The group ``pid`` belongs to (POSIX ``getpgid``; on Windows the pid itself).

    Raises:
        ProcessLookupError: no process ``pid``.
    """
    if not is_windows():
        getpgid: Callable[[int], int] = os.getpgid  # type: ignore[attr-defined,unused-ignore]
        return getpgid(pid)
    import psutil

    if not psutil.pid_exists(pid):
        raise ProcessLookupError(pid)
    return pid


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (field 22, ``starttime``, of Linux's
    ``/proc/<pid>/stat``); None when the process does not exist or off Linux.

    Unlike ``psutil.Process.create_time()``, which adds the current ``btime`` of ``/proc/stat`` and
    so moves by whole seconds when NTP slews or someone sets the wall clock (psutil#2526, #2541),
    this never changes for the life of a process: a recorded (pid, start ticks) names one process.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
        # the command name (field 2), in parentheses, may hold spaces or ')': fields 3.. follow the last ')'
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):  # gone, or gone while being read (an empty file)
        return None


def group_exists(pgid: int) -> bool:
    """Whether any process of group ``pgid`` may still exist (cheap check before a full scan)."""
    if is_windows():
        return bool(_tree(pgid))
    killpg: Callable[[int, int], None] = os.killpg  # type: ignore[attr-defined,unused-ignore]
    try:
        killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes of group ``pgid``; zombies are left to whoever
    reaps them (``Popen.poll`` for our own children, init for orphans)."""
    if not group_exists(pgid):
        return []
    if is_windows():
        return [p.pid for p in _tree(pgid)]
    import psutil

    members: list[int] = []
    for process in psutil.process_iter(["status"]):
        try:
            if group_of(process.pid) != pgid:
                continue
        except (ProcessLookupError, PermissionError):
            continue
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        members.append(process.pid)
    return members


@contextlib.contextmanager
def file_lock(path: Path, *, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive inter-process lock on the file ``path`` (created if missing).

    A second holder blocks until the first releases it. ``on_wait`` is called once, before
    blocking, when the lock is already held elsewhere (to log that we wait).
    """
    from filelock import FileLock, Timeout  # imported here: it imports fcntl on POSIX

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
