"""Low-level process work for the supervisor: spawning into a new process group with a log pump,
signalling and checking whole groups, HTTP/TCP probes, and the per-instance state files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil

from gpustack_core import _platform
from gpustack_core.errors import EngineLaunchError
from gpustack_core.types import LaunchSpec

__all__ = [
    "SpawnedProcess",
    "StateRecord",
    "group_alive",
    "group_members",
    "is_same_start",
    "kill_group",
    "pid_start_time",
    "probe_once",
    "read_state",
    "remove_state",
    "spawn",
    "write_spec_files",
    "write_state",
]


@dataclass
class SpawnedProcess:
    """An engine process this supervisor started (``popen`` set) or adopted (``popen`` None)."""

    pid: int
    pgid: int
    start_time: float
    popen: subprocess.Popen[bytes] | None = None
    pump: subprocess.Popen[bytes] | None = None
    #: when it started in clock ticks since boot (:func:`gpustack_core._platform.start_ticks`),
    #: what identifies it where the platform has it; ``start_time`` (wall clock) is the fallback
    start_ticks: int | None = None

    def poll(self) -> tuple[bool, int | None]:
        """(exited, exit code). An adopted process's exit code is unknown (None)."""
        if self.pump is not None:
            self.pump.poll()  # reap the pump when it is done
        if self.popen is not None:
            code = self.popen.poll()
            return code is not None, code
        return not _same_process_alive(self.pid, self.start_time, self.start_ticks), None


@dataclass(frozen=True)
class StateRecord:
    """What a state file holds: enough to find and check the process after a worker restart."""

    instance_id: str
    pid: int
    pgid: int
    start_time: float
    log_path: str
    restarts: int
    spec: LaunchSpec | None
    raw_spec: Any
    #: clock ticks since boot at start (Linux); None in files written before it was recorded
    start_ticks: int | None = None

    def to_json(self) -> str:
        """The state file's text."""
        return json.dumps(
            {
                "instance_id": self.instance_id,
                "pid": self.pid,
                "pgid": self.pgid,
                "start_time": self.start_time,
                "start_ticks": self.start_ticks,
                "log_path": self.log_path,
                "restarts": self.restarts,
                "spec": self.spec.model_dump(mode="json") if self.spec is not None else self.raw_spec,
            },
            indent=2,
        )


#: how far two readings of one process's wall-clock creation time may differ: psutil derives it from
#: the current boot time, which moves by whole seconds when the clock is slewed or set (psutil#2526)
_WALL_CLOCK_SLACK_S = 1.5


def pid_start_time(pid: int) -> float | None:
    """The process's creation time (as psutil reports it), or None when it does not exist."""
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None


def is_same_start(pid: int, start_time: float, start_ticks: int | None) -> bool | None:
    """Whether the live process ``pid`` is the one that started at ``start_ticks`` (clock ticks
    since boot, exact) or, where those were not recorded or cannot be read, at ``start_time`` (wall
    clock, within :data:`_WALL_CLOCK_SLACK_S`). None when there is no process ``pid``.
    """
    if start_ticks is not None:
        current_ticks = _platform.start_ticks(pid)
        if current_ticks is not None:
            return current_ticks == start_ticks
    current = pid_start_time(pid)
    if current is None:
        return None
    return abs(current - start_time) <= _WALL_CLOCK_SLACK_S


def _same_process_alive(pid: int, start_time: float, start_ticks: int | None) -> bool:
    if not is_same_start(pid, start_time, start_ticks):
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return False


def group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in a process group (:mod:`gpustack_core._platform`)."""
    return _platform.group_members(pgid)


def group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is left in the process group."""
    return bool(group_members(pgid))


def kill_group(pgid: int, sig: int) -> None:
    """Send ``sig`` (``_platform.TERMINATE`` or ``_platform.KILL``) to every process of the group;
    a group already gone is fine."""
    _platform.signal_group(pgid, sig)


def write_spec_files(spec: LaunchSpec) -> None:
    """Write ``spec.files`` (complete files only: each through a temporary file and a rename),
    with mode 0640."""
    base = Path(spec.cwd) if spec.cwd else Path.cwd()
    for name, content in spec.files.items():
        path = Path(name) if Path(name).is_absolute() else base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(content)
        tmp.chmod(0o640)  # engines such as MindIE refuse configs others can write or read
        os.replace(tmp, path)


def spawn(spec: LaunchSpec, log_path: Path, log_max_bytes: int, log_keep: int) -> SpawnedProcess:
    """Start the engine in a new session (its own process group) with a log pump in that group.

    Raises:
        EngineLaunchError: the program could not be started (missing, not executable, bad cwd).
    """
    env = {**os.environ, **spec.env}
    write_spec_files(spec)
    try:
        engine = subprocess.Popen(
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=spec.cwd,
            **_platform.new_group_kwargs(),
        )
    except OSError as exc:
        raise EngineLaunchError(
            f"could not start {spec.argv[0]!r}: {exc}; check that the engine is installed "
            "(`gpustack-core engines`) and the working directory exists"
        ) from exc
    assert engine.stdout is not None
    pump_argv = [sys.executable, "-m", "gpustack_core.supervisor.logpump", str(log_path)]
    pump_argv += [str(log_max_bytes), str(log_keep)]
    try:
        # Its own session too: it outlives a worker restart, and exits at end of the engine's output.
        pump = subprocess.Popen(
            pump_argv,
            stdin=engine.stdout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **_platform.new_group_kwargs(),
        )
    except OSError as exc:
        kill_group(engine.pid, _platform.KILL)
        engine.wait()
        raise EngineLaunchError(f"could not start the log pump for {spec.argv[0]!r}: {exc}") from exc
    finally:
        engine.stdout.close()
    start_time = pid_start_time(engine.pid) or 0.0
    return SpawnedProcess(
        pid=engine.pid,
        pgid=engine.pid,
        start_time=start_time,
        popen=engine,
        pump=pump,
        start_ticks=_platform.start_ticks(engine.pid),
    )


async def probe_once(spec: LaunchSpec, ready: bool, client: httpx.AsyncClient) -> bool:
    """One readiness (``ready=True``) or health check of a running process, per its mode."""
    probe = spec.readiness if ready else spec.health
    if spec.readiness_mode == "process":
        return True
    if spec.readiness_mode == "tcp":
        try:
            with anyio.fail_after(probe.timeout_s):
                stream = await anyio.connect_tcp(spec.probe_host, spec.port)
                await stream.aclose()
        except (OSError, TimeoutError):
            return False
        return True
    try:
        host = f"[{spec.probe_host}]" if ":" in spec.probe_host else spec.probe_host
        response = await client.get(f"http://{host}:{spec.port}{probe.path}", timeout=probe.timeout_s)
    except httpx.HTTPError:
        return False
    return response.status_code == probe.expect_status


def write_state(state_dir: Path, record: StateRecord) -> None:
    """Write ``state_dir/<id>.json`` atomically."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / f"{record.instance_id}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(record.to_json())
    os.replace(tmp, path)


def remove_state(state_dir: Path, instance_id: str) -> None:
    """Delete an instance's state file, if any."""
    (state_dir / f"{instance_id}.json").unlink(missing_ok=True)


def read_state(path: Path) -> StateRecord | None:
    """Parse a state file. The spec is None when it no longer validates; the record is None when
    even the process facts (pid, pgid) cannot be read."""
    try:
        data = json.loads(path.read_text())
        pid, pgid = int(data["pid"]), int(data["pgid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    spec: LaunchSpec | None
    try:
        spec = LaunchSpec.model_validate(data.get("spec"))
    except ValueError:
        spec = None
    return StateRecord(
        instance_id=str(data.get("instance_id", path.stem)),
        pid=pid,
        pgid=pgid,
        start_time=float(data.get("start_time", 0.0)),
        log_path=str(data.get("log_path", "")),
        restarts=int(data.get("restarts", 0)),
        spec=spec,
        raw_spec=data.get("spec"),
        start_ticks=_optional_int(data.get("start_ticks")),
    )


def _optional_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
