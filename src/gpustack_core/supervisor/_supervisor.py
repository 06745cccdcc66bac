"""The supervisor: starts engine processes, watches readiness and health, restarts crashes, and
adopts or cleans up what an earlier supervisor left behind."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import anyio
import httpx
from anyio.abc import TaskGroup

from gpustack_core import _platform
from gpustack_core.errors import EngineError, EngineLaunchError
from gpustack_core.types import LaunchSpec

from ._logs import log_tail
from ._process import (
    SpawnedProcess,
    StateRecord,
    group_alive,
    is_same_start,
    kill_group,
    probe_once,
    read_state,
    remove_state,
    spawn,
    write_state,
)
from ._types import ProcessState, ProcessStatus, RestartPolicy

__all__ = ["Supervisor"]

logger = logging.getLogger(__name__)

_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_READINESS_INTERVAL_S = 0.25


@dataclass
class _Instance:
    instance_id: str
    spec: LaunchSpec
    log_path: Path
    process: SpawnedProcess | None = None
    state: ProcessState = "starting"
    restarts: int = 0
    restarts_since_ready: int = 0
    #: restarts since the engine last stayed ready for ``stable_after_s``: what ``max_restarts`` caps
    crash_streak: int = 0
    ready_since: float | None = None
    exits: int = 0
    last_exit_code: int | None = None
    message: str = ""
    adopted: bool = False
    stop_requested: bool = False
    scope: anyio.CancelScope | None = None
    changed: anyio.Event = field(default_factory=anyio.Event)


class Supervisor:
    """Runs engine processes for one worker.

    Each process is started in its own session (so its process group id is its pid); a log pump
    process copies its stdout/stderr into ``log_dir/<id>.log``, rotated by size, and exits when the
    engine's output closes. Its pid, pgid, start time and spec are recorded in
    ``state_dir/<id>.json`` until it is stopped, so that a restarted worker can :meth:`adopt` it.

    Use it as an async context manager, or hand it a running task group with
    :meth:`start_background` and call :meth:`aclose` when done. Closing stops every process
    (SIGTERM to the group, SIGKILL after the grace period) unless ``detach`` is true: then the
    processes keep running with their state files in place, for the next supervisor to adopt
    (a worker restart or upgrade without interrupting serving).

    Parameters:
        state_dir: where per-instance state files live.
        log_dir: where per-instance logs live.
        restart: restart and health policy.
        detach: leave processes running on close, for adoption.
        log_max_bytes: size at which a log is rotated.
        log_keep: rotated copies kept per instance.
        poll_interval_s: how often process exits are checked.
        stop_grace_s: default grace period between SIGTERM and SIGKILL on close.
    """

    def __init__(
        self,
        state_dir: Path,
        log_dir: Path,
        restart: RestartPolicy | None = None,
        *,
        detach: bool = False,
        log_max_bytes: int = 10 * 1024 * 1024,
        log_keep: int = 5,
        poll_interval_s: float = 0.2,
        stop_grace_s: float = 10.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.log_dir = Path(log_dir)
        self.restart = restart or RestartPolicy()
        self.detach = detach
        self._log_max_bytes = log_max_bytes
        self._log_keep = log_keep
        self._poll_interval_s = poll_interval_s
        self._stop_grace_s = stop_grace_s
        self._instances: dict[str, _Instance] = {}
        self._task_group: TaskGroup | None = None
        self._own_task_group: TaskGroup | None = None
        self._client: httpx.AsyncClient | None = None
        self._detached: list[SpawnedProcess] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Supervisor:
        group = anyio.create_task_group()
        await group.__aenter__()
        self._own_task_group = group
        await self.start_background(group)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        group = self._own_task_group
        try:
            with anyio.CancelScope(shield=True):
                await self.aclose()
        finally:
            self._own_task_group = None
            if group is not None:
                group.cancel_scope.cancel()
                await group.__aexit__(exc_type, exc, tb)
        return None

    async def start_background(self, task_group: TaskGroup) -> None:
        """Run the supervisor's watch tasks in ``task_group`` (call :meth:`aclose` before it ends)."""
        self._task_group = task_group
        self._client = httpx.AsyncClient()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    async def aclose(self) -> None:
        """Stop every process (or, with ``detach``, leave them running for adoption) and finish."""
        if self.detach:
            for instance in self._instances.values():
                instance.stop_requested = True
                if instance.scope is not None:
                    instance.scope.cancel()
                if instance.process is not None:
                    self._detached.append(instance.process)
        else:
            async with anyio.create_task_group() as group:
                for instance_id in list(self._instances):
                    group.start_soon(self._stop_quietly, instance_id)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._task_group = None

    async def _stop_quietly(self, instance_id: str) -> None:
        try:
            await self.stop(instance_id, grace_s=self._stop_grace_s)
        except EngineError as exc:  # pragma: no cover - stop only raises for unknown ids
            logger.warning("stopping %s on close failed: %s", instance_id, exc)

    # -- public API ------------------------------------------------------------------------

    async def start(self, instance_id: str, spec: LaunchSpec) -> ProcessStatus:
        """Start ``spec`` as ``instance_id`` and watch it; returns at once (state ``starting``).

        Raises:
            EngineError: the supervisor is not running, or the id is already running.
            EngineLaunchError: the program could not be spawned.
        """
        if self._task_group is None:
            raise EngineError("the supervisor is not running: use `async with Supervisor(...)` first")
        if not _INSTANCE_ID.match(instance_id):
            raise EngineError(
                f"invalid instance id {instance_id!r}: use letters, digits, '.', '_' and '-' only"
            )
        existing = self._instances.get(instance_id)
        if existing is not None and existing.state not in ("stopped", "failed"):
            raise EngineError(f"instance {instance_id!r} is already {existing.state}; stop it first")
        instance = _Instance(instance_id=instance_id, spec=spec, log_path=self.log_dir / f"{instance_id}.log")
        self._instances[instance_id] = instance
        try:
            self._spawn(instance)
        except EngineLaunchError as exc:
            self._set(instance, "failed", str(exc))
            raise
        self._task_group.start_soon(self._monitor, instance)
        return self.status(instance_id)

    async def wait_ready(self, instance_id: str, timeout_s: float) -> ProcessStatus:
        """Wait until the instance is ready.

        Raises:
            EngineLaunchError: the process exited (or was stopped or gave up) or ``timeout_s``
                passed first; the message ends with the tail of its log.
        """
        instance = self._get(instance_id)
        exits_before = instance.exits
        with anyio.move_on_after(timeout_s):
            while True:
                if instance.state == "ready":
                    return self.status(instance_id)
                if instance.exits != exits_before or instance.state in ("stopped", "failed"):
                    raise EngineLaunchError(self._failure_text(instance, instance.message or "it exited"))
                event = instance.changed
                with anyio.move_on_after(self._poll_interval_s * 5):
                    await event.wait()
        raise EngineLaunchError(self._failure_text(instance, f"not ready within {timeout_s:g} s"))

    async def stop(self, instance_id: str, grace_s: float = 10) -> ProcessStatus:
        """Stop the instance: SIGTERM to its process group, SIGKILL after ``grace_s``; its state
        file is removed. Stopping a stopped instance is a no-op."""
        instance = self._get(instance_id)
        instance.stop_requested = True
        if instance.scope is not None:
            instance.scope.cancel()
        process = instance.process
        if process is not None:
            kill_group(process.pgid, _platform.TERMINATE)
            if not await self._wait_group_gone(process, grace_s):
                logger.info("instance %s did not stop within %.1f s; sending SIGKILL", instance_id, grace_s)
                kill_group(process.pgid, _platform.KILL)
                await self._wait_group_gone(process, 10.0)
            _, code = process.poll()
            if code is not None:
                instance.last_exit_code = code
        remove_state(self.state_dir, instance_id)
        if instance.state != "failed":
            self._set(instance, "stopped", "stopped on request")
        return self.status(instance_id)

    def status(self, instance_id: str) -> ProcessStatus:
        """A snapshot of one instance. Raises :class:`EngineError` for an unknown id."""
        instance = self._get(instance_id)
        process = instance.process
        return ProcessStatus(
            instance_id=instance_id,
            state=instance.state,
            pid=process.pid if process is not None else None,
            pgid=process.pgid if process is not None else None,
            restarts=instance.restarts,
            last_exit_code=instance.last_exit_code,
            message=instance.message,
            log_path=str(instance.log_path),
            adopted=instance.adopted,
        )

    def launch_spec(self, instance_id: str) -> LaunchSpec:
        """The launch spec an instance runs with. Raises :class:`EngineError` for an unknown id."""
        return self._get(instance_id).spec

    def statuses(self) -> dict[str, ProcessStatus]:
        """Snapshots of every instance this supervisor knows, by id."""
        return {instance_id: self.status(instance_id) for instance_id in self._instances}

    def log_tail(self, instance_id: str, max_bytes: int = 4000) -> str:
        """The last ``max_bytes`` of the instance's log."""
        return log_tail(self._get(instance_id).log_path, max_bytes)

    async def adopt(self) -> list[str]:
        """Adopt the live processes recorded in ``state_dir`` by an earlier supervisor.

        A recorded process is adopted when its pid is alive with the recorded start time and
        process group and its spec is readable; it is then watched (readiness, health, restart)
        like one started here. Otherwise its state file is removed, and any process left in its
        group is killed: a dead engine's leftover children, or a live engine whose spec this
        version cannot read. Never leaves an orphan behind.

        Returns:
            The ids adopted.
        """
        if self._task_group is None:
            raise EngineError("the supervisor is not running: use `async with Supervisor(...)` first")
        adopted: list[str] = []
        for path in sorted(self.state_dir.glob("*.json")):
            record = read_state(path)
            if record is None:
                logger.warning("removing unreadable supervisor state file %s", path)
                path.unlink(missing_ok=True)
                continue
            if record.instance_id in self._instances:
                continue
            if self._adopt_one(record):
                adopted.append(record.instance_id)
            else:
                path.unlink(missing_ok=True)
        return adopted

    # -- internals -------------------------------------------------------------------------

    def _adopt_one(self, record: StateRecord) -> bool:
        process = SpawnedProcess(
            pid=record.pid, pgid=record.pgid, start_time=record.start_time, start_ticks=record.start_ticks
        )
        if is_same_start(record.pid, record.start_time, record.start_ticks) is False:
            # The pid now belongs to another process. While any process of the old group lived,
            # its id could not have been reused; so there is nothing of ours left to clean up.
            return False
        exited, _ = process.poll()
        same_group = False
        if not exited:
            try:
                same_group = _platform.group_of(record.pid) == record.pgid
            except ProcessLookupError:
                exited = True
        if not exited and same_group and record.spec is not None and self._task_group is not None:
            instance = _Instance(
                instance_id=record.instance_id,
                spec=record.spec,
                log_path=Path(record.log_path)
                if record.log_path
                else self.log_dir / f"{record.instance_id}.log",
                process=process,
                restarts=record.restarts,
                adopted=True,
                message="adopted after a supervisor restart",
            )
            self._instances[record.instance_id] = instance
            self._task_group.start_soon(self._monitor, instance)
            logger.info("adopted %s (pid %d)", record.instance_id, record.pid)
            return True
        if (not exited and same_group) or (exited and group_alive(record.pgid)):
            # A live engine we cannot manage (unknown spec), or the leftovers of a dead one.
            logger.warning("killing process group %d left by %s", record.pgid, record.instance_id)
            kill_group(record.pgid, _platform.KILL)
        return False

    def _get(self, instance_id: str) -> _Instance:
        instance = self._instances.get(instance_id)
        if instance is None:
            raise EngineError(f"no instance {instance_id!r} in this supervisor")
        return instance

    def _set(self, instance: _Instance, state: ProcessState, message: str) -> None:
        instance.state = state
        instance.message = message
        event, instance.changed = instance.changed, anyio.Event()
        event.set()

    def _failure_text(self, instance: _Instance, what: str) -> str:
        tail = log_tail(instance.log_path, 3000).rstrip()
        return (
            f"engine instance {instance.instance_id!r} ({instance.spec.argv[0]}) failed to become ready: "
            f"{what}. Log {instance.log_path}, last lines:\n{tail}"
        )

    def _spawn(self, instance: _Instance) -> None:
        instance.log_path.parent.mkdir(parents=True, exist_ok=True)
        with instance.log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            log.write(
                f"=== gpustack-core supervisor: start #{instance.restarts + 1} at {stamp} ===\n".encode()
            )
        instance.process = spawn(instance.spec, instance.log_path, self._log_max_bytes, self._log_keep)
        write_state(
            self.state_dir,
            StateRecord(
                instance_id=instance.instance_id,
                pid=instance.process.pid,
                pgid=instance.process.pgid,
                start_time=instance.process.start_time,
                start_ticks=instance.process.start_ticks,
                log_path=str(instance.log_path),
                restarts=instance.restarts,
                spec=instance.spec,
                raw_spec=None,
            ),
        )
        self._set(instance, "starting", f"started pid {instance.process.pid}")

    async def _wait_group_gone(self, process: SpawnedProcess, timeout_s: float) -> bool:
        with anyio.move_on_after(timeout_s):
            while True:
                process.poll()
                if not group_alive(process.pgid):
                    await self._reap_pump(process)
                    return True
                await anyio.sleep(0.05)
        return False

    async def _reap_pump(self, process: SpawnedProcess) -> None:
        """The log pump exits once the engine's output pipe closes; give it a moment to drain."""
        pump = process.pump
        if pump is None:
            return
        with anyio.move_on_after(2.0):
            while pump.poll() is None:
                await anyio.sleep(0.02)
        if pump.poll() is None:  # pragma: no cover - something outside the group holds the pipe
            pump.kill()
            pump.wait()

    async def _monitor(self, instance: _Instance) -> None:
        with anyio.CancelScope() as scope:
            instance.scope = scope
            while True:
                await self._watch(instance)
                if instance.stop_requested:
                    return
                if (
                    instance.ready_since is not None
                    and time.monotonic() - instance.ready_since >= self.restart.stable_after_s
                ):
                    instance.crash_streak = 0  # it served long enough: an old crash is not a loop
                instance.ready_since = None
                cap = self.restart.max_restarts
                if cap is not None and instance.crash_streak >= cap:
                    remove_state(self.state_dir, instance.instance_id)
                    self._set(instance, "failed", f"{instance.message}; gave up after {cap} restart(s)")
                    return
                instance.restarts += 1
                instance.crash_streak += 1
                instance.restarts_since_ready += 1
                delay = self.restart.backoff(instance.restarts_since_ready)
                self._set(
                    instance,
                    "restarting",
                    f"{instance.message}; restart {instance.restarts} in {delay:g} s",
                )
                await anyio.sleep(delay)
                try:
                    self._spawn(instance)
                except EngineLaunchError as exc:
                    remove_state(self.state_dir, instance.instance_id)
                    self._set(instance, "failed", str(exc))
                    return

    async def _watch(self, instance: _Instance) -> None:
        """Return when the current process has exited (and its group is cleaned up)."""
        process = instance.process
        assert process is not None
        assert self._client is not None
        spec = instance.spec
        ready_seen = False
        failures = 0
        kill_reason = ""
        started = time.monotonic()
        next_probe = started
        while True:
            exited, code = process.poll()
            if exited:
                await self._clean_group(process)
                instance.exits += 1
                instance.last_exit_code = code
                what = f"exited with code {code}" if code is not None else "exited"
                self._set(instance, "crashed", f"{kill_reason}process {process.pid} {what}")
                return
            now = time.monotonic()
            if now >= next_probe:
                ok = await probe_once(spec, ready=not ready_seen, client=self._client)
                now = time.monotonic()
                if not ready_seen:
                    if ok:
                        ready_seen = True
                        instance.restarts_since_ready = 0
                        instance.ready_since = now
                        self._set(instance, "ready", f"ready (pid {process.pid})")
                    elif now - started > spec.ready_timeout_s:
                        kill_group(process.pgid, _platform.KILL)
                        kill_reason = f"not ready within {spec.ready_timeout_s:g} s, killed: "
                    next_probe = now + _READINESS_INTERVAL_S
                else:
                    failures = 0 if ok else failures + 1
                    if ok and instance.state == "unhealthy":
                        self._set(instance, "ready", f"healthy again (pid {process.pid})")
                    elif failures >= self.restart.health_failure_threshold and instance.state != "unhealthy":
                        self._set(instance, "unhealthy", f"{failures} health checks failed in a row")
                        if self.restart.restart_on_unhealthy:
                            kill_reason = f"{failures} health checks failed in a row, killed: "
                            kill_group(process.pgid, _platform.KILL)
                    next_probe = now + self.restart.health_interval_s
            await anyio.sleep(self._poll_interval_s)

    async def _clean_group(self, process: SpawnedProcess) -> None:
        """After the leader exited: let the pump drain, then kill whatever is left in the group."""
        if not await self._wait_group_gone(process, 2.0):
            kill_group(process.pgid, _platform.KILL)
            await self._wait_group_gone(process, 5.0)
