"""Engine logs through the server: the worker's HTTP API serves them (tail, follow), the server's
``GET /api/v1/instances/{id}/logs`` proxies them; tokens for the worker API are minted per worker."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from server_helpers import Running, fast_config, serve_http
from starlette.applications import Starlette

from gpustack_core.worker.api import WorkerApi, create_worker_api
from gpustack_core.worker.protocol import API_TOKEN_TTL_S, mint_api_token, token_sha256, verify_api_token

pytestmark = pytest.mark.anyio


# ---------------------------------------------------------------- worker-API tokens


def test_api_tokens_are_bound_to_the_join_token_the_worker_and_time() -> None:
    key = token_sha256("join-token")
    token = mint_api_token(key, "worker-a", now=1_000_000)
    assert verify_api_token(token, key, "worker-a", now=1_000_000)
    assert verify_api_token(token, key, "worker-a", now=1_000_000 + API_TOKEN_TTL_S)
    assert not verify_api_token(token, key, "worker-a", now=1_000_000 + API_TOKEN_TTL_S + 1)  # expired
    assert not verify_api_token(token, key, "worker-b", now=1_000_000)  # minted for another worker
    assert not verify_api_token(token, token_sha256("other"), "worker-a", now=1_000_000)  # other cluster
    expires, _, signature = token.partition(".")
    assert not verify_api_token(f"{int(expires) + 60}.{signature}", key, "worker-a", now=1_000_000)
    # a token that claims to live far longer than a minted one is refused even with a valid signature
    far = mint_api_token(key, "worker-a", now=1_000_000 + 3600)
    assert not verify_api_token(far, key, "worker-a", now=1_000_000)
    for garbage in ("", ".", "abc.def", "123", "-5.x"):
        assert not verify_api_token(garbage, key, "worker-a", now=1_000_000)


# ---------------------------------------------------------------- the worker's app, in process


@pytest.fixture
def worker_app(tmp_path: Path) -> tuple[Starlette, Path, str]:
    logs = tmp_path / "logs"
    logs.mkdir()
    key = token_sha256(secrets.token_hex(8))
    app = create_worker_api(WorkerApi("worker-a", key, lambda iid: logs / f"{iid}.log", follow_poll_s=0.01))
    return app, logs, key


async def _get(app: Starlette, path: str, token: str | None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        return await client.get(path, headers=headers, params=params)


async def test_worker_api_serves_a_log_whole_or_its_tail(worker_app: tuple[Starlette, Path, str]) -> None:
    app, logs, key = worker_app
    (logs / "inst-1.log").write_bytes(b"one\ntwo\nthree\n")
    token = mint_api_token(key, "worker-a")
    whole = await _get(app, "/instances/inst-1/logs", token)
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "text/plain; charset=utf-8"
    assert whole.content == b"one\ntwo\nthree\n"
    tail = await _get(app, "/instances/inst-1/logs", token, tail=2)
    assert tail.content == b"two\nthree\n"
    assert (await _get(app, "/healthz", None)).json() == {"status": "ok", "worker": "worker-a"}


async def test_worker_api_refuses_bad_credentials_and_input(worker_app: tuple[Starlette, Path, str]) -> None:
    app, logs, key = worker_app
    (logs / "inst-1.log").write_bytes(b"secret engine output\n")
    assert (await _get(app, "/instances/inst-1/logs", None)).status_code == 401
    assert (await _get(app, "/instances/inst-1/logs", "not-a-token")).status_code == 401
    other_worker = mint_api_token(key, "worker-b")
    assert (await _get(app, "/instances/inst-1/logs", other_worker)).status_code == 401
    token = mint_api_token(key, "worker-a")
    assert (await _get(app, "/instances/..%2Fsecret/logs", token)).status_code in {404, 422}
    assert (await _get(app, "/instances/.hidden/logs", token)).status_code == 422
    assert (await _get(app, "/instances/inst-1/logs", token, tail=-1)).status_code == 422
    assert (await _get(app, "/instances/inst-1/logs", token, tail=10**9)).status_code == 422
    assert (await _get(app, "/instances/inst-1/logs", token, follow="maybe")).status_code == 422
    missing = await _get(app, "/instances/inst-2/logs", token)
    assert missing.status_code == 404
    assert "inst-2" in missing.json()["detail"]


# ---------------------------------------------------------------- through the server, over HTTP


@pytest.fixture
async def http_server(tmp_path: Path) -> AsyncIterator[Running]:
    async for running in serve_http(fast_config(tmp_path / "server")):
        yield running


async def _running_instance(server: Running, model_file: Path) -> dict[str, Any]:
    body = {"name": "logged", "model": f"local:{model_file}", "engine": "fake", "replicas": 1}
    r = await server.api("POST", "/deployments", json=body)
    assert r.status_code == 201, r.text

    async def running() -> dict[str, Any] | None:
        items = (await server.api("GET", "/instances", params={"deployment": "logged"})).json()["items"]
        return items[0] if items and items[0]["state"] == "running" else None

    instance: dict[str, Any] = await server.wait_for(running, what="instance running")
    return instance


async def test_server_proxies_the_engine_log_with_tail_and_follow(
    http_server: Running, tiny_model: Path
) -> None:
    server = http_server
    instance = await _running_instance(server, tiny_model)
    path = f"/instances/{instance['id']}/logs"

    whole = await server.api("GET", path)
    assert whole.status_code == 200, whole.text
    assert f"listening on 127.0.0.1:{instance['port']}" in whole.text  # the fake engine's first line
    last = await server.api("GET", path, params={"tail": 1})
    assert last.status_code == 200
    assert last.text.count("\n") == 1
    assert whole.text.endswith(last.text) or last.text in whole.text

    marker = secrets.token_hex(6)
    seen = bytearray()
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    with anyio.fail_after(30):
        async with server.client.stream(
            "GET", f"/api/v1{path}", params={"tail": 0, "follow": "true"}, headers=headers
        ) as stream:
            assert stream.status_code == 200
            async with httpx.AsyncClient() as engine:
                # the fake engine logs every request it serves: this line must arrive on the stream
                await engine.get(f"http://127.0.0.1:{instance['port']}/v1/models?marker={marker}")
            async for chunk in stream.aiter_bytes():
                seen.extend(chunk)
                if marker.encode() in seen:
                    break
    assert marker.encode() in seen


async def test_server_logs_errors_are_clear(http_server: Running, tiny_model: Path) -> None:
    server = http_server
    missing = await server.api("GET", "/instances/no-such-instance/logs")
    assert missing.status_code == 404
    assert "no-such-instance" in missing.json()["detail"]
    instance = await _running_instance(server, tiny_model)
    path = f"/instances/{instance['id']}/logs"
    assert (await server.api("GET", path, token="")).status_code == 401
    bad = await server.api("GET", path, params={"tail": -3})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "tail"]
    document = (await server.client.get("/api/v1/openapi.json")).json()
    content = document["paths"]["/api/v1/instances/{instance_id}/logs"]["get"]["responses"]["200"]["content"]
    assert "text/plain; charset=utf-8" in content
