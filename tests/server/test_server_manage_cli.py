"""``gpustack-core manage``: list, deploy, scale and delete against a real HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from server_helpers import Running, fast_config, serve_http
from typer.testing import CliRunner

from gpustack_core.cli.app import build_app

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http_server(tmp_path: Path) -> AsyncIterator[Running]:
    async for running in serve_http(fast_config(tmp_path / "server")):
        yield running


async def _cli(server: Running, *args: str) -> Any:
    env = {"GPUSTACK_CORE_SERVER_URL": str(server.base_url), "GPUSTACK_CORE_API_KEY": server.admin_token}
    runner = CliRunner()
    return await anyio.to_thread.run_sync(lambda: runner.invoke(build_app(), ["manage", *args], env=env))


async def test_manage_commands_drive_a_deployment(http_server: Running, tiny_model: Path) -> None:
    server = http_server
    result = await _cli(
        server, "deploy", "cli-dep", f"local:{tiny_model}", "--engine", "fake", "--replicas", "2"
    )
    assert result.exit_code == 0, result.output
    assert "cli-dep created" in result.output

    async def two_running() -> bool:
        items = (await server.api("GET", "/instances", params={"deployment": "cli-dep"})).json()["items"]
        return len(items) == 2 and all(i["state"] == "running" for i in items)

    await server.wait_for(two_running)
    result = await _cli(server, "deployments")
    assert result.exit_code == 0, result.output
    assert "cli-dep" in result.output
    assert "running@worker-a" in result.output
    result = await _cli(server, "workers", "--json")
    assert '"worker-a"' in result.output
    assert (await _cli(server, "devices")).exit_code == 0
    result = await _cli(server, "scale", "cli-dep", "1")
    assert "scaled to 1" in result.output
    instances = (await server.api("GET", "/instances", params={"deployment": "cli-dep"})).json()["items"]
    assert len(instances) == 2
    result = await _cli(server, "delete", "cli-dep", "--wait", "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert "cli-dep deleted; its instances are stopped" in result.output
    # returned only once the deployment and its instances are gone
    assert (await server.api("GET", "/deployments/cli-dep")).status_code == 404
    for instance in instances:
        assert (await server.api("GET", f"/instances/{instance['id']}")).status_code == 404
    result = await _cli(server, "scale", "cli-dep", "1")
    assert result.exit_code == 1
    assert "404" in result.output


async def test_manage_without_a_valid_key_says_so(http_server: Running) -> None:
    env = {
        "GPUSTACK_CORE_SERVER_URL": str(http_server.base_url),
        "GPUSTACK_CORE_API_KEY": "gpsk_0123456789abcdef_x",
    }
    runner = CliRunner()
    result = await anyio.to_thread.run_sync(
        lambda: runner.invoke(build_app(), ["manage", "workers"], env=env)
    )
    assert result.exit_code == 1
    assert "401" in result.output
