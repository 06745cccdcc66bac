"""End to end on the in-process app with the embedded worker and the fake engine (a real process):
deploy -> running -> scale -> delete -> process gone; on SQLite and, when set, PostgreSQL/MariaDB."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from server_helpers import Running, fast_config, start_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(tmp_path: Path, database_url: str | None) -> AsyncIterator[Running]:
    async for running in start_app(fast_config(tmp_path / "data", database_url)):
        yield running


@pytest.fixture
def model_file(tiny_model: Path) -> Path:
    return tiny_model


async def _instances(server: Running, deployment: str) -> list[dict[str, Any]]:
    r = await server.client.get("/api/v1/instances", params={"deployment": deployment}, headers=server.admin)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_first_start_writes_admin_password_and_token(server: Running) -> None:
    for name in ("initial_admin_password", "token"):
        path = server.data_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(path.read_text().strip()) >= 20


async def test_deploy_runs_a_real_process_and_delete_stops_it(server: Running, model_file: Path) -> None:
    body = {"name": "tiny", "model": f"local:{model_file}", "engine": "fake", "replicas": 1}
    r = await server.client.post("/api/v1/deployments", json=body, headers=server.admin)
    assert r.status_code == 201, r.text

    async def running() -> list[dict[str, Any]] | None:
        items = await _instances(server, "tiny")
        return items if items and all(i["state"] == "running" for i in items) else None

    items = await server.wait_for(running, what="instance running")
    instance = items[0]
    assert instance["worker"] == "worker-a"
    assert instance["placement"]["worker"] == "worker-a"
    pid = instance["pid"]
    assert psutil.pid_exists(pid)
    async with __import__("httpx").AsyncClient() as probe:
        health = await probe.get(f"http://127.0.0.1:{instance['port']}/health")
    assert health.status_code == 200

    files = await server.client.get("/api/v1/model-files", headers=server.admin)
    assert files.json()["items"][0]["state"] == "ready"

    r = await server.client.delete("/api/v1/deployments/tiny", headers=server.admin)
    assert r.status_code == 202, r.text

    async def gone() -> bool:
        r = await server.client.get("/api/v1/deployments/tiny", headers=server.admin)
        return r.status_code == 404

    await server.wait_for(gone, what="deployment removed")
    await server.wait_for(_async(lambda: not psutil.pid_exists(pid) or _zombie(pid)), what="process gone")


async def test_scale_up_and_down(server: Running, model_file: Path) -> None:
    body = {"name": "scaled", "model": f"local:{model_file}", "engine": "fake", "replicas": 1}
    assert (
        await server.client.post("/api/v1/deployments", json=body, headers=server.admin)
    ).status_code == 201
    r = await server.client.post(
        "/api/v1/deployments/scaled/scale", json={"replicas": 2}, headers=server.admin
    )
    assert r.status_code == 200
    assert r.json()["replicas"] == 2

    async def two_running() -> bool:
        items = await _instances(server, "scaled")
        return len(items) == 2 and all(i["state"] == "running" for i in items)

    await server.wait_for(two_running)
    pids = {i["replica"]: i["pid"] for i in await _instances(server, "scaled")}
    r = await server.client.post(
        "/api/v1/deployments/scaled/scale", json={"replicas": 1}, headers=server.admin
    )
    assert r.status_code == 200

    async def one_left() -> bool:
        items = await _instances(server, "scaled")
        return [i["replica"] for i in items] == [0]

    await server.wait_for(one_left)
    await server.wait_for(_async(lambda: not psutil.pid_exists(pids[1]) or _zombie(pids[1])))
    assert psutil.pid_exists(pids[0])
    await server.client.delete("/api/v1/deployments/scaled", headers=server.admin)

    async def gone() -> bool:
        return (
            await server.client.get("/api/v1/deployments/scaled", headers=server.admin)
        ).status_code == 404

    await server.wait_for(gone)
    assert not psutil.pid_exists(pids[0]) or _zombie(pids[0])


async def test_unplaceable_instance_explains_why(server: Running, model_file: Path) -> None:
    body = {
        "name": "picky",
        "model": f"local:{model_file}",
        "engine": "fake",
        "label_selector": [{"key": "gpu", "operator": "equals", "values": ["h200"]}],
    }

    async def worker_ready() -> bool:  # else the first explanation can be "the cluster has no workers"
        items = (await server.api("GET", "/workers")).json()["items"]
        return any(w["name"] == "worker-a" and w["state"] == "ready" for w in items)

    await server.wait_for(worker_ready)
    assert (
        await server.client.post("/api/v1/deployments", json=body, headers=server.admin)
    ).status_code == 201

    async def explained() -> dict[str, Any] | None:
        items = await _instances(server, "picky")
        return items[0] if items and items[0]["explanation"] else None

    inst = await server.wait_for(explained)
    assert inst["state"] == "pending"
    assert inst["message"].startswith("unschedulable")
    assert "worker-a" in str(inst["explanation"])


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _async(check: Any) -> Any:
    async def predicate() -> bool:
        return bool(check())

    return predicate


async def test_gateway_routes_to_the_running_instance_and_meters_usage(
    server: Running, model_file: Path
) -> None:
    body = {"name": "chat", "model": f"local:{model_file}", "engine": "fake", "extra_args": ["--openai"]}
    assert (await server.api("POST", "/deployments", json=body)).status_code == 201

    async def running() -> bool:
        items = await _instances(server, "chat")
        return bool(items) and items[0]["state"] == "running"

    await server.wait_for(running)
    r = await server.api(
        "POST", "/api-keys", json={"name": "app", "scopes": ["inference"], "allowed_models": ["chat"]}
    )
    key, key_id = r.json()["key"], r.json()["record"]["id"]
    headers = {"Authorization": f"Bearer {key}"}

    async def routed() -> bool:
        models = await server.client.get("/v1/models", headers=headers)
        return models.status_code == 200 and "chat" in {m["id"] for m in models.json()["data"]}

    await server.wait_for(routed)
    assert (await server.client.get("/v1/models")).status_code == 401
    chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "fake_tokens": 3}

    async def answered() -> Any:
        # The gateway's route table follows the database within a moment; until then it answers 503.
        r = await server.client.post("/v1/chat/completions", json=chat, headers=headers)
        assert r.status_code in (200, 503), r.text
        return r if r.status_code == 200 else None

    r = await server.wait_for(answered, timeout=10)
    usage = r.json()["usage"]
    r = await server.api("GET", "/usage", params={"key_id": key_id})
    rows = r.json()["items"]
    assert len(rows) == 1
    assert rows[0]["model"] == "chat"
    assert rows[0]["requests"] == 1
    assert rows[0]["prompt_tokens"] == usage["prompt_tokens"]
    assert rows[0]["completion_tokens"] == usage["completion_tokens"]
    other = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    assert (await server.client.post("/v1/chat/completions", json=other, headers=headers)).status_code in (
        403,
        404,
    )
    await server.api("DELETE", "/deployments/chat")

    async def gone() -> bool:
        return (await server.api("GET", "/deployments/chat")).status_code == 404

    await server.wait_for(gone)


@pytest.mark.slow
async def test_crashing_engine_ends_in_error_with_its_log_and_is_retried(
    tmp_path: Path, model_file: Path
) -> None:
    # a 3 s backoff keeps the error state visible for a while before the controller retries
    async for server in start_app(fast_config(tmp_path / "data", restart_backoff_s=3.0)):
        await _crash_and_retry(server, model_file)


async def _crash_and_retry(server: Running, model_file: Path) -> None:
    body = {
        "name": "crashy",
        "model": f"local:{model_file}",
        "engine": "fake",
        "extra_args": ["--exit-after", "0.3", "--exit-code", "3"],
    }
    assert (await server.api("POST", "/deployments", json=body)).status_code == 201

    async def errored() -> dict[str, Any] | None:
        items = await _instances(server, "crashy")
        return items[0] if items and items[0]["state"] == "error" else None

    inst = await server.wait_for(errored, timeout=60)
    assert inst["restarts"] == 0
    assert "fake engine exiting with 3" in inst["message"]  # the end of the engine's log

    async def retried() -> dict[str, Any] | None:
        items = await _instances(server, "crashy")
        return items[0] if items and items[0]["restarts"] == 1 else None

    await server.wait_for(retried, timeout=30)
    await server.api("DELETE", "/deployments/crashy")

    async def gone() -> bool:
        return (await server.api("GET", "/deployments/crashy")).status_code == 404

    await server.wait_for(gone, timeout=30)
