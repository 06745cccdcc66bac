"""Acceptance: a second worker process joins with the token and, killed, its instances move to the
first; a server restart leaves running engine processes untouched and adopted."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
import pytest
from server_helpers import Running, fast_config, free_port, serve_http

pytestmark = pytest.mark.anyio
HERE = Path(__file__).resolve().parent


@pytest.fixture
def model_file(tiny_model: Path) -> Path:
    return tiny_model


def _kill_tree(pid: int) -> None:
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    for child in [*proc.children(recursive=True), proc]:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _instances(server: Running, deployment: str) -> list[dict[str, Any]]:
    r = await server.api("GET", "/instances", params={"deployment": deployment})
    items: list[dict[str, Any]] = r.json()["items"]
    return items


@pytest.fixture
async def http_server(tmp_path: Path) -> AsyncIterator[Running]:
    async for running in serve_http(fast_config(tmp_path / "server")):
        yield running


async def test_killed_worker_instances_reschedule_to_the_first(
    http_server: Running, tmp_path: Path, model_file: Path
) -> None:
    server = http_server
    token = (server.data_dir / "token").read_text().strip()
    worker_b = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "server_worker_main.py"),
            str(server.base_url),
            token,
            "worker-b",
            str(tmp_path / "wb"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    orphans: list[int] = []
    try:

        async def both_ready() -> bool:
            r = await server.api("GET", "/workers", params={"state": "ready"})
            return {w["name"] for w in r.json()["items"]} == {"worker-a", "worker-b"}

        await server.wait_for(both_ready, timeout=30)
        body = {"name": "spread", "model": f"local:{model_file}", "engine": "fake", "replicas": 2}
        assert (await server.api("POST", "/deployments", json=body)).status_code == 201

        async def running_on_both() -> list[dict[str, Any]] | None:
            items = await _instances(server, "spread")
            ok = len(items) == 2 and all(i["state"] == "running" for i in items)
            return items if ok and {i["worker"] for i in items} == {"worker-a", "worker-b"} else None

        items = await server.wait_for(running_on_both, timeout=40)
        on_b = next(i for i in items if i["worker"] == "worker-b")
        orphans.append(on_b["pid"])

        worker_b.send_signal(signal.SIGKILL)
        worker_b.wait(10)

        async def moved() -> list[dict[str, Any]] | None:
            items = await _instances(server, "spread")
            ok = len(items) == 2 and all(i["state"] == "running" and i["worker"] == "worker-a" for i in items)
            return items if ok else None

        items = await server.wait_for(moved, timeout=40)
        moved_inst = next(i for i in items if i["id"] == on_b["id"])
        assert moved_inst["pid"] != on_b["pid"]
        workers = (await server.api("GET", "/workers")).json()["items"]
        assert {w["name"]: w["state"] for w in workers}["worker-b"] == "unreachable"

        assert (await server.api("DELETE", "/deployments/spread")).status_code == 202

        async def gone() -> bool:
            return (await server.api("GET", "/deployments/spread")).status_code == 404

        await server.wait_for(gone)
    finally:
        if worker_b.poll() is None:
            worker_b.kill()
            worker_b.wait(10)
        for pid in orphans:  # the killed worker's engine keeps running until that worker returns
            _kill_tree(pid)


async def test_server_restart_adopts_running_engines_and_workers_reconnect(
    tmp_path: Path, model_file: Path
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    engine_pids: list[int] = []

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(HERE / "server_serve_main.py"), str(data_dir), str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def connect() -> Running:
        client = httpx.AsyncClient(base_url=base)
        running = Running(None, client, data_dir, base)

        await running.wait_healthy(timeout=30)
        await running.login_admin()
        return running

    async def workers(server: Running) -> dict[str, dict[str, Any]]:
        items = (await server.api("GET", "/workers")).json()["items"]
        return {w["name"]: w for w in items}

    first = start()
    second: subprocess.Popen[bytes] | None = None
    worker_b: subprocess.Popen[bytes] | None = None
    try:
        server = await connect()
        token = (data_dir / "token").read_text().strip()
        worker_b = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "server_worker_main.py"),
                base,
                token,
                "worker-b",
                str(tmp_path / "wb"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        async def both_ready() -> bool:
            return {n for n, w in (await workers(server)).items() if w["state"] == "ready"} == {
                "worker-a",
                "worker-b",
            }

        await server.wait_for(both_ready, timeout=30)
        body = {"name": "keep", "model": f"local:{model_file}", "engine": "fake", "replicas": 2}
        assert (await server.api("POST", "/deployments", json=body)).status_code == 201

        async def running() -> dict[str, dict[str, Any]] | None:
            items = await _instances(server, "keep")
            ok = len(items) == 2 and all(i["state"] == "running" for i in items)
            by_worker = {i["worker"]: i for i in items}
            return by_worker if ok and set(by_worker) == {"worker-a", "worker-b"} else None

        before = await server.wait_for(running, timeout=40)
        engine_pids.extend(i["pid"] for i in before.values())
        await server.client.aclose()

        first.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: -SIGTERM is a clean exit here
        assert first.wait(30) in (0, -signal.SIGTERM)
        assert all(_alive(pid) for pid in engine_pids), "engines must outlive the server"
        await anyio.sleep(2)  # the external worker notices the server is gone and keeps serving
        assert worker_b.poll() is None
        async with httpx.AsyncClient() as probe:
            health = await probe.get(f"http://127.0.0.1:{before['worker-b']['port']}/health")
        assert health.status_code == 200

        second = start()
        server = await connect()
        restarted_at = (await workers(server))["worker-b"]["last_heartbeat_at"]

        async def reconnected() -> bool:
            found = await workers(server)
            return (
                found["worker-b"]["last_heartbeat_at"] > restarted_at
                and found["worker-a"]["state"] == "ready"
            )

        await server.wait_for(reconnected, timeout=30)
        after = await server.wait_for(running, timeout=30)
        for name in ("worker-a", "worker-b"):
            assert after[name]["pid"] == before[name]["pid"]
            assert after[name]["restarts"] == before[name]["restarts"]
            assert after[name]["state_changed_at"] == before[name]["state_changed_at"], "never left running"

        assert (await server.api("DELETE", "/deployments/keep")).status_code == 202

        async def gone() -> bool:
            return (await server.api("GET", "/deployments/keep")).status_code == 404

        await server.wait_for(gone)
        assert not any(_alive(pid) for pid in engine_pids)
        await server.client.aclose()
    finally:
        for proc in (worker_b, first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        for pid in engine_pids:
            _kill_tree(pid)
