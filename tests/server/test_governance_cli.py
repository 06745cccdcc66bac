"""``gpustack-core manage teams|access|limits|fallbacks|scale-to-zero|usage`` against a real HTTP server."""

from __future__ import annotations

import json
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
    async for running in serve_http(fast_config(tmp_path / "server", embedded_worker=False)):
        yield running


async def _cli(server: Running, *args: str) -> Any:
    env = {"GPUSTACK_CORE_SERVER_URL": str(server.base_url), "GPUSTACK_CORE_API_KEY": server.admin_token}
    runner = CliRunner()
    return await anyio.to_thread.run_sync(lambda: runner.invoke(build_app(), ["manage", *args], env=env))


async def test_governance_commands(http_server: Running, tiny_model: Path) -> None:
    server = http_server
    await server.api("POST", "/users", json={"username": "alice", "password": "pw-123456789"})
    body = {"name": "chat", "model": f"local:{tiny_model}", "engine": "fake", "replicas": 0}
    assert (await server.api("POST", "/deployments", json=body)).status_code == 201

    result = await _cli(server, "teams", "create", "research", "--description", "the lab")
    assert result.exit_code == 0, result.output
    assert (await _cli(server, "teams", "add-member", "research", "alice")).exit_code == 0
    result = await _cli(server, "teams", "list")
    assert "research" in result.output
    assert "alice" in result.output
    result = await _cli(server, "teams", "add-member", "research", "nobody")
    assert result.exit_code != 0
    assert "no user named 'nobody'" in result.output

    assert (await _cli(server, "access", "grant", "team", "research", "chat")).exit_code == 0
    result = await _cli(server, "access", "list", "--json")
    assert [r["model"] for r in json.loads(result.output)["items"]] == ["chat"]
    assert (await _cli(server, "access", "revoke", "team", "research", "chat")).exit_code == 0

    result = await _cli(
        server, "limits", "set", "user", "alice", "--metric", "requests", "--period", "minute", "--max", "60"
    )
    assert result.exit_code == 0, result.output
    assert "60 requests per minute" in result.output
    result = await _cli(server, "limits", "list", "--json")
    [limit] = json.loads(result.output)["items"]
    result = await _cli(
        server, "limits", "set", "user", "alice", "--metric", "tokens", "--period", "week", "--max", "1"
    )
    assert result.exit_code == 1
    assert "422" in result.output
    assert (await _cli(server, "limits", "delete", limit["id"])).exit_code == 0
    assert json.loads((await _cli(server, "limits", "list", "--json")).output)["items"] == []

    assert (await _cli(server, "fallbacks", "set", "chat", "small", "tiny")).exit_code == 0
    assert "small -> tiny" in (await _cli(server, "fallbacks", "list")).output
    result = await _cli(server, "scale-to-zero", "chat", "--idle-timeout", "300")
    assert result.exit_code == 0
    assert "stops after 300 s idle" in result.output
    assert (await _cli(server, "scale-to-zero", "chat")).exit_code != 0  # neither a timeout nor --off
    assert (await _cli(server, "scale-to-zero", "chat", "--off")).exit_code == 0
    result = await _cli(server, "usage", "--bucket", "day", "--group-by", "team,model")
    assert result.exit_code == 0
    assert "usage per day" in result.output
