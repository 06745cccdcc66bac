"""Network faults between hosts (issue #20), with workers in their own network namespaces
(``gpustack_core.testing.netns``): a partitioned worker's instances are rescheduled once its
heartbeat is overdue, and when it comes back nothing runs twice."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
import pytest
import uvicorn
from server_fake_engine import make_host
from server_helpers import Running, cheap_hashing, fast_config, free_port

from gpustack_core.server import create_app
from gpustack_core.server.serving import uvicorn_config
from gpustack_core.testing.netns import FaultLab, netns_unavailable

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
]

HERE = Path(__file__).resolve().parent


@pytest.fixture
def lab() -> Any:
    with FaultLab() as made:
        yield made


@pytest.fixture
async def server(tmp_path: Path, lab: FaultLab) -> AsyncIterator[Running]:
    """The server (with worker-a embedded) in the root namespace, on the lab's bridge address."""
    config = fast_config(tmp_path / "server", host=lab.root_address, port=free_port())
    app = create_app(config, host=make_host(), hashing=cheap_hashing())
    server = uvicorn.Server(uvicorn_config(config, app, "warning"))
    base = f"http://{lab.root_address}:{config.port}"
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve)
        with anyio.fail_after(30):
            while not server.started:
                await anyio.sleep(0.05)
        async with httpx.AsyncClient(base_url=base) as client:
            running = Running(app, client, Path(config.data_dir), base)
            await running.login_admin()
            try:
                yield running
            finally:
                server.should_exit = True


async def _instances(server: Running, deployment: str) -> list[dict[str, Any]]:
    r = await server.api("GET", "/instances", params={"deployment": deployment})
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def _workers(server: Running) -> dict[str, str]:
    return {w["name"]: w["state"] for w in (await server.api("GET", "/workers")).json()["items"]}


async def test_partitioned_worker_is_replaced_and_after_healing_nothing_runs_twice(
    server: Running, lab: FaultLab, tmp_path: Path, tiny_model: Path
) -> None:
    host_b = lab.add_host("worker-b")
    token = (server.data_dir / "token").read_text().strip()
    with (tmp_path / "wb.log").open("wb") as log:  # the child keeps its own copy of the descriptor
        host_b.popen(
            [sys.executable, str(HERE / "server_worker_main.py"), str(server.base_url), token, "worker-b",
             str(tmp_path / "wb")],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    async def both_ready() -> bool:
        return await _workers(server) == {"worker-a": "ready", "worker-b": "ready"}

    await server.wait_for(both_ready, timeout=60)
    body = {"name": "spread", "model": f"local:{tiny_model}", "engine": "fake", "replicas": 2}
    assert (await server.api("POST", "/deployments", json=body)).status_code == 201

    async def on_both() -> list[dict[str, Any]] | None:
        items = await _instances(server, "spread")
        ok = len(items) == 2 and all(i["state"] == "running" for i in items)
        return items if ok and {i["worker"] for i in items} == {"worker-a", "worker-b"} else None

    items = await server.wait_for(on_both, timeout=60)
    on_b = next(i for i in items if i["worker"] == "worker-b")
    assert psutil.pid_exists(on_b["pid"])

    lab.partition(host_b)

    async def moved() -> list[dict[str, Any]] | None:
        items = await _instances(server, "spread")
        ok = len(items) == 2 and all(i["state"] == "running" and i["worker"] == "worker-a" for i in items)
        return items if ok else None

    await server.wait_for(moved, timeout=60)
    assert (await _workers(server))["worker-b"] == "unreachable"
    assert psutil.pid_exists(on_b["pid"])  # cut off, worker-b's engine still runs: it cannot know

    lab.heal(host_b)

    async def healed() -> bool:
        gone = not psutil.pid_exists(on_b["pid"]) or psutil.Process(on_b["pid"]).status() == "zombie"
        return gone and (await _workers(server))["worker-b"] == "ready"

    await server.wait_for(healed, timeout=60)
    items = await _instances(server, "spread")
    assert sorted(i["replica"] for i in items) == [0, 1]  # no duplicate replica
    assert {(i["worker"], i["state"]) for i in items} == {("worker-a", "running")}
    assert on_b["id"] in {i["id"] for i in items}  # the same instance, moved, not a second one
    assert (await server.api("DELETE", "/deployments/spread")).status_code == 202

    async def deleted() -> bool:
        return (await server.api("GET", "/deployments/spread")).status_code == 404

    await server.wait_for(deleted, timeout=60)


@pytest.fixture(autouse=True)
def _stop_hosts_before_the_server(server: Running, lab: FaultLab) -> Any:
    """Kill the lab's processes before the server shuts down (fixtures end in reverse order)."""
    yield
    for host in lab.hosts:
        for process in host.processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
