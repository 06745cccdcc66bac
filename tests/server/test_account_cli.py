"""``gpustack-core login|logout|keys|users|usage|logs`` against a real HTTP server: every daily task
without curl; the token file is private; ``logs -f`` streams lines the engine writes afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import pytest
from server_helpers import Running, fast_config, serve_http
from typer.testing import CliRunner

from gpustack_core.cli.app import build_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http_server(tmp_path: Path) -> AsyncIterator[Running]:
    async for running in serve_http(fast_config(tmp_path / "server")):
        yield running


class Cli:
    def __init__(self, server: Running, config_dir: Path) -> None:
        self.env = {
            "GPUSTACK_CORE_SERVER_URL": str(server.base_url),
            "GPUSTACK_CORE_CONFIG_DIR": str(config_dir),
        }
        self.password = (server.data_dir / "initial_admin_password").read_text().strip()

    async def __call__(self, *args: str, stdin: str | None = None, code: int = 0) -> Any:
        runner = CliRunner()
        result = await anyio.to_thread.run_sync(
            lambda: runner.invoke(build_app(), list(args), env=self.env, input=stdin)
        )
        assert result.exit_code == code, f"{args}: {result.output}"
        return result


async def _running(server: Running, name: str) -> dict[str, Any]:
    async def running() -> dict[str, Any] | None:
        items = (await server.api("GET", "/instances", params={"deployment": name})).json()["items"]
        return items[0] if items and items[0]["state"] == "running" else None

    found: dict[str, Any] = await server.wait_for(running)
    return found


async def test_daily_tasks_without_curl(http_server: Running, tmp_path: Path, tiny_model: Path) -> None:
    server = http_server
    cli = Cli(server, tmp_path / "config")
    await cli("manage", "workers", code=2)  # not logged in: says how to
    result = await cli("login", "--password-stdin", stdin=cli.password + "\n")
    assert "logged in" in result.output
    credentials = tmp_path / "config" / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    assert (await cli("manage", "workers")).output.count("worker-a") == 1
    await cli("login", "--password-stdin", stdin="wrong-password\n", code=1)

    # keys: create, use, list, revoke
    result = await cli("keys", "create", "my-app", "--model", "chat")
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("gpsk_")
    listed = json.loads((await cli("keys", "list", "--json")).stdout)
    mine = [k for k in listed["items"] if k["name"] == "my-app"]
    assert mine
    assert mine[0]["allowed_models"] == ["chat"]

    # usage: one chat through the gateway with that key
    body = {"name": "chat", "model": f"local:{tiny_model}", "engine": "fake", "extra_args": ["--openai"]}
    assert (await server.api("POST", "/deployments", json=body)).status_code == 201
    await _running(server, "chat")
    chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}

    async def answered() -> bool:
        r = await server.client.post(
            "/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {key}"}
        )
        return r.status_code == 200

    await server.wait_for(answered, timeout=10)
    usage = json.loads((await cli("usage", "--json", "--model", "chat")).stdout)["items"]
    assert [(u["model"], u["requests"], u["key_id"]) for u in usage] == [("chat", 1, mine[0]["id"])]
    assert "chat" in (await cli("usage")).output
    await cli("keys", "revoke", mine[0]["id"])
    r = await server.client.post(
        "/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {key}"}
    )
    assert r.status_code == 401

    # users (admin)
    await cli("users", "create", "bob", "--password-stdin", stdin="correct-horse-battery-9\n")
    assert "bob" in (await cli("users", "list")).output
    result = await cli("users", "update", "bob", "--role", "admin", "--disable")
    assert "bob: admin, disabled" in result.output
    await cli("users", "update", "bob", code=2)  # nothing to change
    await cli("users", "delete", "bob")
    assert "bob" not in (await cli("users", "list")).output

    # logs: the tail, then following new lines
    body = {"name": "plain", "model": f"local:{tiny_model}", "engine": "fake"}
    assert (await server.api("POST", "/deployments", json=body)).status_code == 201
    instance = await _running(server, "plain")
    assert "fake engine starting" in (await cli("logs", "plain", "--tail", "50")).stdout
    await _follow(cli, server, instance)

    await cli("logout")
    assert str(server.base_url).rstrip("/") not in credentials.read_text()
    await cli("manage", "workers", code=2)


async def _follow(cli: Cli, server: Running, instance: dict[str, Any]) -> None:
    """``logs -f --tail 0`` in its own process sees a request line the engine writes after it started."""
    env = {**os.environ, **cli.env, "GPUSTACK_CORE_API_KEY": server.admin_token}
    argv = [sys.executable, "-m", "gpustack_core.cli", "logs", instance["id"], "-f", "--tail", "0"]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        marker = "/follow-marker"
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as client:
            while not any(marker in line for line in lines):
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, f"no followed line in 30 s: {lines}"
                await client.get(f"http://127.0.0.1:{instance['port']}{marker}")
                await anyio.sleep(0.5)
        assert not any("fake engine starting" in line for line in lines)  # --tail 0: only new lines
    finally:
        process.terminate()
        process.wait(timeout=10)
        reader.join(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
