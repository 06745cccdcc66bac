"""The core imports without POSIX-only modules, and its platform layer works when run.

CI has only Linux. The import check therefore records, in a fresh interpreter, every attempt to
import a module that does not exist on Windows and *which module attempted it*: none may come from
``gpustack_core``; the others must be the known, platform-conditional ones of the standard library
and dependencies (each with the reason it is harmless on Windows). The platform layer is checked by
running it here (two real processes contending for a lock; a real process group signalled), not by
pretending ``sys.platform`` is something else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpustack_core import _platform

#: standard-library modules that exist on POSIX systems only (absent on Windows)
POSIX_ONLY = frozenset(
    {"fcntl", "termios", "tty", "pty", "pwd", "grp", "resource", "syslog", "crypt", "spwd", "nis"}
    | {"_posixsubprocess", "_posixshmem", "posix", "readline"}
)

#: (module, importer) pairs allowed to attempt a POSIX-only import, and why that is harmless
ALLOWED = {
    ("fcntl", "subprocess"): "stdlib: `try: import fcntl except ImportError: fcntl = None`",
    ("_posixsubprocess", "subprocess"): "stdlib: imported only in the `not _mswindows` branch",
    ("pwd", "psutil"): "psutil/__init__.py: `try: import pwd except ImportError: pwd = None`",
    ("resource", "psutil._pslinux"): "psutil's Linux backend; Windows loads psutil._pswindows instead",
    ("fcntl", "alembic.util.messaging"): "alembic: inside `try: ... except (ImportError, OSError)`",
    ("termios", "alembic.util.messaging"): "alembic: same guarded block as fcntl",
    ("resource", "prometheus_client.process_collector"): (
        "prometheus_client: `try: import resource ... except ImportError` (seen first since "
        "`import gpustack_core` no longer imports psutil up front)"
    ),
}

_PROBE = r"""
import importlib.abc, json, sys
POSIX_ONLY = set(json.loads(sys.argv[1]))
attempts = []
class Recorder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in POSIX_ONLY:
            frame = sys._getframe(1)
            while frame is not None and frame.f_globals.get("__name__", "").startswith(("importlib", "_fro")):
                frame = frame.f_back
            attempts.append([name, frame.f_globals.get("__name__") if frame else None])
        return None
sys.meta_path.insert(0, Recorder())
import gpustack_core, gpustack_core.worker, gpustack_core.server
print(json.dumps({"attempts": attempts, "loaded": sorted(m for m in sys.modules if m in POSIX_ONLY)}))
"""


def _import_report() -> dict[str, list[list[str]]]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(sorted(POSIX_ONLY))],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report: dict[str, list[list[str]]] = json.loads(out.stdout)
    return report


def test_core_import_attempts_no_posix_only_module_itself() -> None:
    report = _import_report()
    attempts = {(name, importer) for name, importer in report["attempts"]}
    ours = sorted(a for a in attempts if (a[1] or "").startswith("gpustack_core"))
    assert not ours, f"gpustack_core imports POSIX-only modules at import time: {ours}"
    unknown = sorted(a for a in attempts if a not in ALLOWED)
    assert not unknown, (
        f"POSIX-only imports by modules not known to guard them: {unknown}; check that each is "
        "platform-conditional in that module and add it to ALLOWED with the reason"
    )


def test_probe_sees_a_posix_only_import_when_there_is_one() -> None:
    """The recorder is not blind: on this Linux CI the stdlib's guarded ``fcntl`` import is seen."""
    report = _import_report()
    assert ["fcntl", "subprocess"] in report["attempts"]
    assert "fcntl" in report["loaded"]


_HOLD = r"""
import sys, time
from pathlib import Path
from gpustack_core._platform import file_lock
with file_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    Path(sys.argv[3]).write_text("about to release")
"""


def test_file_lock_excludes_another_process(tmp_path: Path) -> None:
    lock = tmp_path / "locks" / "x.lock"
    marker = tmp_path / "releasing"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(lock), "1.5", str(marker)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        waited: list[bool] = []
        started = time.monotonic()
        with _platform.file_lock(lock, on_wait=lambda: waited.append(True)):
            assert marker.exists(), "lock acquired while the other process still held it"
        assert waited == [True]
        assert time.monotonic() - started > 0.5
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_file_lock_free_lock_does_not_wait(tmp_path: Path) -> None:
    waited: list[bool] = []
    with _platform.file_lock(tmp_path / "free.lock", on_wait=lambda: waited.append(True)):
        pass
    assert waited == []


_LEADER_WITH_CHILD = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
)


def test_new_group_is_signalled_as_a_whole() -> None:
    leader = subprocess.Popen([sys.executable, "-c", _LEADER_WITH_CHILD], **_platform.new_group_kwargs())
    try:
        deadline = time.monotonic() + 20
        while len(_platform.group_members(leader.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        members = _platform.group_members(leader.pid)
        assert len(members) == 2
        assert leader.pid in members
        assert _platform.group_of(leader.pid) == leader.pid
        _platform.signal_group(leader.pid, _platform.KILL)
        leader.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _platform.group_members(leader.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _platform.group_members(leader.pid) == []
    finally:
        _platform.signal_group(leader.pid, _platform.KILL)  # no orphan, whatever failed above
        leader.wait(timeout=10)


def test_signalling_a_vanished_group_is_fine() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"], **_platform.new_group_kwargs())
    process.wait()
    _platform.signal_group(process.pid, _platform.TERMINATE)
    assert not _platform.group_exists(process.pid)
    with pytest.raises(ProcessLookupError):
        _platform.group_of(process.pid)


def test_windows_group_stand_in_finds_the_leader_and_its_tree() -> None:
    """``_tree`` is what a group is on Windows (the leader's live process tree, via psutil).

    Run here on Linux: this exercises the psutil logic, not the Windows branch selection.
    """
    leader = subprocess.Popen([sys.executable, "-c", _LEADER_WITH_CHILD], **_platform.new_group_kwargs())
    try:
        deadline = time.monotonic() + 20
        while len(_platform._tree(leader.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        tree = [p.pid for p in _platform._tree(leader.pid)]
        assert tree[0] == leader.pid
        assert sorted(tree) == sorted(_platform.group_members(leader.pid))
    finally:
        _platform.signal_group(leader.pid, _platform.KILL)
        leader.wait(timeout=10)
    assert _platform._tree(leader.pid) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="start ticks come from Linux's /proc")
def test_start_ticks_survive_a_command_name_with_spaces_and_parentheses(tmp_path: Path) -> None:
    """Field 22 of /proc/<pid>/stat, counted after the command name's last ')': a name like
    'x) 1 2' would shift a naive split by three fields."""
    program = tmp_path / "x) 1 2"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", program)
    before = time.clock_gettime(time.CLOCK_BOOTTIME)
    process = subprocess.Popen([str(program), "30"])
    try:
        ticks = _platform.start_ticks(process.pid)
        after = time.clock_gettime(time.CLOCK_BOOTTIME)
        assert ticks is not None
        assert Path(f"/proc/{process.pid}/comm").read_text().strip() == "x) 1 2"
        started = ticks / os.sysconf("SC_CLK_TCK")
        assert before - 0.02 <= started <= after + 0.02, (before, started, after)
        assert _platform.start_ticks(process.pid) == ticks, "the same every time it is read"
    finally:
        process.kill()
        process.wait()
    assert _platform.start_ticks(process.pid) is None, "no process, no start"
