"""Supervisor: start, readiness, logs, graceful stop of the whole group, crash restart, backoff."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from supervisor_helpers import FAST, group_pids

from gpustack_core.errors import EngineError, EngineLaunchError
from gpustack_core.supervisor import ProcessStatus, RestartPolicy, Supervisor
from gpustack_core.types import LaunchSpec

pytestmark = pytest.mark.anyio


async def wait_for(
    sup: Supervisor, instance_id: str, check: Callable[[ProcessStatus], bool]
) -> ProcessStatus:
    with anyio.fail_after(30):
        while True:
            status = sup.status(instance_id)
            if check(status):
                return status
            await anyio.sleep(0.05)


async def test_start_ready_stop_removes_group_and_state(
    tmp_path: Path, fake_spec: Callable[..., LaunchSpec]
) -> None:
    async with Supervisor(tmp_path / "state", tmp_path / "logs", FAST) as sup:
        status = await sup.start("one", fake_spec("--child", "--say", "hello from engine"))
        assert status.state == "starting"
        assert status.pid is not None
        assert status.pgid == status.pid
        state = json.loads((tmp_path / "state" / "one.json").read_text())
        assert state["pid"] == status.pid
        assert state["spec"]["served_model_name"] == "fake"
        ready = await sup.wait_ready("one", timeout_s=20)
        assert ready.state == "ready"
        members = group_pids(status.pgid)
        assert len(members) >= 2  # the engine and its `sleep` child
        stopped = await sup.stop("one", grace_s=5)
        assert stopped.state == "stopped"
        assert group_pids(status.pgid) == []
        assert not (tmp_path / "state" / "one.json").exists()
        assert "hello from engine" in sup.log_tail("one")
        assert "listening on 127.0.0.1" in Path(stopped.log_path).read_text()


async def test_stop_escalates_to_sigkill(tmp_path: Path, fake_spec: Callable[..., LaunchSpec]) -> None:
    async with Supervisor(tmp_path / "s", tmp_path / "l", FAST) as sup:
        status = await sup.start("stubborn", fake_spec("--ignore-sigterm"))
        await sup.wait_ready("stubborn", timeout_s=20)
        begun = time.monotonic()
        stopped = await sup.stop("stubborn", grace_s=0.5)
        assert time.monotonic() - begun >= 0.5
        assert stopped.last_exit_code == -signal.SIGKILL
        assert status.pgid is not None
        assert group_pids(status.pgid) == []


async def test_crash_is_restarted_with_backoff_and_cap(
    tmp_path: Path, fake_spec: Callable[..., LaunchSpec]
) -> None:
    policy = RestartPolicy(initial_backoff_s=0.1, max_backoff_s=0.2, max_restarts=2)
    async with Supervisor(tmp_path / "s", tmp_path / "l", policy) as sup:
        await sup.start("crashy", fake_spec("--exit-after", "0.3", "--exit-code", "7"))
        final = await wait_for(sup, "crashy", lambda s: s.state == "failed")
        assert final.restarts == 2
        assert final.last_exit_code == 7
        assert "gave up after 2 restart(s)" in final.message
        assert not (tmp_path / "s" / "crashy.json").exists()
        assert Path(final.log_path).read_text().count("fake engine exiting with 7") == 3


async def test_kill_9_is_restarted_and_serves_again(
    tmp_path: Path, fake_spec: Callable[..., LaunchSpec]
) -> None:
    async with Supervisor(tmp_path / "s", tmp_path / "l", FAST) as sup:
        first = await sup.start("victim", fake_spec())
        await sup.wait_ready("victim", timeout_s=20)
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        again = await wait_for(sup, "victim", lambda s: s.restarts == 1 and s.state == "ready")
        assert again.pid != first.pid
        assert again.last_exit_code == -signal.SIGKILL
        state = json.loads((tmp_path / "s" / "victim.json").read_text())
        assert state["pid"] == again.pid
        assert state["restarts"] == 1


async def test_unhealthy_process_is_restarted(tmp_path: Path, fake_spec: Callable[..., LaunchSpec]) -> None:
    policy = RestartPolicy(initial_backoff_s=0.1, health_interval_s=0.1, health_failure_threshold=2)
    async with Supervisor(tmp_path / "s", tmp_path / "l", policy) as sup:
        await sup.start("sick", fake_spec("--unhealthy-after", "1.0"))
        await sup.wait_ready("sick", timeout_s=20)
        restarted = await wait_for(sup, "sick", lambda s: s.restarts >= 1)
        assert "health checks failed" in restarted.message


async def test_wait_ready_raises_with_log_tail_when_process_exits(
    tmp_path: Path, fake_spec: Callable[..., LaunchSpec]
) -> None:
    policy = RestartPolicy(initial_backoff_s=5)
    async with Supervisor(tmp_path / "s", tmp_path / "l", policy) as sup:
        await sup.start(
            "early", fake_spec("--ready-after", "5", "--exit-after", "0.2", "--say", "boom-marker")
        )
        with pytest.raises(EngineLaunchError, match="boom-marker"):
            await sup.wait_ready("early", timeout_s=20)


async def test_wait_ready_times_out(tmp_path: Path, fake_spec: Callable[..., LaunchSpec]) -> None:
    async with Supervisor(tmp_path / "s", tmp_path / "l", FAST) as sup:
        await sup.start("slow", fake_spec("--ready-after", "30"))
        with pytest.raises(EngineLaunchError, match=r"not ready within 0\.5 s"):
            await sup.wait_ready("slow", timeout_s=0.5)


async def test_missing_program_fails_clearly(tmp_path: Path) -> None:
    spec = LaunchSpec(argv=(str(tmp_path / "no-such-engine"),), port=9, served_model_name="x")
    async with Supervisor(tmp_path / "s", tmp_path / "l") as sup:
        with pytest.raises(EngineLaunchError, match="could not start"):
            await sup.start("ghost", spec)
        assert sup.status("ghost").state == "failed"


async def test_duplicate_and_unknown_ids_are_refused(
    tmp_path: Path, fake_spec: Callable[..., LaunchSpec]
) -> None:
    async with Supervisor(tmp_path / "s", tmp_path / "l", FAST) as sup:
        await sup.start("dup", fake_spec())
        with pytest.raises(EngineError, match="already starting"):
            await sup.start("dup", fake_spec())
        with pytest.raises(EngineError, match="no instance"):
            sup.status("nope")
        with pytest.raises(EngineError, match="invalid instance id"):
            await sup.start("../evil", fake_spec())


async def test_close_stops_everything(tmp_path: Path, fake_spec: Callable[..., LaunchSpec]) -> None:
    async with Supervisor(tmp_path / "s", tmp_path / "l", FAST, stop_grace_s=2) as sup:
        a = await sup.start("a", fake_spec("--child"))
        b = await sup.start("b", fake_spec())
        await sup.wait_ready("a", timeout_s=20)
    assert a.pgid is not None
    assert b.pgid is not None
    assert group_pids(a.pgid) == []
    assert group_pids(b.pgid) == []
    assert list((tmp_path / "s").glob("*.json")) == []


async def test_spec_files_are_written_before_start(
    tmp_path: Path, fake_spec: Callable[..., LaunchSpec]
) -> None:
    spec = fake_spec().model_copy(update={"cwd": str(tmp_path), "files": {"conf/config.json": "{}"}})
    async with Supervisor(tmp_path / "s", tmp_path / "l", FAST) as sup:
        await sup.start("files", spec)
        assert (tmp_path / "conf" / "config.json").read_text() == "{}"


async def test_start_background_in_a_callers_task_group(
    tmp_path: Path, fake_spec: Callable[..., LaunchSpec]
) -> None:
    sup = Supervisor(tmp_path / "s", tmp_path / "l", FAST)
    with pytest.raises(EngineError, match="not running"):
        await sup.start("early", fake_spec())
    async with anyio.create_task_group() as group:
        await sup.start_background(group)
        status = await sup.start("bg", fake_spec())
        await sup.wait_ready("bg", timeout_s=20)
        assert set(sup.statuses()) == {"bg"}
        await sup.aclose()
    assert status.pgid is not None
    assert group_pids(status.pgid) == []
    assert sup.status("bg").state == "stopped"


async def test_max_restarts_counts_crashes_in_a_row_not_over_the_whole_life(
    tmp_path: Path, fake_spec: Callable[..., LaunchSpec]
) -> None:
    # ready, serving 1.5 s (longer than stable_after_s), then a crash: each crash is a first one
    policy = RestartPolicy(initial_backoff_s=0.1, max_backoff_s=0.2, max_restarts=1, stable_after_s=0.5)
    async with Supervisor(tmp_path / "s", tmp_path / "l", policy) as sup:
        await sup.start("rare", fake_spec("--exit-after", "1.5", "--exit-code", "7"))
        status = await wait_for(sup, "rare", lambda s: s.restarts >= 3 or s.state == "failed")
        assert status.state != "failed", status.message
        assert status.restarts >= 3
        await sup.stop("rare", grace_s=2)
