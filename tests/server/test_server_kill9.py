"""The server killed with SIGKILL in the middle of a deployment (issue #20): after a restart the
embedded worker adopts what is running, the rest is started, and every replica runs exactly once
(no duplicate engine processes, none orphaned)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from server_helpers import Running, free_port

from gpustack_core.testing.netns import kill_tree

pytestmark = pytest.mark.anyio

HERE = Path(__file__).resolve().parent
REPLICAS = 3


def _pipe(pid: int, fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


def _engines(data_dir: Path) -> list[psutil.Process]:
    """Fake engine processes whose output goes to a log pump writing under ``data_dir`` (the
    supervisor pipes each engine's stdout into its pump's stdin)."""
    pumps: set[str] = set()
    engines: list[psutil.Process] = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "gpustack_core.supervisor.logpump" in cmd and str(data_dir) in cmd:
            pipe = _pipe(proc.pid, 0)
            if pipe is not None:
                pumps.add(pipe)
        elif "gpustack_core.testing.fake_engine" in cmd:
            engines.append(proc)
    return [p for p in engines if _pipe(p.pid, 1) in pumps and p.is_running()]


async def test_server_kill_9_mid_deploy_leaves_no_duplicates_or_orphans(
    tmp_path: Path, tiny_model: Path
) -> None:
    data_dir, port = tmp_path / "server", free_port()
    base = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(HERE / "server_serve_main.py"), str(data_dir), str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    async def connect(client: httpx.AsyncClient) -> Running:
        running = Running(None, client, data_dir, base)

        await running.wait_healthy(timeout=60)
        await running.login_admin()
        return running

    async def instances(server: Running) -> list[dict[str, Any]]:
        r = await server.api("GET", "/instances", params={"deployment": "k9"})
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    first = start()
    second: subprocess.Popen[bytes] | None = None
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            server = await connect(client)
            body = {"name": "k9", "model": f"local:{tiny_model}", "engine": "fake", "replicas": REPLICAS}
            assert (await server.api("POST", "/deployments", json=body)).status_code == 201

            async def some_started() -> bool:
                items = await instances(server)
                return any(i["state"] in {"starting", "running"} for i in items) and not all(
                    i["state"] == "running" for i in items
                )

            await server.wait_for(some_started, timeout=60)
        first.send_signal(signal.SIGKILL)  # mid-deploy: some instances placed, some starting
        first.wait(10)
        second = start()
        async with httpx.AsyncClient(base_url=base) as client:
            server = await connect(client)

            async def all_running() -> list[dict[str, Any]] | None:
                items = await instances(server)
                ok = len(items) == REPLICAS and all(i["state"] == "running" for i in items)
                return items if ok else None

            items = await server.wait_for(all_running, timeout=90)
            assert sorted(i["replica"] for i in items) == list(range(REPLICAS))
            engines = _engines(data_dir)
            assert sorted(p.pid for p in engines) == sorted(i["pid"] for i in items), "duplicates or orphans"
            assert (await server.api("DELETE", "/deployments/k9")).status_code == 202

            async def gone() -> bool:
                return (await server.api("GET", "/deployments/k9")).status_code == 404

            await server.wait_for(gone, timeout=60)
        assert _engines(data_dir) == [] or all(p.status() == psutil.STATUS_ZOMBIE for p in _engines(data_dir))
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                kill_tree(process.pid)
                process.wait(10)
        for engine in _engines(data_dir):
            kill_tree(engine.pid)
