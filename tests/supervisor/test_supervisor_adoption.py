"""Adoption after a worker restart: a detached supervisor in another process leaves engines
running; a new supervisor adopts live ones and cleans up dead or unreadable ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import anyio
import psutil
import pytest
from supervisor_helpers import FAST, group_pids

from gpustack_core import _platform
from gpustack_core.supervisor import Supervisor
from gpustack_core.types import LaunchSpec

pytestmark = pytest.mark.anyio


OLD_WORKER = textwrap.dedent(
    """
    import sys, anyio
    from pathlib import Path
    from gpustack_core.supervisor import Supervisor
    from gpustack_core.types import LaunchSpec

    async def main() -> None:
        specs = [LaunchSpec.model_validate_json(text) for text in sys.argv[3:]]
        async with Supervisor(Path(sys.argv[1]), Path(sys.argv[2]), detach=True) as sup:
            for number, spec in enumerate(specs):
                await sup.start(f"engine-{number}", spec)
            for number in range(len(specs)):
                await sup.wait_ready(f"engine-{number}", timeout_s=20)

    anyio.run(main)
    """
)


def run_old_worker(state: Path, logs: Path, *specs: LaunchSpec) -> None:
    subprocess.run(
        [sys.executable, "-c", OLD_WORKER, str(state), str(logs), *(s.model_dump_json() for s in specs)],
        check=True,
        timeout=60,
    )


async def test_adopt_live_and_restart_after_crash(
    tmp_path: Path, fake_spec: Callable[..., LaunchSpec]
) -> None:
    state, logs = tmp_path / "state", tmp_path / "logs"
    run_old_worker(state, logs, fake_spec("--child"))
    record = json.loads((state / "engine-0.json").read_text())
    assert group_pids(record["pgid"]), "the detached engine should still run"
    async with Supervisor(state, logs, FAST) as sup:
        assert await sup.adopt() == ["engine-0"]
        assert await sup.adopt() == []  # already adopted
        status = await sup.wait_ready("engine-0", timeout_s=20)
        assert status.adopted
        assert status.pid == record["pid"]
        os.kill(record["pid"], signal.SIGKILL)
        with anyio.fail_after(30):
            while not (sup.status("engine-0").restarts == 1 and sup.status("engine-0").state == "ready"):
                await anyio.sleep(0.05)
        assert group_pids(record["pgid"]) == [], "the adopted group's leftovers are killed"
    assert list(state.glob("*.json")) == []


async def test_adopt_cleans_dead_unknown_and_corrupt(
    tmp_path: Path, fake_spec: Callable[..., LaunchSpec]
) -> None:
    state, logs = tmp_path / "state", tmp_path / "logs"
    run_old_worker(state, logs, fake_spec("--child"), fake_spec())
    first = json.loads((state / "engine-0.json").read_text())
    second = json.loads((state / "engine-1.json").read_text())
    # engine-0: the engine died but its child (same group) is left behind.
    os.kill(first["pid"], signal.SIGKILL)
    # engine-1: alive, but its spec is one this version cannot read.
    second["spec"] = {"argv": [], "unknown": True}
    (state / "engine-1.json").write_text(json.dumps(second))
    (state / "garbage.json").write_text("{not json")
    with anyio.fail_after(10):
        while (
            psutil.pid_exists(first["pid"]) and psutil.Process(first["pid"]).status() != psutil.STATUS_ZOMBIE
        ):
            await anyio.sleep(0.05)
    assert group_pids(first["pgid"]), "the dead engine's child is still there"
    async with Supervisor(state, logs, FAST) as sup:
        assert await sup.adopt() == []
        with anyio.fail_after(10):
            while group_pids(first["pgid"]) or group_pids(second["pgid"]):
                await anyio.sleep(0.05)
    assert list(state.glob("*.json")) == []


@pytest.mark.parametrize("differs", ["wall-clock start, no ticks recorded", "start ticks"])
async def test_pid_reused_by_another_process_is_not_adopted_or_killed(tmp_path: Path, differs: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        if differs == "start ticks":  # the wall-clock time matches: the ticks decide
            ticks = _platform.start_ticks(bystander.pid)
            assert ticks is not None
            start = {"start_time": psutil.Process(bystander.pid).create_time(), "start_ticks": ticks - 1}
        else:  # a state file written before ticks were recorded
            start = {"start_time": 1.0}
        spec = LaunchSpec(argv=("x",), port=1, served_model_name="m")
        (state / "old.json").write_text(
            json.dumps(
                {
                    "instance_id": "old",
                    "pid": bystander.pid,
                    "pgid": bystander.pid,
                    **start,
                    "log_path": "",
                    "restarts": 0,
                    "spec": spec.model_dump(mode="json"),
                }
            )
        )
        async with Supervisor(state, tmp_path / "logs", FAST) as sup:
            assert await sup.adopt() == []
        assert bystander.poll() is None, "a process with another start is not ours"
        assert not (state / "old.json").exists()
    finally:
        bystander.kill()
        bystander.wait()


async def test_adopted_after_the_wall_clock_moved(
    tmp_path: Path, fake_spec: Callable[..., LaunchSpec]
) -> None:
    """psutil's creation time is start ticks + the *current* boot time, which moves by whole seconds
    when NTP slews or someone sets the clock (psutil#2526): a restarted worker read it 1 s off, took
    the engine for a reused pid and left it running unmanaged. The start ticks since boot decide."""
    state, logs = tmp_path / "state", tmp_path / "logs"
    run_old_worker(state, logs, fake_spec())
    record = json.loads((state / "engine-0.json").read_text())
    assert record["start_ticks"] == _platform.start_ticks(record["pid"])
    record["start_time"] -= 1.0  # what the engine's creation time read before the clock was stepped
    (state / "engine-0.json").write_text(json.dumps(record))
    async with Supervisor(state, logs, FAST) as sup:
        assert await sup.adopt() == ["engine-0"]
        status = await sup.wait_ready("engine-0", timeout_s=20)
        assert (status.pid, status.adopted, status.restarts) == (record["pid"], True, 0)
        await sup.stop("engine-0")
    assert group_pids(record["pgid"]) == []
